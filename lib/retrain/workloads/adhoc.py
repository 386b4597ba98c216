"""Ad-hoc training runs (the ``adhoc_training`` DAG): validated params, then the scheduled workloads' steps.

:func:`plan` turns a manual run's params into a plan before any work starts: the workload, the dataset, the
snapshot (default: the newest committed one) or, for ticks, the window, the effective dataset config (the
YAML block with the run's ``overrides`` applied and validated by the workload's pydantic model), the
resources and whether the candidate is published. Every later step reads only the plan, so a retried task
trains exactly what the first try did.

The steps are the dataset's workload's own (:mod:`retrain.workloads` registry: resolve, gate, prepare, train,
evaluate, log_candidate), called with the effective config; only the plan, the ad-hoc tags and the
description are this module's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from retrain import assets, catalog, config, workloads
from retrain.errors import ConfigError

DAG_ID = "adhoc_training"
# workload kind (the DAG's ``kind`` param) -> the workload whose config, library code and experiments it uses
KINDS = {w.kind: w.name for w in catalog.WORKLOADS.values()}
DATASETS = tuple(catalog.DATASETS)
# resource profile -> Airflow pool and queue of the train and evaluate tasks
RESOURCES = {"cpu": {"pool": "cpu", "queue": "default"}, "gpu": {"pool": "gpu", "queue": "gpu"}}
DEFAULT_RESOURCES = {w.kind: w.resources for w in catalog.WORKLOADS.values()}
# fixed per dataset: the registered model (names, the candidate asset and promotion hang on it) and a tick
# feed's symbols (configs/feeds.yaml states them once, for the gate and the training alike)
FIXED_KEYS = {"model": "the registered model is fixed per dataset",
              "symbols": "a feed's symbols are set in configs/feeds.yaml only"}
# image runs: only the loop's hyperparameters reach the shared training step
OVERRIDABLE = {"image": ("loop",)}


def datasets_of(kind: str) -> list[str]:
    return [name for name, asset in assets.DATA_ASSETS.items() if asset.workload == KINDS[kind]]


# ---------------------------------------------------------------------------------------------------------
# the plan


def plan(params: Mapping[str, Any]) -> dict:
    """The validated plan of a manual run; ConfigError or SnapshotError (naming key and value) otherwise."""
    kind = params.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{DAG_ID}: kind must be one of {list(KINDS)} (got {kind!r})")
    known = datasets_of(kind)
    dataset = params.get("dataset") or (known[0] if len(known) == 1 else None)
    if dataset is None:
        raise ConfigError(f"{DAG_ID}: {kind} runs must name a dataset (one of {known})")
    if dataset not in known:
        raise ConfigError(f"{DAG_ID}: dataset {dataset!r} is not a {kind} dataset (known: {known})")
    overrides = dict(params.get("overrides") or {})
    cfg = effective_config(kind, dataset, overrides)
    resources = params.get("resources") or DEFAULT_RESOURCES[kind]
    if resources not in RESOURCES:
        raise ConfigError(f"{DAG_ID}: resources must be one of {list(RESOURCES)} (got {resources!r})")
    publish = bool(params.get("publish", False))
    if publish and assets.DATA_ASSETS[dataset].partitioned:
        raise ConfigError(f"{DAG_ID}: publish = true is not possible for {dataset}: its candidates are judged by the "
                          "partition-aware promote_partitioned_models, which manual runs (no partition key) cannot "
                          "trigger; run it with candidate_run_id instead")
    result = {"kind": kind, "workload": KINDS[kind], "dataset": dataset, "model": cfg.model,
              "overrides": _paths(_expand(overrides)), "config": cfg.model_dump(mode="json"),
              "resources": resources, "publish": publish}
    found = workloads.for_dataset(dataset)
    if assets.DATA_ASSETS[dataset].partitioned:
        if params.get("version"):
            raise ConfigError(f"{DAG_ID}: {dataset} is partitioned: name the window's last partition with "
                              f"'partition', not version = {params['version']!r}")
        return result | {"window": found.resolve(dataset, [], cfg, key=params.get("partition"), scheduled=False)}
    if params.get("partition"):
        raise ConfigError(f"{DAG_ID}: {dataset} is not partitioned: name a snapshot with 'version', not "
                          f"partition = {params['partition']!r}")
    return result | {"event": found.resolve(dataset, [], cfg, key=params.get("version"), scheduled=False)}


def effective_config(kind: str, dataset: str, overrides: Mapping[str, Any]) -> BaseModel:
    """The dataset's config with ``overrides`` (nested, or dotted keys) applied, validated by its pydantic model."""
    base = config.dataset_settings(KINDS[kind], dataset)
    tree = _expand(overrides)
    for path, value in _paths(tree).items():
        top = path.split(".")[0]
        if top in FIXED_KEYS:
            raise ConfigError(f"{DAG_ID} override {path} = {value!r} for {dataset}: not overridable "
                              f"({FIXED_KEYS[top]})")
        if kind in OVERRIDABLE and top not in OVERRIDABLE[kind]:
            raise ConfigError(f"{DAG_ID} override {path} = {value!r} for {dataset}: not overridable in ad hoc "
                              f"{kind} runs (overridable: {', '.join(k + '.*' for k in OVERRIDABLE[kind])})")
    try:
        return type(base).model_validate(_merge(base.model_dump(), tree))
    except ValidationError as exc:
        problems = [_problem(type(base), error, tree) for error in exc.errors()]
        raise ConfigError(f"{DAG_ID} overrides for {dataset} rejected: {'; '.join(problems)}") from None


