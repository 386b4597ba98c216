"""Tick data: generator, strict reader, partition normalisation and the quality gate (expectations/ticks.json)."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, time, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from retrain import quality, settings
from retrain.data import tick_generator, tick_reader, ticks
from retrain.errors import DataFormatError, DataQualityError

DATASET = "ticks"
DAY = date(2024, 1, 2)
PARTITION = DAY.isoformat()
SYMBOLS = list(ticks.DEFAULT_SYMBOLS)
TICKS = 80_000  # 4 symbols x ~20k ticks


@pytest.fixture(scope="module", autouse=True)
def _repo_expectations():
    """The repo's expectations/ (default settings), whatever the surrounding environment says."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RETRAIN_EXPECTATIONS", raising=False)
        settings.reset_settings()
        quality.load_suite.cache_clear()
        yield
    settings.reset_settings()
    quality.load_suite.cache_clear()


@pytest.fixture(scope="module")
def good() -> pa.Table:
    return tick_generator.generate_ticks(DAY, SYMBOLS, TICKS, seed=1)


@pytest.fixture(scope="module")
def raw_csv(good) -> bytes:
    return tick_generator.to_csv_bytes(good)


@pytest.fixture(scope="module")
def curated(raw_csv) -> pa.Table:
    return tick_reader.normalize_partition([("ticks.csv", raw_csv)], PARTITION)


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _csv(lines: list[str]) -> bytes:
    return ("\n".join([ticks.HEADER, *lines]) + "\n").encode()


ROW = "2024-01-02T14:30:00.123456789Z,AAPL,190.01,100,B,190.00,190.01"


def _format_error(data: bytes, file: str = "bad.csv") -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        tick_reader.read_tick_file(data, file)
    assert info.value.file == file
    return info.value


# --------------------------------------------------------------------------------------------------------
# generator


def test_generator_is_deterministic_per_seed(good):
    assert tick_generator.generate_ticks(DAY, SYMBOLS, TICKS, seed=1).equals(good)
    assert not tick_generator.generate_ticks(DAY, SYMBOLS, TICKS, seed=2).equals(good)
    assert good.num_rows == TICKS and good.schema == ticks.SCHEMA


def test_generated_ticks_look_like_a_market(good):
    frame = good.to_pandas()
    frame["symbol"] = frame["symbol"].astype(str)
    assert set(frame["symbol"]) == set(SYMBOLS)
    assert (frame["bid"] < frame["ask"]).all() and (frame["bid"] > 0).all() and (frame["size"] >= 1).all()
    spread_ticks = ((frame["ask"] - frame["bid"]) / ticks.TICK_SIZE).round()
    assert spread_ticks.between(1, 10).all()
    buys = frame["side"] == "B"
    assert (frame.loc[buys, "price"] == frame.loc[buys, "ask"]).all()
    assert (frame.loc[~buys, "price"] == frame.loc[~buys, "bid"]).all()
    assert 0.3 < buys.mean() < 0.7

    # inside the session, strictly increasing per symbol, feed order overall
    assert frame["timestamp"].min() >= pd.Timestamp("2024-01-02 13:30", tz="UTC")
    assert frame["timestamp"].max() < pd.Timestamp("2024-01-02 20:00", tz="UTC")
    assert frame["timestamp"].is_monotonic_increasing
    assert frame.groupby("symbol")["timestamp"].apply(lambda s: s.diff().dropna().min() > pd.Timedelta(0)).all()

    # different price levels; uneven activity, busier at the open and the close than at midday (U-shape)
    levels = frame.groupby("symbol")["price"].median()
    assert levels.max() / levels.min() > 2
    counts = frame["symbol"].value_counts()
    assert counts.max() > 1.2 * counts.min()
    minute = (frame["timestamp"] - pd.Timestamp("2024-01-02 13:30", tz="UTC")).dt.total_seconds() // 60
    edges = ((minute < 30) | (minute >= 360)).sum() / 60
    middle = minute.between(180, 239).sum() / 60
    assert edges > 2 * middle


def test_generator_refuses_impossible_requests():
    with pytest.raises(ValueError, match="at least one per symbol"):
        tick_generator.generate_ticks(DAY, SYMBOLS, 3, seed=0)
    with pytest.raises(ValueError, match="distinct"):
        tick_generator.generate_ticks(DAY, ["AAPL", "AAPL"], 100, seed=0)
    with pytest.raises(ValueError, match="session"):
        tick_generator.generate_ticks(DAY, SYMBOLS, 100, seed=0, session=(time(14), time(14)))


