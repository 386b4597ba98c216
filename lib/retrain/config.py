"""Workload configuration: one YAML per workload under ``configs/``, loaded into frozen pydantic models.

Unknown keys are an error, so a typo never silently falls back to a default. DAG files know only the
workload's name; owner, retries, timeouts, pools and notifications come from here.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retrain.errors import ConfigError
from retrain.settings import get_settings
from retrain.stats import TARGET_POWER, training_floor


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Notify(Strict):
    """Where failures are reported: always the task log; e-mail through Airflow's SMTP provider when listed."""

    email: list[str] = Field(default_factory=list)


class TaskDefaults(Strict):
    """Airflow task defaults shared by every DAG of a workload."""

    owner: str
    retries: int = Field(ge=0, le=10)
    retry_delay_seconds: int = Field(gt=0)
    retry_exponential_backoff: bool = True
    max_retry_delay_seconds: int = Field(default=600, gt=0)
    execution_timeout_minutes: int = Field(gt=0)
    pool: str = "default_pool"
    queue: str = "default"
    notify: Notify = Field(default_factory=Notify)


class LightGBMParams(Strict):
    objective: Literal["regression", "regression_l1", "huber", "binary"] = "regression"
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    min_data_in_leaf: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.9, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(0.0, ge=0)
    num_threads: int = Field(0, ge=0)  # 0: one per available core
    seed: int = 42


class TabularFeatures(Strict):
    target: str = "global_active_power"
    resample: Literal["1h"] = "1h"
    lags_hours: list[int] = Field(default_factory=lambda: [1, 2, 3, 24, 48, 168])
    rolling_hours: list[int] = Field(default_factory=lambda: [3, 24])
    max_missing_fraction_per_hour: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _positive(self):
        if any(h < 1 for h in self.lags_hours + self.rolling_hours):
            raise ValueError("lags_hours and rolling_hours must be at least 1")
        return self


class TimeSplit(Strict):
    """Time-ordered split: the last ``test_days`` are the test window, the ``valid_days`` before it validate."""

    test_days: int = Field(7, ge=1)
    valid_days: int = Field(7, ge=1)
    min_train_days: int = Field(14, ge=1)


class TabularDataset(Strict):
    model: str
    features: TabularFeatures = Field(default_factory=TabularFeatures)
    split: TimeSplit = Field(default_factory=TimeSplit)
    lightgbm: LightGBMParams = Field(default_factory=LightGBMParams)
    seasonal_naive_lag_hours: int = Field(168, ge=1)
    # the training window: the last N days of the series (warm-up, training, validation and test inside it);
    # null trains on all of it
    window_days: int | None = Field(365, ge=1)

    @property
    def warmup_hours(self) -> int:
        return max(self.features.lags_hours + [self.seasonal_naive_lag_hours])

    @property
    def min_history_days(self) -> float:
        """The shortest window training can use: warm-up, the minimum training days, validation and test."""
        return self.warmup_hours / 24 + self.split.min_train_days + self.split.valid_days + self.split.test_days

    def evaluation_capacity(self) -> tuple[int, str]:
        """The most held-out examples a candidate is judged on, and why: the test tail's hourly predictions."""
        days = self.split.test_days
        return days * 24, f"{self.model}: split.test_days {days} × 24 hourly predictions"

    @model_validator(mode="after")
    def _window_holds_a_split(self):
        if self.window_days is not None and self.window_days < self.min_history_days:
            raise ValueError(f"window_days ({self.window_days}) must be at least the {self.min_history_days:g} days "
                             f"training needs (warm-up {self.warmup_hours} h + split.min_train_days + "
                             f"split.valid_days + split.test_days)")
        return self


class WorkloadConfig(Strict):
    workload: str
    description: str = ""
    defaults: TaskDefaults
    max_active_runs: int = Field(1, ge=1)
    tags: list[str] = Field(default_factory=list)


