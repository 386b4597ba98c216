"""Ingest household power files into one growing series: each landed file is an increment or a correction.

The series is keyed by the reading's timestamp. Snapshot N+1 is snapshot N plus what the arrival brought:

* a reading at a new timestamp is **added**;
* a reading at a timestamp the series already holds **replaces** it when any value differs (the later
  arrival wins, ``?`` included); the replaced readings are counted and listed, as runs of consecutive
  minutes, in the manifest's ``arrival.corrected``; an identical reading changes nothing;
* minutes between the series and the arrival that neither holds are a **gap**: listed in the manifest and the
  event (``gaps``), never filled in.

Storage is month-partitioned parquet shards (see :mod:`retrain.snapshots`): an arrival rewrites only the
months it touches, into new content-addressed shards, and the new manifest lists the untouched months' shards
as they are. A full re-export that overlaps the whole history therefore yields one snapshot whose arrival
lists only the readings that changed; one that changes nothing yields no snapshot and no event. The same bytes
landed twice (under any name) yield no new snapshot and no event. Arrivals commit one at a time under the
dataset's lock, each against the head the previous one left.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from retrain import locks, snapshots, storage
from retrain.data import power
from retrain.errors import DataFormatError, LandingPathError
from retrain.ingest import landing

DATASET = "household_power"
STEP_SECONDS = 60  # one reading per minute: a longer step between two readings is a gap
ROW_GROUP_ROWS = 7 * 1440  # a week per row group: a window read skips the row groups before it
MAX_LISTED_RUNS = 500  # corrected runs listed one by one in a manifest; beyond that, counted
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What happened to one landed file: ``ingested`` (new snapshot), ``resumed`` (this run committed it on an
    earlier try) or ``duplicate`` (the same content was ingested before, or it changes no reading: no new
    version, no event)."""

    status: str
    snapshot: snapshots.Snapshot

    @property
    def emits_event(self) -> bool:
        return self.status in ("ingested", "resumed")


def version_for(parent: str | None, arrival: bytes | str) -> str:
    """Content-addressed: the same file (its bytes or their sha256) on the same parent is the same version."""
    digest = arrival if isinstance(arrival, str) else hashlib.sha256(arrival).hexdigest()
    return hashlib.sha256(f"{parent or ''}\0{digest}".encode()).hexdigest()[:16]


# --- the series: time arithmetic on sorted int64 seconds ---------------------------------------------------

def _seconds(table: pa.Table) -> pa.Array:
    return table["timestamp"].combine_chunks().cast(pa.int64())


def _iso(seconds: int) -> str:
    return pa.scalar(seconds, pa.timestamp("s")).as_py().isoformat(sep=" ")


def _runs(seconds: list[int]) -> list[list]:
    """Sorted timestamps as runs of consecutive minutes: ``[first, last, count]``."""
    runs: list[list] = []
    for s in seconds:
        if runs and s - runs[-1][1] == STEP_SECONDS:
            runs[-1][1], runs[-1][2] = s, runs[-1][2] + 1
        else:
            runs.append([s, s, 1])
    return runs


def _coverage(seconds: pa.Array) -> list[list[int]]:
    """The intervals ``[first, last]`` (epoch seconds) a sorted run of readings covers without a gap."""
    if len(seconds) == 0:
        return []
    steps = pc.pairwise_diff(seconds).to_numpy(zero_copy_only=False)[1:]
    values = seconds.to_numpy()
    breaks = (steps > STEP_SECONDS).nonzero()[0]
    starts = [int(values[0]), *(int(values[i + 1]) for i in breaks)]
    ends = [*(int(values[i]) for i in breaks), int(values[-1])]
    return [[a, b] for a, b in zip(starts, ends)]