# --------------------------------------------------------------------------------------------------------
# reader: round trips


def test_csv_round_trip(good, raw_csv):
    first_line = raw_csv.split(b"\n", 2)[1].decode()
    assert first_line.startswith("2024-01-02T13:30:") and first_line.split(",")[0].endswith("Z")
    table = tick_reader.read_tick_file(raw_csv, "ticks.csv")
    assert table.schema == ticks.SCHEMA
    assert table.equals(good)


def test_parquet_round_trip(good):
    plain = good.cast(pa.schema([(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
                                 for f in good.schema]))
    assert tick_reader.read_tick_file(_parquet_bytes(plain), "ticks.parquet").equals(good)
    assert tick_reader.read_tick_file(_parquet_bytes(good), "ticks.parquet").equals(good)


def test_microsecond_timestamps_and_other_offsets_are_read_as_utc_instants(good):
    frame = good.slice(0, 500).to_pandas()
    frame["timestamp"] = frame["timestamp"].dt.floor("us").astype("datetime64[us, UTC]")
    from_parquet = tick_reader.read_tick_file(_parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False)), "us.parquet")
    expected = pd.Series(frame["timestamp"].astype("datetime64[ns, UTC]"), name="timestamp")
    pd.testing.assert_series_equal(from_parquet["timestamp"].to_pandas(), expected)

    lines = [ROW.replace("Z,", "+00:00,").replace(".123456789", ".123456"),
             ROW.replace("T14:30:00.123456789Z", "T16:30:00.123456+02:00")]
    table = tick_reader.read_tick_file(_csv(lines), "us.csv")
    stamp = datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=timezone.utc)
    assert table["timestamp"].to_pylist() == [stamp, stamp]


def test_normalize_partition_is_deterministic_whatever_the_file_order(good, raw_csv, curated):
    shuffled = good.take(pa.array(np.random.default_rng(0).permutation(good.num_rows)))
    half = good.num_rows // 2
    files = [("b.csv", tick_generator.to_csv_bytes(shuffled.slice(0, half))),
             ("a.parquet", _parquet_bytes(shuffled.slice(half)))]
    assert tick_reader.normalize_partition(files, PARTITION).equals(curated)
    assert tick_reader.normalize_partition(files[::-1], PARTITION).equals(curated)

    frame = curated.to_pandas()
    frame["symbol"] = frame["symbol"].astype(str)
    assert frame["symbol"].is_monotonic_increasing
    assert frame.groupby("symbol")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert curated.num_rows == good.num_rows


def test_a_file_location_is_streamed_to_the_same_table(raw_csv, curated, tmp_path):
    path = tmp_path / "ticks.csv"
    path.write_bytes(raw_csv)
    assert tick_reader.normalize_partition([("ticks.csv", str(path))], PARTITION).equals(curated)
    assert tick_reader.read_tick_location(str(path)).equals(tick_reader.read_tick_file(raw_csv, "ticks.csv"))
    assert ticks.symbols(curated) == sorted(SYMBOLS)


def _share_instants(table: pa.Table, same_symbol: bool, every: int = 97) -> pa.Table:
    """Every ``every``-th tick moved onto the previous tick's instant, where the two are (or are not) of the same
    symbol: still in time order."""
    stamps = table["timestamp"].cast(pa.int64()).to_numpy().copy()
    codes = table["symbol"].combine_chunks().indices.to_numpy()
    rows = np.arange(every, len(stamps), every)
    rows = rows[(codes[rows] == codes[rows - 1]) == same_symbol]
    stamps[rows] = stamps[rows - 1]
    return table.set_column(0, "timestamp", pa.array(stamps).cast(ticks.SCHEMA.field("timestamp").type))