class ArrivalsConfig(Strict):
    """The sqs profile: how the SQS watcher polls, and the reconciliation sweep of the landing zone."""

    sqs_wait_seconds: int = Field(10, ge=0, le=20)  # long poll: a receive returns as soon as a message is there
    sqs_max_messages: int = Field(10, ge=1, le=10)  # messages per asset event (SQS returns at most 10)
    sqs_idle_seconds: int = Field(0, ge=0, le=300)  # pause after a receive that returned nothing
    reconcile_cron: str = "*/10 * * * *"
    reconcile_min_age_minutes: int = Field(10, ge=0)  # an object waiting this long with no event gets one
    # events no run consumed (apache/airflow#56050) are picked up by the next run if younger than this
    unconsumed_lookback_minutes: int = Field(30, ge=1)


class RetentionConfig(Strict):
    """What ``retrain gc`` keeps; nothing else ever deletes a curated version or an archived raw file."""

    tick_versions: int = Field(3, ge=1)  # newest versions kept per tick partition (the current one always stays)


class IngestConfig(WorkloadConfig):
    poke_interval_seconds: int = Field(5, gt=0)
    wait_timeout_hours: int = Field(24, gt=0)
    arrivals: ArrivalsConfig = Field(default_factory=ArrivalsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)


def _catalog_datasets() -> list[str]:
    from retrain.assets import DATA_ASSETS

    return list(DATA_ASSETS)


class FreshnessConfig(Strict):
    """Design contract 8: within ``bound_seconds`` (F) of its commit a snapshot is trained or superseded."""

    bound_seconds: int = Field(120, ge=30)  # F
    interval_seconds: int = Field(30, ge=5)  # how often the reconcile looks
    act_after_seconds: int = Field(30, ge=0)  # the scheduler's own event path gets this long first
    datasets: list[str] = Field(default_factory=lambda: _catalog_datasets())  # default: every catalog dataset

    @model_validator(mode="after")
    def _fits(self):
        if self.act_after_seconds + self.interval_seconds >= self.bound_seconds:
            raise ValueError(f"act_after_seconds + interval_seconds must stay below bound_seconds (F) to leave "
                             f"time to train (got {self.act_after_seconds} + {self.interval_seconds} >= "
                             f"{self.bound_seconds})")
        from retrain.assets import DATA_ASSETS

        unknown = sorted(set(self.datasets) - set(DATA_ASSETS))
        if unknown:
            raise ValueError(f"datasets must be data assets ({sorted(DATA_ASSETS)}), got {unknown}")
        return self


class ReconcileConfig(WorkloadConfig):
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)


class TabularConfig(WorkloadConfig):
    datasets: dict[str, TabularDataset]


class LoopConfig(Strict):
    """Hyperparameters of the generic training loop (:func:`retrain.training.loop.fit`)."""

    epochs: int = Field(3, ge=1, le=200)
    batch_size: int = Field(64, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)
    patience: int | None = Field(None, ge=1, description="epochs without a lower val loss before stopping; None: never")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
                        description="auto (CUDA when present), cpu, cuda or cuda:N")
    num_workers: int = Field(0, ge=0, description="DataLoader workers; only for datasets that are not TensorDatasets")
    augment: bool = Field(False, description="random crop (pad 4) + horizontal flip, batch-wise on the device")
    amp: bool = Field(True, description="mixed precision on CUDA (never on CPU)")
    eval_batch_size: int = Field(1024, ge=1)



class ImageDataset(Strict):
    model: str
    loop: LoopConfig = Field(default_factory=LoopConfig)
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)

    def evaluation_capacity(self) -> None:
        """No limit: the held-out set is every drop's test split, and grows with each drop."""
        return None


class ImageConfig(WorkloadConfig):
    datasets: dict[str, ImageDataset]


class TickLightGBM(Strict):
    num_leaves: int = Field(15, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(300, ge=1)
    early_stopping_rounds: int = Field(30, ge=1)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    # One thread: a window is a few thousand to a few hundred thousand bars, where OpenMP threads cost more
    # than they save, and backfills run several windows side by side on the same CPU worker (0: all cores).
    num_threads: int = Field(1, ge=0)


class Instrument(Strict):
    """One expected symbol of a tick feed: its price grid and (optionally) its quantity grid."""

    tick_size: float = Field(0.01, gt=0)  # prices (trades and quotes) are multiples of it
    lot_size: float | None = Field(None, gt=0)  # trade sizes are multiples of it (None: any decimal quantity)


class Session(Strict):
    """A partition boundary other than the UTC day: partition ``D`` holds the session that ends at ``cut`` (wall
    clock in ``zone``) on day ``D`` and starts at ``cut`` on the day before (FX: ``17:00`` New York)."""

    cut: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # HH:MM
    zone: str

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _time_zone(value)


def _time_zone(value: str | None) -> str | None:
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"not an IANA time zone name such as 'America/New_York' or 'UTC' (got {value!r})") from None
    return value