def _expand(overrides: Mapping[str, Any]) -> dict:
    """Dotted keys (``"lightgbm.num_leaves": 15``) as nested dicts, merged with nested ones."""
    tree: dict = {}
    for key, value in overrides.items():
        *parents, leaf = str(key).split(".")
        node = tree
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{DAG_ID} override {key} = {value!r}: {'.'.join(parents[:i + 1])} is a value, "
                                  "not a section")
        if isinstance(value, Mapping):
            value = _expand(value)
            if isinstance(node.get(leaf), dict):
                value = _merge(node[leaf], value)
        node[leaf] = value
    return tree


def _merge(base: dict, tree: Mapping[str, Any]) -> dict:
    merged = dict(base)
    for key, value in tree.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _paths(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat |= _paths(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _problem(model: type[BaseModel], error: Mapping[str, Any], tree: Mapping[str, Any]) -> str:
    """One validation error as ``key = value: rule``, with the value the run asked for."""
    loc = [str(part) for part in error["loc"]]
    path = ".".join(loc)
    overridden = {p: v for p, v in _paths(tree).items() if p == path or p.startswith(path + ".") or not path}
    if error["type"] == "extra_forbidden":
        section = model
        for part in loc[:-1]:
            annotation = section.model_fields[part].annotation if part in section.model_fields else None
            section = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
            if section is None:
                break
        known = f" (known: {', '.join(section.model_fields)})" if section is not None else ""
        return f"{path} = {error.get('input')!r}: unknown key{known}"
    shown = (f"{path} = {overridden[path]!r}" if path in overridden
             else ", ".join(f"{p} = {v!r}" for p, v in overridden.items()) or f"{path} = {error.get('input')!r}")
    return f"{shown}: {error['msg']}"


def _config(plan: Mapping[str, Any]):
    base = config.dataset_settings(plan["workload"], plan["dataset"])
    return type(base).model_validate(plan["config"])


def _data(plan: Mapping[str, Any]) -> dict:
    """What the plan resolved: the window (partitioned datasets) or the snapshot's event."""
    return plan.get("window") or plan["event"]


# ---------------------------------------------------------------------------------------------------------
# the steps: the scheduled workloads' steps (through the registry), on what the plan names, with its config


def gate(plan: Mapping[str, Any], work: str) -> dict:
    """The workload's quality gate on the planned data (DataQualityError, no retry, when it fails)."""
    return workloads.for_dataset(plan["dataset"]).gate(_data(plan), _config(plan), work)


def train(plan: Mapping[str, Any], work: str) -> dict:
    """Prepare the planned data and train the workload's model with the effective config."""
    found, cfg = workloads.for_dataset(plan["dataset"]), _config(plan)
    found.prepare(_data(plan), cfg, work)
    return found.train(_data(plan), cfg, work)


def evaluate(plan: Mapping[str, Any], work: str) -> dict:
    """The workload's test metrics beside its baselines."""
    return workloads.for_dataset(plan["dataset"]).evaluate(_data(plan), _config(plan), work)


def lineage_data(plan: Mapping[str, Any]) -> dict:
    """The data a candidate's lineage names (the workload's own lineage of the planned data)."""
    return workloads.for_dataset(plan["dataset"]).lineage_data(_data(plan))


def log_candidate(plan: Mapping[str, Any], gate: Mapping[str, Any], coordinates: Mapping[str, Any], work: str) -> dict:
    """The MLflow candidate run (in the workload's experiment, tagged ``retrain.trigger=adhoc``) and the candidate
    event's extra, which is also recorded on the run so ``promote_models`` can judge it by ``candidate_run_id``."""
    from retrain import tracking

    found = workloads.for_dataset(plan["dataset"])
    lineage = tracking.Lineage(**coordinates, data=lineage_data(plan), quality=gate)
    metrics = workloads.evaluation_metrics(work)
    return found.log_candidate(_data(plan), _config(plan), work, coordinates=coordinates, quality=gate,
                               tags=adhoc_tags(plan, lineage),
                               description=description(plan, lineage, metrics,
                                                       catalog.model(plan["model"]).primary_metric))


def adhoc_tags(plan: Mapping[str, Any], lineage) -> dict[str, str]:
    return {
        "retrain.trigger": "adhoc",
        "retrain.adhoc.kind": plan["kind"],
        "retrain.adhoc.overrides": json.dumps(plan["overrides"], sort_keys=True),
        "retrain.adhoc.resources": plan["resources"],
        "retrain.adhoc.published": str(plan["publish"]).lower(),
        "mlflow.runName": f"adhoc-{plan['model']}-{lineage.data.get('version') or lineage.data.get('partition')}",
    }


def description(plan: Mapping[str, Any], lineage, metrics: Mapping[str, Any], primary_metric: str) -> str:
    data = lineage.data
    what = (f"window {', '.join(data['partitions'])}" if data.get("partitions")
            else f"snapshot `{data.get('version')}` ({data.get('rows')} rows)")
    overrides = ", ".join(f"`{k} = {json.dumps(v)}`" for k, v in plan["overrides"].items()) or "none (configured settings)"
    promotion = "promote_partitioned_models" if plan.get("window") else "promote_models"
    published = (f"published to `{promotion}`" if plan["publish"] else
                 f"not published: judge it with `{promotion}` and `candidate_run_id`")
    shown = [k for k in metrics if k == primary_metric or (k.startswith(("test_", "baseline_")) and not k[-1].isdigit())]
    rows = "".join(f"| {k}{' (primary)' if k == primary_metric else ''} | {float(metrics[k]):.4g} |\n" for k in shown)
    return (f"**Ad hoc** {plan['model']} candidate from `{lineage.dag_id}` run `{lineage.run_id}` on `{plan['dataset']}` "
            f"{what}; quality gate **{lineage.quality.get('verdict', 'unknown')}**; resources `{plan['resources']}`; "
            f"{published}.\n\nOverrides: {overrides}\n\n| metric | value |\n|---|---|\n{rows}")