@pytest.mark.parametrize("same_symbol", [False, True], ids=["instant-shared-across-symbols", "ties-within-a-symbol"])
def test_a_feed_in_time_order_sorts_as_a_shuffled_one(good, monkeypatch, same_symbol):
    """Feed order is grouped by symbol block by block (ties within a symbol take the general sort): small
    blocks here, so that many are chained; the result must be the general sort's, row for row."""
    monkeypatch.setattr(tick_reader, "_BLOCK_SIZE", 1 << 16)
    monkeypatch.setattr(tick_reader, "_BLOCK_ROWS", 1_000)
    feed = _share_instants(good, same_symbol)
    shuffled = feed.take(pa.array(np.random.default_rng(1).permutation(feed.num_rows)))
    grouped = tick_reader.normalize_partition([("feed.csv", tick_generator.to_csv_bytes(feed))], PARTITION)
    general = tick_reader.normalize_partition([("shuffled.csv", tick_generator.to_csv_bytes(shuffled))], PARTITION)
    assert grouped.equals(general)
    frame = grouped.to_pandas()
    assert frame["symbol"].astype(str).is_monotonic_increasing
    assert frame.groupby("symbol", observed=True)["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()


def test_ties_on_symbol_and_timestamp_are_ordered_by_the_other_columns():
    a = "2024-01-02T14:30:00Z,AAPL,190.02,100,B,190.01,190.02"
    b = "2024-01-02T14:30:00Z,AAPL,190.01,5,S,190.01,190.02"
    first = tick_reader.normalize_partition([("x.csv", _csv([a, b]))], PARTITION)
    second = tick_reader.normalize_partition([("x.csv", _csv([b, a]))], PARTITION)
    assert first.equals(second)
    assert first["price"].to_pylist() == [190.01, 190.02]


def test_write_partition_writes_zstd_parquet_with_its_manifest_entry(curated, tmp_path):
    import hashlib

    [entry] = ticks.write_partition(curated, str(tmp_path))
    path = tmp_path / entry["path"]
    assert entry["path"] == "part-00000.parquet"
    assert entry["rows"] == curated.num_rows and entry["bytes"] == path.stat().st_size
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_table(path).equals(curated)
    assert tick_reader.read_tick_file(path.read_bytes(), "curated.parquet").equals(curated)


def test_a_large_partition_is_split_into_files_by_row_count_only(curated, tmp_path, monkeypatch):
    monkeypatch.setattr(ticks, "ROWS_PER_FILE", 30_000)
    entries = ticks.write_partition(curated, str(tmp_path / "a"))
    assert [e["path"] for e in entries] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [e["rows"] for e in entries] == [26_666, 26_667, 26_667]
    back = pa.concat_tables([pq.read_table(tmp_path / "a" / e["path"]) for e in entries])
    assert back.equals(curated)
    # the same partition always gives the same files, however its rows are chunked in memory
    rechunked = pa.concat_tables([curated.slice(i, 7_000) for i in range(0, curated.num_rows, 7_000)])
    assert ticks.write_partition(rechunked, str(tmp_path / "b")) == entries


# --------------------------------------------------------------------------------------------------------
# reader: structural errors


def test_an_empty_partition_is_refused():
    with pytest.raises(DataFormatError) as info:
        tick_reader.normalize_partition([("a.csv", (ticks.HEADER + "\n").encode()), ("b.csv", ticks.HEADER.encode())],
                                  PARTITION)
    assert info.value.rule == "partition must contain at least one tick"
    assert "0 ticks in 2 file(s): a.csv, b.csv" in str(info.value)
    with pytest.raises(DataFormatError, match="partition must contain at least one tick"):
        tick_reader.normalize_partition([], PARTITION)


def test_an_empty_file_is_refused():
    error = _format_error(b"", "empty.csv")
    assert "header" in error.rule and error.observed == "empty file (0 bytes)"


def test_a_renamed_column_is_a_schema_change():
    data = _csv([ROW]).replace(b",price,", b",last_price,", 1)
    error = _format_error(data)
    assert "schema change" in error.rule
    assert "missing ['price']" in error.observed and "unexpected ['last_price'] (renamed?)" in error.observed


def test_a_missing_or_extra_column_is_a_schema_change():
    assert "missing ['ask']" in _format_error(b"timestamp,symbol,price,size,side,bid\n").observed
    assert "unexpected ['exchange']" in _format_error((ticks.HEADER + ",exchange\n" + ROW + ",X\n").encode()).observed


def test_a_retyped_csv_column_is_refused_with_its_row():
    error = _format_error(_csv([ROW, ROW.replace(",100,", ",100 lots,")]))
    assert error.rule == "size must be a decimal number"
    assert error.observed == "data row 2, column size: '100 lots'"
    assert "bad.csv: size must be a decimal number (observed: data row 2, column size: '100 lots')" == str(error)


def test_a_retyped_parquet_column_is_a_schema_change(good):
    table = good.slice(0, 100)
    retyped = table.set_column(2, "price", table["price"].cast(pa.string()))
    error = _format_error(_parquet_bytes(retyped), "bad.parquet")
    assert error.rule == "column price must be float64 (schema change)" and error.observed == "string"
    renamed = table.rename_columns(["timestamp", "ticker", *table.column_names[2:]])
    assert "unexpected ['ticker']" in _format_error(_parquet_bytes(renamed), "bad.parquet").observed


def test_local_time_without_a_zone_is_refused_in_csv():
    error = _format_error(_csv([ROW, ROW.replace("Z,", ",")]))
    assert "explicit UTC offset" in error.rule and "local time" in error.rule
    assert error.observed == "data row 2, column timestamp: '2024-01-02T14:30:00.123456789'"


def test_local_time_without_a_zone_is_refused_in_parquet(good):
    table = good.slice(0, 100)
    naive = table.set_column(0, "timestamp", table["timestamp"].cast(pa.timestamp("ns")))
    error = _format_error(_parquet_bytes(naive), "naive.parquet")
    assert "zone-aware UTC" in error.rule and "local time" in error.rule
    assert error.observed == "timestamp[ns] (no zone)"


@pytest.mark.parametrize(
    ("line", "rule", "observed"),
    [
        (ROW.replace("190.01,100", "abc,100"), "price must be a decimal number", "data row 1, column price: 'abc'"),
        (ROW.replace(",190.00,", ",,"), "every field must hold a value", "data row 1, column bid: empty"),
        (ROW.replace(",190.00,", ",nan,"), "bid must be a finite number", "data row 1: nan"),
        (ROW.replace(",AAPL,", ",,"), "every field must hold a value", "data row 1, column symbol: empty"),
        (ROW.replace(",B,", ",X,"), "side must be 'B' (buyer-initiated) or 'S' (seller-initiated)", "data row 1: 'X'"),
        (ROW.replace("2024-01-02T", "2024-13-02T"), "timestamp must be ISO-8601", "column timestamp"),
        (ROW + ",extra", "every row must have 7 comma-separated fields", "Expected 7 columns, got 8"),
    ],
)
def test_unparseable_values_are_refused(line, rule, observed):
    error = _format_error(_csv([ROW, line] if "data row 1" not in observed else [line]))
    assert error.rule.startswith(rule)
    assert observed in error.observed


def test_a_symbol_that_is_not_utf8_is_refused():
    error = _format_error(_csv([ROW, ROW.replace("AAPL", "AAXL")]).replace(b"AAXL", b"AA\xffL"))
    assert error.rule == "symbol must be UTF-8 text"
    assert error.observed == "data row 2: b'AA\\xffL'"


def test_a_wrong_delimiter_is_refused():
    error = _format_error(_csv([ROW]).replace(b",", b";"))
    assert error.rule == "fields must be separated by ','"


def test_a_partition_is_a_utc_day():
    with pytest.raises(DataFormatError, match="YYYY-MM-DD"):
        tick_reader.normalize_partition([("a.csv", _csv([ROW]))], "20240102")


# --------------------------------------------------------------------------------------------------------
# quality frame and gate


def _gate(table: pa.Table, partition: str = PARTITION, report_dir=None) -> quality.GateReport:
    return quality.validate(DATASET, ticks.quality_frame(table, partition), version="test",
                            report_dir=str(report_dir) if report_dir else None)


def _failures(table: pa.Table, partition: str = PARTITION) -> tuple[DataQualityError, dict[tuple[str, str], dict]]:
    report = _gate(table, partition)
    assert not report.success
    with pytest.raises(DataQualityError) as info:
        quality.enforce(report)
    assert info.value.dataset == DATASET and info.value.failures == report.failures
    return info.value, {(f["expectation"], f["column"]): f for f in info.value.failures}


def _set(table: pa.Table, column: str, rows, value) -> pa.Table:
    values = table[column].to_numpy().copy()
    values[rows] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values))