class TickFeed(Strict):
    """What one tick feed sends and how its days are cut (``configs/feeds.yaml``): read by the ingest, the quality
    gate and the training, so a feed's facts are stated once."""

    # the expected symbols, each with its grids; a plain list gives every symbol the default grids
    symbols: dict[str, Instrument] = Field(min_length=1)
    # the zone of a vendor clock whose timestamps carry no offset (explicit opt-in: they are read in this zone
    # and converted to UTC at ingest; None: a timestamp without an offset is refused as ambiguous)
    source_timezone: str | None = None
    session: Session | None = None  # None: a partition is one UTC day
    # the weekdays (of the partition's day) the market is closed: no partition is awaited for them (FX: the
    # sessions ending on Saturday and Sunday)
    closed_weekdays: list[Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]] = Field(default_factory=list)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbol_list(cls, value: Any) -> Any:
        names = list(value) if isinstance(value, (list, dict)) else []
        for name in names:
            if not isinstance(name, str):  # YAML reads ON, NO, 0700 as true, false, 448
                raise ValueError(f"symbol {name!r} must be text: quote it in the YAML ('ON', '0700')")
        if isinstance(value, list):
            if len(set(value)) != len(value):
                raise ValueError(f"symbols must be distinct, got {value}")
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {name: ({} if spec is None else spec) for name, spec in value.items()}
        return value

    @field_validator("source_timezone")
    @classmethod
    def _source_zone(cls, value: str | None) -> str | None:
        return _time_zone(value)

    @property
    def symbol_names(self) -> list[str]:
        return list(self.symbols)

    def trades_on(self, partition: str) -> bool:
        """Whether a partition is a trading day of this feed (not among its ``closed_weekdays``)."""
        from retrain.data.ticks import WEEKDAYS, partition_day

        return WEEKDAYS[partition_day(partition).weekday()] not in self.closed_weekdays

    def partition_bounds(self, partition: str) -> tuple[int, int]:
        """The UTC nanoseconds ``[start, end)`` partition ``partition`` covers: its UTC day, or its session."""
        from retrain.data.ticks import partition_bounds

        return partition_bounds(partition, None if self.session is None else (self.session.cut, self.session.zone))


class FeedsConfig(Strict):
    feeds: dict[str, TickFeed]


def feed(dataset: str) -> TickFeed:
    """The feed settings of a tick dataset (``configs/feeds.yaml``). Read afresh on each call (a few dozen lines):
    an edited file takes effect at the next task, with no cache to clear."""
    path = get_settings().config_dir / "feeds.yaml"
    raw = _read_yaml(path, "no feed settings (expected symbols, time zone, partition boundary)")
    feeds = _validated(FeedsConfig, raw, path).feeds
    try:
        return feeds[dataset]
    except KeyError:
        raise ConfigError(f"{path}: no feed {dataset!r} configured (known: {sorted(feeds)})") from None