def merge_coverage(*parts: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for a, b in sorted(i for part in parts for i in part):
        if merged and a <= merged[-1][1] + STEP_SECONDS:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


def gaps(coverage: list[list[int]]) -> list[dict]:
    """The holes between covered intervals: the minutes no arrival brought."""
    return [{"from": _iso(a[1] + STEP_SECONDS), "to": _iso(b[0] - STEP_SECONDS),
             "minutes": (b[0] - a[1]) // STEP_SECONDS - 1} for a, b in itertools.pairwise(coverage)]


def _checked(table: pa.Table, file_name: str) -> pa.Table:
    """One file must be a series itself: every timestamp once, in increasing order."""
    seconds = _seconds(table)
    if len(seconds) > 1:
        steps = pc.pairwise_diff(seconds).to_numpy(zero_copy_only=False)[1:]
        bad = (steps <= 0).nonzero()[0]
        if len(bad):
            row = int(bad[0]) + 1
            what = "repeats" if steps[bad[0]] == 0 else "goes back from"
            raise DataFormatError(file_name, "timestamps must be unique and increasing within a file",
                                  f"data row {row + 1}: {_iso(int(seconds[row].as_py()))} {what} the row before")
    return table


# --- one month's shard --------------------------------------------------------------------------------------

def _read_shard(snapshot: snapshots.Snapshot, entry: dict) -> pa.Table:
    return storage.read_parquet(snapshot.file(entry["path"])).cast(power.SCHEMA)


def _shard_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return buffer.getvalue()


def _differs(old: pa.Table, new: pa.Table) -> pa.Array:
    """Per row of two tables over the same timestamps: does any value differ (missing equals missing)?"""
    differs = pa.array([False] * old.num_rows, pa.bool_())
    for column in power.COLUMNS[1:]:
        a, b = old[column].combine_chunks(), new[column].combine_chunks()
        equal = pc.or_kleene(pc.equal(a, b), pc.and_(pc.is_null(a), pc.is_null(b)))
        differs = pc.or_(differs, pc.invert(pc.fill_null(equal, False)))
    return differs


@dataclass
class _MonthMerge:
    table: pa.Table
    added: int
    corrected: list[int]  # epoch seconds of the replaced readings


def _merge_month(old: pa.Table | None, new: pa.Table) -> _MonthMerge:
    if old is None:
        return _MonthMerge(new, new.num_rows, [])
    old_s, new_s = _seconds(old), _seconds(new)
    in_new = pc.is_in(old_s, value_set=new_s)
    in_old = pc.is_in(new_s, value_set=old_s)
    replaced_old = old.filter(in_new)
    overlapping_new = new.filter(in_old)  # both sorted by timestamp: row i is the same minute in each
    changed = _differs(replaced_old, overlapping_new)
    corrected = _seconds(overlapping_new).filter(changed).to_pylist()
    added = new.num_rows - overlapping_new.num_rows
    if not corrected and not added:
        return _MonthMerge(old, 0, [])
    merged = pa.concat_tables([old.filter(pc.invert(in_new)), new])
    return _MonthMerge(merged.sort_by("timestamp"), added, corrected)


# --- ingest -------------------------------------------------------------------------------------------------

def ingest(dataset: str, name: str, run_id: str) -> IngestResult:
    """The catalog's ingest step (``(dataset, landed name, run id)``): :func:`ingest_file`."""
    return ingest_file(name, run_id)


def ingest_file(file_name: str, run_id: str) -> IngestResult:
    """Claim, parse and merge one landed power file into the series. Bad files are quarantined and the error
    re-raised; nothing of them reaches the series."""
    try:
        claimed = landing.claim(DATASET, file_name, run_id)
    except LandingPathError:
        existing = landing.committed_by_run(DATASET, file_name, run_id)
        if existing is None:
            raise
        # the event belongs to the file that committed the snapshot; another name of the same bytes has none
        produced = existing.manifest.get("produced_by", {}).get("file")
        return IngestResult("resumed" if produced in (None, file_name) else "duplicate", existing)
    data = storage.read_bytes(claimed)
    source = {"name": file_name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    # One arrival at a time: each extends the head the previous one committed, and the same bytes landed
    # under two names at once are merged by whichever ingest takes the lock first.
    with locks.named_lock(f"snapshot.{DATASET}"):
        parent = snapshots.head(DATASET)
        seen = (parent.manifest.get("arrivals") or {}).get(source["sha256"]) if parent else None
        if seen is not None:
            existing = snapshots.load(DATASET, seen) or parent
            existing = snapshots.add_source_file(existing, source)
            landing.archive(DATASET, claimed, existing.version)
            # "resumed": this very file was committed by this run on an earlier try; anything else is a repeat
            produced = existing.manifest.get("produced_by", {})
            status = "resumed" if produced.get("run_id") == run_id and produced.get("file") == file_name else "duplicate"
            log.info("%s: content already in snapshot %s (%s)", file_name, existing.version, status)
            return IngestResult(status, existing)

        with landing.quarantined_on_format_error(DATASET, claimed, run_id):
            table = _checked(power.read_power_bytes(data, file_name), file_name)

        snapshot = _extend(parent, table, source, run_id, file_name)
        if snapshot is None:  # every reading is already in the series, unchanged
            parent = snapshots.add_source_file(parent, source)
            landing.archive(DATASET, claimed, parent.version)
            log.info("%s: no reading differs from snapshot %s (duplicate: no new snapshot)", file_name, parent.version)
            return IngestResult("duplicate", parent)
    landing.archive(DATASET, claimed, snapshot.version)
    arrival = snapshot.manifest["arrival"]
    log.info("%s -> snapshot %s: %d readings added, %d corrected; the series holds %d readings (%s .. %s)",
             file_name, snapshot.version, arrival["rows_added"], arrival["rows_corrected"], snapshot.rows,
             *snapshot.manifest["time_range"])
    return IngestResult("ingested", snapshot)


def _extend(parent: snapshots.Snapshot | None, table: pa.Table, source: dict, run_id: str,
            file_name: str) -> snapshots.Snapshot | None:
    """Commit the snapshot that is ``parent`` plus ``table`` (None when it would change nothing)."""
    seconds = _seconds(table)
    months = pc.strftime(table["timestamp"], format="%Y-%m").combine_chunks()
    by_month = {m.as_py(): table.filter(pc.equal(months, m)) for m in pc.unique(months)}
    previous = {e["month"]: e for e in (parent.manifest["files"] if parent else [])}

    files = dict(previous)
    added, corrected, touched = 0, [], []
    for month, new in sorted(by_month.items()):
        old = _read_shard(parent, previous[month]) if month in previous else None
        merged = _merge_month(old, new)
        if merged.added == 0 and not merged.corrected:
            continue
        added, corrected = added + merged.added, corrected + merged.corrected
        touched.append(month)
        merged_seconds = _seconds(merged.table)
        files[month] = snapshots.write_shard(
            DATASET, f"month={month}", ".parquet", _shard_bytes(merged.table), rows=merged.table.num_rows,
            month=month, time_range=[_iso(merged_seconds[0].as_py()), _iso(merged_seconds[-1].as_py())])
    if parent is not None and not touched:
        return None

    coverage = merge_coverage(parent.manifest.get("coverage", []) if parent else [], _coverage(seconds))
    listed = [e for _, e in sorted(files.items())]
    corrected.sort()
    runs = _runs(corrected)
    parent_gaps = {(g["from"], g["to"]) for g in (parent.manifest.get("gaps", []) if parent else [])}
    series_gaps = gaps(coverage)
    arrival = {
        "file": file_name,
        "rows": table.num_rows,
        "rows_added": added,
        "rows_corrected": len(corrected),
        "time_range": [_iso(seconds[0].as_py()), _iso(seconds[-1].as_py())],
        "months": touched,
        "corrected": [[_iso(a), _iso(b), n] for a, b, n in runs[:MAX_LISTED_RUNS]],
        "corrected_runs": len(runs),
        "gaps_opened": [g for g in series_gaps if (g["from"], g["to"]) not in parent_gaps],
    }
    version = version_for(parent.version if parent else None, source["sha256"])
    return snapshots.commit_growing(
        DATASET, version, listed, parent=parent,
        rows=sum(e["rows"] for e in listed),
        source_files=[source],
        produced_by={"run_id": run_id, "file": file_name},
        schema_version=power.SCHEMA_VERSION,
        extra={
            "series": True,
            "time_range": [_iso(coverage[0][0]), _iso(coverage[-1][1])],
            "columns": power.COLUMNS,
            "coverage": coverage,
            "gaps": series_gaps,
            "arrival": arrival,
            "arrivals": {**(parent.manifest.get("arrivals", {}) if parent else {}), source["sha256"]: version},
        },
    )


# --- snapshots written before the series -------------------------------------------------------------------

def migrate(run_id: str = "migrate") -> list[dict]:
    """Fold the snapshots written before the series (one landed file each, ``part-0.parquet`` in their own
    folder) into the series, oldest commit first, as if each had just arrived. They stay where they are and
    readable; an arrival already in the series is skipped, so running it again does nothing. No event is
    emitted (the freshness reconcile trains the new head). Returns one line per old snapshot."""
    legacy = [s for s in snapshots.committed(DATASET) if not s.manifest.get("series")]
    done = []
    with locks.named_lock(f"snapshot.{DATASET}"):
        for old in sorted(legacy, key=lambda s: (s.manifest.get("created_at", ""), s.version)):
            parent = snapshots.head(DATASET)
            source = dict(old.manifest["source_files"][0]) if old.manifest.get("source_files") else {
                "name": f"version={old.version}", "sha256": old.sha256, "bytes": 0}
            if parent is not None and source["sha256"] in (parent.manifest.get("arrivals") or {}):
                done.append({"from": old.version, "to": parent.manifest["arrivals"][source["sha256"]], "status": "already"})
                continue
            snapshots.verify(old)
            table = _checked(snapshots.read_parquet(old).cast(power.SCHEMA).sort_by("timestamp"), old.location)
            new = _extend(parent, table, source, run_id, source["name"])
            if new is None:
                done.append({"from": old.version, "to": parent.version, "status": "unchanged"})
                continue
            arrival = new.manifest["arrival"]
            done.append({"from": old.version, "to": new.version, "status": "migrated", "rows_added": arrival["rows_added"],
                         "rows_corrected": arrival["rows_corrected"]})
    return done