def test_quality_frame_derives_the_checked_columns(curated):
    frame = ticks.quality_frame(curated, PARTITION)
    assert list(frame.columns) == ticks.RAW_COLUMNS + ["spread", "spread_bps", "in_partition", "step_ns",
                                                       "duplicate", "symbol_ticks"]
    symbols = frame["symbol"].astype(str)
    first = ~symbols.duplicated()
    assert frame.loc[first, "step_ns"].isna().all() and (frame.loc[~first, "step_ns"] > 0).all()
    assert (frame["symbol_ticks"] == symbols.map(symbols.value_counts())).all()
    assert frame["in_partition"].eq(1).all() and frame["duplicate"].eq(0).all()
    mid = (frame["bid"] + frame["ask"]) / 2
    np.testing.assert_allclose(frame["spread_bps"], (frame["ask"] - frame["bid"]) / mid * 1e4)


def test_good_partition_passes_and_writes_reports(curated, tmp_path):
    report = _gate(curated, report_dir=tmp_path)
    assert report.success, report.failures
    assert report.evaluated == len(json.loads(quality.suite_path(DATASET).read_text())["expectations"])
    assert "Verdict: PASSED" in (tmp_path / "quality_report.md").read_text()


@pytest.mark.parametrize("price", [-1.5, 0.0])
def test_non_positive_price_fails(curated, price):
    error, failures = _failures(_set(curated, "price", 10, price))
    failure = failures[("expect_column_min_to_be_between", "price")]
    assert failure["observed"] == price and "trade prices are positive" in failure["rule"]
    assert f"observed: {price}" in str(error)