class TickTrainingConfig(Strict):
    """Settings of the tick direction model (one per dataset of the ``time_series_training`` workload)."""

    model: str = "ticks_direction_lgbm"
    # the dataset's expected symbols, from configs/feeds.yaml (filled in when the workload's config loads)
    symbols: list[str] | None = Field(None, min_length=1)
    window_partitions: int = Field(5, ge=2)  # K: K-1 training days, then the test day
    bar_seconds: int = Field(60, ge=1, le=3600)
    return_lags: int = Field(3, ge=1)
    rolling_bars: list[int] = Field(default_factory=lambda: [5, 15, 30])
    valid_fraction: float = Field(0.2, gt=0, lt=0.5)
    min_train_examples: int = Field(200, ge=1)
    seed: int = 42
    lightgbm: TickLightGBM = Field(default_factory=TickLightGBM)

    def evaluation_capacity(self) -> tuple[int, str]:
        """The most held-out examples a candidate is judged on: bars of the test day, were every symbol traded
        around the clock (a real session holds fewer: 4 symbols × 390 one-minute bars, about 1550)."""
        per_day = 86_400 // self.bar_seconds
        symbols = len(self.symbols or ())
        return symbols * per_day, (f"{self.model}: one test day of {symbols} symbols × {per_day} "
                                             f"bars of {self.bar_seconds} s")

    @model_validator(mode="after")
    def _check(self):
        if 86_400 % self.bar_seconds:
            raise ValueError(f"bar_seconds must divide a day (86400 s), got {self.bar_seconds}")
        if any(w < 2 for w in self.rolling_bars):
            raise ValueError(f"rolling_bars must be at least 2, got {self.rolling_bars}")
        if self.symbols is not None and len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols must be distinct, got {self.symbols}")
        return self


class TimeSeriesConfig(WorkloadConfig):
    datasets: dict[str, TickTrainingConfig]
    partition_wait_hours: float = Field(6, gt=0)  # how long ingest_ticks waits for a partition to land
    # a run waits (at most this long after the newest commit) while a backfill still commits newer partitions
    backfill_settle_seconds: float = Field(30, ge=0)

    @model_validator(mode="after")
    def _feed_symbols(self):
        """Each dataset's symbols are its feed's (configs/feeds.yaml): stated once, for the gate and the model."""
        datasets = {}
        for name, cfg in self.datasets.items():
            expected = feed(name).symbol_names
            if cfg.symbols is not None and cfg.symbols != expected:
                raise ValueError(f"datasets.{name}.symbols {cfg.symbols} differ from the feed's symbols {expected} "
                                 "in configs/feeds.yaml: the symbols are set there only")
            datasets[name] = cfg.model_copy(update={"symbols": expected})
        object.__setattr__(self, "datasets", datasets)
        return self


# metrics a promotion can recompute from logged per-example predictions (retrain.promotion.METRICS)
PREDICTION_METRICS = ("rmse", "test_rmse", "mae", "test_mae", "accuracy", "test_accuracy")


class Guardrail(Strict):
    metric: str
    direction: Literal["minimize", "maximize"]
    tolerance: float = Field(ge=0)  # how much worse (absolute) the candidate may be