@pytest.mark.parametrize("spread", [0.0, -0.02])
def test_bid_at_or_above_ask_fails(curated, spread):
    bid = curated["bid"][20].as_py()
    error, failures = _failures(_set(curated, "ask", 20, bid + spread))
    failure = failures[("expect_column_min_to_be_between", "spread")]
    assert failure["observed"] == pytest.approx(spread) and "bid < ask" in failure["rule"]
    assert "spread" in str(error)


def test_a_spread_too_wide_fails(curated):
    bid = curated["bid"][30].as_py()
    _, failures = _failures(_set(curated, "ask", 30, bid * 1.01))
    assert failures[("expect_column_max_to_be_between", "spread_bps")]["observed"] == pytest.approx(100, rel=0.01)


def test_ticks_outside_the_partition_day_fail(curated):
    late = curated.slice(curated.num_rows - 5)  # the last symbol's last ticks, moved past midnight
    moved = late.set_column(0, "timestamp", pc.add(late["timestamp"], pa.scalar(pd.Timedelta(hours=6))))
    table = pa.concat_tables([curated.slice(0, curated.num_rows - 5), moved])
    error, failures = _failures(table)
    failure = failures[("expect_column_min_to_be_between", "in_partition")]
    assert float(failure["observed"]) == 0 and "inside the partition's UTC day" in failure["rule"]
    assert set(failures) == {("expect_column_min_to_be_between", "in_partition")}
    # the same ticks validated as the wrong partition: every tick is outside
    _, failures = _failures(curated, "2024-01-03")
    assert ("expect_column_min_to_be_between", "in_partition") in failures


def test_duplicate_ticks_fail(raw_csv):
    # the same file landed twice in a partition
    table = tick_reader.normalize_partition([("a.csv", raw_csv), ("a-copy.csv", raw_csv)], PARTITION)
    error, failures = _failures(table)
    failure = failures[("expect_column_max_to_be_between", "duplicate")]
    assert float(failure["observed"]) == 1 and "no tick is repeated" in failure["rule"]
    assert "duplicate" in str(error) and "observed: 1" in str(error)
    assert ticks.quality_frame(table, PARTITION)["duplicate"].sum() == TICKS


def test_timestamps_going_backwards_within_a_symbol_fail(curated):
    swapped = pa.concat_tables([curated.slice(0, 100), curated.slice(101, 1), curated.slice(100, 1),
                                curated.slice(102)])
    _, failures = _failures(swapped)
    observed = failures[("expect_column_min_to_be_between", "step_ns")]["observed"]
    assert observed < 0


def test_a_symbol_missing_for_the_whole_day_fails():
    table = tick_generator.generate_ticks(DAY, ["AAPL", "MSFT", "AMZN"], 60_000, seed=1)
    error, failures = _failures(table)
    contains = failures[("expect_column_distinct_values_to_contain_set", "symbol")]
    assert "every configured symbol trades during the day" in contains["rule"] and "GOOG" in contains["rule"]
    count = failures[("expect_column_unique_value_count_to_be_between", "symbol")]
    assert count["observed"] == 3 and "min_value=4" in count["rule"]
    assert "observed: 3" in str(error)


def test_a_symbol_with_too_few_ticks_fails(curated):
    frame = curated.to_pandas()
    keep = (frame["symbol"] != "GOOG").to_numpy() | (np.cumsum(frame["symbol"] == "GOOG") <= 10).to_numpy()
    _, failures = _failures(curated.filter(pa.array(keep)))
    assert float(failures[("expect_column_min_to_be_between", "symbol_ticks")]["observed"]) == 10