class PromotionPolicy(Strict):
    """How a model's candidates are judged (``configs/promotion.yaml``; the statistics: :mod:`retrain.promotion`)."""

    primary_metric: str
    direction: Literal["minimize", "maximize"]
    min_improvement: float = Field(0.0, ge=0)  # absolute, in the metric's units: the smallest worth a change
    # the spread the test will see, to size the evaluation set for min_improvement (module docstring):
    planning_discordance: float | None = Field(None, gt=0, le=1)  # McNemar: share of examples the models disagree on
    planning_sd: float | None = Field(None, gt=0)  # paired bootstrap: sd of the per-example paired differences
    # sd of the primary metric between two retrains of one recipe on the same data (seeds, data order): the
    # spread no evaluation set removes, added to the comparison's variance (module docstring, "Retraining noise")
    training_sd: float = Field(0.0, ge=0)
    guardrails: list[Guardrail] = Field(default_factory=list)
    min_eval_examples: int = Field(30, ge=1)
    test: Literal["paired_bootstrap", "mcnemar"] = "paired_bootstrap"
    confidence: float = Field(0.95, gt=0.5, lt=1)
    bootstrap_samples: int = Field(2000, ge=200, le=100_000)
    baseline_metric: str | None = None  # a first model must beat this metric of its own run
    require_approval: bool = False
    approval_timeout_hours: float = Field(24, gt=0)
    seed: int = 20261126

    @model_validator(mode="after")
    def _consistent(self):
        if self.test == "mcnemar" and self.primary_metric not in ("accuracy", "test_accuracy"):
            raise ValueError(f"test 'mcnemar' only judges accuracy, not {self.primary_metric!r}")
        if self.primary_metric not in PREDICTION_METRICS:
            raise ValueError(f"primary_metric {self.primary_metric!r} cannot be recomputed from predictions "
                             f"(known: {sorted(PREDICTION_METRICS)})")
        expected = "maximize" if self.primary_metric.endswith("accuracy") else "minimize"
        if self.direction != expected:
            raise ValueError(f"{self.primary_metric!r} must be {expected}d, not {self.direction}d")
        key, other = (("planning_discordance", "planning_sd") if self.test == "mcnemar"
                      else ("planning_sd", "planning_discordance"))
        if getattr(self, other) is not None:
            raise ValueError(f"{other} does not plan a {self.test} test; it plans with {key}")
        if self.min_improvement > 0 and getattr(self, key) is None:
            raise ValueError(f"min_improvement {self.min_improvement:g} needs {key} (the spread the {self.test} test "
                             "will see) to size the evaluation set that detects it with 80 % power")
        floor = training_floor(self.training_sd, self.confidence)
        if 0 < self.min_improvement <= floor:
            raise ValueError(f"min_improvement {self.min_improvement:g} cannot be found with {TARGET_POWER:.0%} power "
                             f"on any evaluation set: two retrains of the same recipe already differ with sd "
                             f"√2·{self.training_sd:g} (training_sd), so no n detects less than {floor:.4g}")
        return self

    @property
    def planning_spread(self) -> float | None:
        """The planned sd of the per-example paired differences (for McNemar, sqrt of the discordant share)."""
        if self.test == "mcnemar":
            return None if self.planning_discordance is None else math.sqrt(self.planning_discordance)
        return self.planning_sd

    @property
    def required_n(self) -> int | None:
        """Evaluation examples needed to find a true improvement of ``min_improvement`` with 80 % power at the
        planning spread (None: the policy sets no minimum)."""
        if self.min_improvement <= 0:
            return None
        from retrain import promotion  # numpy: only when a decision is sized, never at DAG parse

        return promotion.required_n(self, sd=self.planning_sd, discordance=self.planning_discordance)

    def planned_mde(self, n: int) -> float | None:
        """What n examples detect with 80 % power at the planning spread (None without one)."""
        from retrain import promotion

        spread = self.planning_spread
        return None if spread is None else promotion.minimum_detectable_effect(
            self.test, n, spread, confidence=self.confidence, training_sd=self.training_sd)

    def planning(self) -> str:
        spread = (f"planning discordance {self.planning_discordance:.1%}" if self.test == "mcnemar"
                  else f"planning sd {self.planning_sd:.4g}")
        return spread + (f", training sd {self.training_sd:.4g}" if self.training_sd else "")


class PromotionConfig(WorkloadConfig):
    """``configs/promotion.yaml``: the promotion DAG's defaults and one typed policy per registered model, each
    ``policy_defaults`` with the model's own keys over them (whether each model's held-out set can reach its
    required n is checked by :func:`retrain.promotion.load_policies`, which needs the other workloads' configs)."""

    policy_defaults: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, PromotionPolicy]

    @model_validator(mode="before")
    @classmethod
    def _policies(cls, raw: Any) -> Any:
        """Each model's policy is the defaults overridden by its own keys; problems name the model."""
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            return raw
        defaults = raw.get("policy_defaults") or {}
        if unknown := sorted(set(defaults) - set(PromotionPolicy.model_fields)):
            raise ValueError(f"policy_defaults: unknown keys {unknown} (known: {sorted(PromotionPolicy.model_fields)})")
        policies = {}
        for model, spec in raw["models"].items():
            try:
                policies[model] = PromotionPolicy.model_validate({**defaults, **(spec or {})})
            except ValidationError as exc:
                raise ValueError(f"models.{model}: {_problems(exc)}") from None
        return {**raw, "models": policies}


class WorkerSpec(Strict):
    """One Celery worker kind: the queue it consumes is its key in ``workers``."""

    concurrency: int = Field(ge=1, le=64)  # task slots of one worker
    replicas: int = Field(1, ge=1, le=16)  # workers of this kind that `retrain up` starts on one host


class DeploymentConfig(Strict):
    """``configs/deployment.yaml``: pool sizes (both profiles) and Celery workers per queue (scale-out)."""

    pools: dict[str, int] = Field(default_factory=lambda: {"cpu": 0, "gpu": 1})
    workers: dict[str, WorkerSpec] = Field(default_factory=lambda: {"default": WorkerSpec(concurrency=4),
                                                                     "gpu": WorkerSpec(concurrency=1)})

    @field_validator("pools")
    @classmethod
    def _slots(cls, value: dict[str, int]) -> dict[str, int]:
        negative = {name: slots for name, slots in value.items() if slots < 0}
        if negative:
            raise ValueError(f"pool slots must be 0 (auto) or more, got {negative}")
        return value

    @field_validator("workers")
    @classmethod
    def _queues(cls, value: dict[str, WorkerSpec]) -> dict[str, WorkerSpec]:
        if not value:
            raise ValueError("at least one worker queue is needed")
        bad = [q for q in value if not q.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"queue names must be letters, digits, '-' or '_', got {bad}")
        return value

    def pool_slots(self, cores: int) -> dict[str, int]:
        """Slots per pool on a machine with ``cores`` cores (``cpu: 0`` means half of them, at least one)."""
        return {name: (slots or (max(1, cores // 2) if name == "cpu" else 1)) for name, slots in self.pools.items()}


_MODELS: dict[str, type[WorkloadConfig]] = {
    "ingest": IngestConfig,
    "tabular_ml_training": TabularConfig,
    "promotion": PromotionConfig,
    "image_dl_training": ImageConfig,
    "time_series_training": TimeSeriesConfig,
    "reconcile": ReconcileConfig,
}


def dataset_settings(workload: str, dataset: str):
    """The settings of one dataset of a workload (ConfigError naming the known ones otherwise)."""
    cfg = load(workload)
    try:
        return cfg.datasets[dataset]
    except KeyError:
        raise ConfigError(f"{workload}: no dataset {dataset!r} configured (known: {sorted(cfg.datasets)})") from None


_SCHEMA_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "enum", "minLength",
                  "maxLength")


def param_bounds(model: type[BaseModel], field: str) -> dict[str, Any]:
    """The JSON-schema bounds of one config field (minimum, maximum, pattern, …), for an Airflow ``Param`` that
    overrides it: a DAG's param accepts exactly what the config model accepts, stated once (in the model)."""
    schema = model.model_json_schema()["properties"][field]
    return {key: schema[key] for key in _SCHEMA_BOUNDS if key in schema}


def _catalog_model(workload: str) -> type[WorkloadConfig] | None:
    """The config model a catalog workload names (``config_model``), for workloads this module does not know."""
    from retrain import catalog

    entry = catalog.WORKLOADS.get(workload)
    return catalog.load(entry.config_model) if entry is not None and entry.config_model else None


def _read_yaml(path, missing: str | None) -> Any:
    """A config file's YAML (ConfigError naming the file when it is not YAML); a missing file is a ConfigError
    saying ``missing``, or nothing (None: its model's defaults apply)."""
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        if missing is None:
            return None
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def _validated(model: type[BaseModel], raw: Any, path) -> Any:
    """``raw`` validated by ``model`` (ConfigError naming the file and each problem)."""
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    """Each problem as ``field.path: message (got value)``; a model-level rule's message stands alone."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" if e["loc"]
                     else e["msg"].removeprefix("Value error, ") for e in exc.errors())


@functools.cache
def load(workload: str) -> WorkloadConfig:
    """The validated configuration of a workload (``configs/<workload>.yaml``)."""
    path = get_settings().config_dir / f"{workload}.yaml"
    raw = _read_yaml(path, f"no configuration for workload {workload!r}")
    config = _validated(_MODELS.get(workload) or _catalog_model(workload) or WorkloadConfig, raw, path)
    if config.workload != workload:
        raise ConfigError(f"{path}: workload must be {workload!r} (observed {config.workload!r})")
    return config


@functools.cache
def deployment() -> DeploymentConfig:
    """Pools and worker kinds (``configs/deployment.yaml``; defaults when the file is absent)."""
    path = get_settings().config_dir / "deployment.yaml"
    return _validated(DeploymentConfig, _read_yaml(path, None), path)
