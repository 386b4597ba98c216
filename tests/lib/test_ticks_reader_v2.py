"""Tick schema v2 as real feeds send it: decimal sizes, trades and quotes, trade ids and venues, a vendor clock in
local time (``source_timezone``), v1 files and v1 curated partitions still read, and quote-only feeds trained."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrain import snapshots
from retrain.data import tick_generator, tick_reader, ticks
from retrain.errors import DataFormatError
from retrain.training import ticks as training

PARTITION = "2024-01-02"
NY = "America/New_York"
V2_HEADER = "timestamp,symbol,kind,price,size,side,bid,ask,trade_id,venue"


def _csv(header: str, lines: list[str]) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def _read(data: bytes, file: str = "feed.csv", zone: str | None = None) -> pa.Table:
    return tick_reader.read_tick_file(data, file, source_timezone=zone)


def _refused(data: bytes, file: str = "bad.csv", zone: str | None = None) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        _read(data, file, zone)
    assert info.value.file == file
    return info.value


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


CRYPTO = [  # a trade venue's fills with its quotes in between, fractional sizes, ids and venues
    "2024-01-02T10:00:00.5Z,BTCUSD,trade,42000.5,0.132,B,42000.0,42000.5,t-1001,COINX",
    "2024-01-02T10:00:00.1Z,BTCUSD,quote,,,,41999.5,42000.5,,COINX",
    "2024-01-02T10:00:00.5Z,BTCUSD,trade,42000.5,0.132,B,42000.0,42000.5,t-1000,COINX",  # same fill, other id
    "2024-01-02T10:00:00.2Z,ETHUSD,trade,2300.25,1.5,S,2300.25,2300.5,t-7,",
    "2024-01-02T10:00:00.3Z,ETHUSD,quote,,,,2300.0,2300.5,,BOURSE",
]


# --------------------------------------------------------------------------------------------------------
# the raw schema v2


def test_fractional_sizes_are_decimal_quantities():
    table = _read(_csv(ticks.HEADER, ["2024-01-02T14:30:00Z,BTCUSD,42000.5,0.132,B,42000.0,42000.5",
                                      "2024-01-02T14:30:01Z,BTCUSD,42000.5,1e-4,S,42000.0,42000.5"]))
    assert table.schema == ticks.SCHEMA and table.schema.field("size").type == pa.float64()
    assert table["size"].to_pylist() == [0.132, 0.0001]
    error = _refused(_csv(ticks.HEADER, ["2024-01-02T14:30:00Z,BTCUSD,42000.5,inf,B,42000.0,42000.5"]))
    assert error.rule == "size must be a finite number" and error.observed == "data row 1: inf"


def test_trades_and_quotes_with_ids_and_venues_are_read_in_any_column_order():
    table = tick_reader.normalize_partition([("crypto.csv", _csv(V2_HEADER, CRYPTO))], PARTITION)
    assert table.schema == ticks.SCHEMA
    rows = table.to_pylist()
    assert [(r["symbol"], r["kind"], r["trade_id"], r["venue"]) for r in rows] == [
        ("BTCUSD", "quote", None, "COINX"),
        ("BTCUSD", "trade", "t-1000", "COINX"),  # two fills at one instant, told apart (and ordered) by their id
        ("BTCUSD", "trade", "t-1001", "COINX"),
        ("ETHUSD", "trade", "t-7", None),  # an empty venue is none
        ("ETHUSD", "quote", None, "BOURSE"),
    ]
    quote = rows[0]
    assert quote["price"] is None and quote["size"] is None and quote["side"] is None and quote["bid"] == 41999.5
    assert rows[1]["size"] == 0.132 and rows[3]["side"] == "S"
    assert table["kind"].chunk(0).dictionary.to_pylist() == ["quote", "trade"]
    assert table["venue"].chunk(0).dictionary.to_pylist() == ["BOURSE", "COINX"]

    # columns in another order, rows in another order, split over a CSV and a parquet file: the same table
    reordered = "venue,trade_id,ask,bid,side,size,price,kind,symbol,timestamp"
    lines = [",".join(line.split(",")[::-1]) for line in CRYPTO[::-1]]
    parquet = _read(_csv(reordered, lines[2:]), "x.csv")
    files = [("b.csv", _csv(reordered, lines[:2])), ("a.parquet", _parquet_bytes(parquet))]
    assert tick_reader.normalize_partition(files, PARTITION).equals(table)


def test_a_quote_only_feed_has_no_trade_columns():
    lines = ["2024-01-02T22:00:00Z,EURUSD,1.0950,1.0951", "2024-01-02T22:00:01Z,EURUSD,1.0951,1.0952"]
    table = tick_reader.normalize_partition([("fx.csv", _csv("timestamp,symbol,bid,ask", lines))], PARTITION)
    assert table.schema == ticks.SCHEMA and table.num_rows == 2
    assert table["kind"].to_pylist() == ["quote", "quote"]
    for name in ("price", "size", "side", "trade_id", "venue"):
        assert table[name].null_count == 2, name
    # with a kind column too, every row a quote
    kinds = _read(_csv("kind,timestamp,symbol,bid,ask", [f"quote,{line}" for line in lines]))
    assert kinds.equals(_read(_csv("timestamp,symbol,bid,ask", lines)))
    error = _refused(_csv("kind,timestamp,symbol,bid,ask", [f"quote,{lines[0]}", f"trade,{lines[1]}"]))
    assert error.rule == "a trade row needs price, size and side"
    assert error.observed == "data row 2, kind 'trade' in a file without price, size and side columns"


@pytest.mark.parametrize(
    ("line", "rule", "observed"),
    [
        ("2024-01-02T10:00:01Z,BTCUSD,quote,42000.5,,,42000.0,42000.5,,",
         "a quote row carries no price, size or side", "data row 2, kind 'quote', column price: 42000.5"),
        ("2024-01-02T10:00:01Z,BTCUSD,quote,,,B,42000.0,42000.5,,",
         "a quote row carries no price, size or side", "data row 2, kind 'quote', column side: 'B'"),
        ("2024-01-02T10:00:01Z,BTCUSD,trade,42000.5,,B,42000.0,42000.5,t-1,",
         "a trade row needs price, size and side", "data row 2, kind 'trade', column size: empty"),
        ("2024-01-02T10:00:01Z,BTCUSD,fill,42000.5,1,B,42000.0,42000.5,t-1,",
         "kind must be 'trade' or 'quote'", "data row 2: 'fill'"),
        ("2024-01-02T10:00:01Z,BTCUSD,,42000.5,1,B,42000.0,42000.5,t-1,",
         "every field must hold a value", "data row 2, column kind: empty"),
    ],
    ids=["quote-with-price", "quote-with-side", "trade-without-size", "unknown-kind", "empty-kind"],
)
def test_each_kind_carries_exactly_its_fields(line, rule, observed):
    error = _refused(_csv(V2_HEADER, [CRYPTO[0], line]))
    assert error.rule == rule and error.observed == observed
    assert str(error) == f"bad.csv: {rule} (observed: {observed})"


def test_without_a_kind_column_an_empty_trade_field_is_still_a_broken_file():
    error = _refused(_csv("timestamp,symbol,price,size,side,bid,ask,venue",
                          ["2024-01-02T10:00:00Z,BTCUSD,42000.5,,B,42000.0,42000.5,COINX"]))
    assert error.rule == "every field must hold a value" and error.observed == "data row 1, column size: empty"


@pytest.mark.parametrize(
    ("header", "observed"),
    [
        ("timestamp,symbol,price,bid,ask", "missing ['size', 'side']"),  # the trade columns: all three or none
        ("timestamp,symbol,bid,ask,venue,venue", "repeated ['venue']"),
        ("timestamp,symbol,bid,ask,sequence", "unexpected ['sequence']"),
        ("timestamp,symbol,bid,last_ask", "missing ['ask']; unexpected ['last_ask'] (renamed?)"),
    ],
)
def test_the_columns_of_schema_v2_and_nothing_else(header, observed):
    error = _refused(_csv(header, []))
    assert "schema change" in error.rule and "all three or none" in error.rule
    assert error.observed == observed


def test_trade_ids_are_text_and_parquet_columns_of_schema_v2_are_typed():
    table = _read(_csv(V2_HEADER, [CRYPTO[0].replace("t-1001", '""'), CRYPTO[2].replace("t-1000", "00042")]))
    assert table["trade_id"].to_pylist() == [None, "00042"]  # quoted empty is none; leading zeros kept
    error = _refused(_csv(V2_HEADER, [CRYPTO[0], CRYPTO[2].replace("t-1000", "t\xe9")]).replace(b"t\xc3\xa9", b"t\xe9"))
    assert error.rule == "trade_id must be UTF-8 text" and error.observed == "data row 2: b't\\xe9'"

    parquet = _read(_csv(V2_HEADER, CRYPTO))
    assert _read(_parquet_bytes(parquet), "feed.parquet").equals(parquet)
    retyped = parquet.set_column(parquet.schema.get_field_index("trade_id"), "trade_id", pa.array(range(5)))
    error = _refused(_parquet_bytes(retyped), "bad.parquet")
    assert error.rule == "column trade_id must be string (schema change)" and error.observed == "int64"


def test_the_fast_paths_give_the_general_sort_on_all_ten_columns(monkeypatch):
    """A crypto-like feed in time order (grouped by symbol block by block) and shuffled (the general sort) give
    the same table, row for row: fractional sizes, trade ids, venues, quotes (null trade fields) among trades."""
    monkeypatch.setattr(tick_reader, "_BLOCK_SIZE", 1 << 16)
    monkeypatch.setattr(tick_reader, "_BLOCK_ROWS", 1_000)
    good = tick_generator.generate_ticks(date(2024, 1, 2), ["BTCUSD", "ETHUSD", "SOLUSD"], 30_000, seed=3)
    rng = np.random.default_rng(0)
    n = good.num_rows
    quote = rng.random(n) < 0.3
    stamps = good["timestamp"].cast(pa.int64()).to_numpy()
    text = [t.isoformat().replace("+00:00", "Z") for t in good["timestamp"].to_pylist()]
    lines = []
    for i, (symbol, price, size, side, bid, ask) in enumerate(zip(
            *(good[c].to_pylist() for c in ("symbol", "price", "size", "side", "bid", "ask")))):
        venue = ["COINX", "BOURSE", ""][i % 3]
        if quote[i]:
            lines.append(f"{text[i]},{symbol},quote,,,,{bid},{ask},,{venue}")
        else:
            lines.append(f"{text[i]},{symbol},trade,{price},{size / 1000},{side},{bid},{ask},id-{n - i},{venue}")
    assert np.all(np.diff(stamps) >= 0)
    shuffled = [lines[i] for i in rng.permutation(n)]
    feed = tick_reader.normalize_partition([("feed.csv", _csv(V2_HEADER, lines))], PARTITION)
    general = tick_reader.normalize_partition([("shuffled.csv", _csv(V2_HEADER, shuffled))], PARTITION)
    assert feed.equals(general)
    assert feed["kind"].null_count == 0 and feed["size"].null_count == quote.sum() == feed["side"].null_count
    assert feed["venue"].null_count == n // 3
    frame = feed.to_pandas()
    assert frame["symbol"].astype(str).is_monotonic_increasing
    assert frame.groupby("symbol", observed=True)["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()


def test_a_trade_file_and_a_quote_file_in_feed_order_keep_each_row_its_kind():
    """Each file's kind is one value throughout (trade, then quote); together they are not, and the grouping
    by symbol must move the kinds with their rows."""
    trades = _csv(ticks.HEADER, ["2024-01-02T10:00:00Z,AAPL,190.01,100,B,190.00,190.01",
                                 "2024-01-02T10:00:01Z,MSFT,410.01,5.5,S,410.00,410.01"])
    quotes = _csv("timestamp,symbol,bid,ask,venue", ["2024-01-02T10:00:02Z,AAPL,190.01,190.02,XNAS",
                                                     "2024-01-02T10:00:03Z,MSFT,410.02,410.03,XNAS"])
    table = tick_reader.normalize_partition([("a.csv", trades), ("b.csv", quotes)], PARTITION)
    assert [(r["symbol"], r["kind"], r["size"], r["venue"]) for r in table.to_pylist()] == [
        ("AAPL", "trade", 100.0, None), ("AAPL", "quote", None, "XNAS"),
        ("MSFT", "trade", 5.5, None), ("MSFT", "quote", None, "XNAS")]


def test_reading_a_v2_feed_does_not_import_pandas(tmp_path):
    """pandas costs a fresh ingest worker a quarter of a second and 40 MB: the reader reads nulls and empty ids
    from Arrow's buffers instead of going through it."""
    import subprocess
    import sys

    path = tmp_path / "crypto.csv"
    path.write_bytes(_csv(V2_HEADER, [CRYPTO[0], CRYPTO[1].replace(",,COINX", ',"",COINX'), CRYPTO[3]]))
    script = (f"import sys; from retrain.data import tick_reader; "
              f"tick_reader.normalize_partition([('crypto.csv', {str(path)!r})], {PARTITION!r}); "
              f"print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------------
# the source time zone


def test_a_vendor_clock_in_local_time_is_read_in_its_zone_and_converted_to_utc():
    lines = ["2024-01-02T09:30:00.123456789,AAPL,190.01,100,B,190.00,190.01",  # EST: UTC-5
             "2024-07-01T09:30:00,AAPL,190.01,100,B,190.00,190.01"]  # EDT: UTC-4
    table = _read(_csv(ticks.HEADER, lines), zone=NY)
    assert table.schema == ticks.SCHEMA
    stamps = table["timestamp"].cast(pa.int64()).to_pylist()
    assert stamps[0] == int(_utc("2024-01-02T14:30:00").timestamp()) * 10**9 + 123456789
    assert stamps[1] == int(_utc("2024-07-01T13:30:00").timestamp()) * 10**9
    partition = tick_reader.normalize_partition([("a.csv", _csv(ticks.HEADER, lines[:1]))], PARTITION,
                                                source_timezone=NY)
    assert partition["timestamp"].to_pylist() == table["timestamp"].to_pylist()[:1]


@pytest.mark.parametrize(
    ("local", "word"),
    [("2024-11-03T01:30:00", "ambiguous"), ("2024-03-10T02:30:00", "nonexistent")],
    ids=["clocks-go-back", "clocks-go-forward"],
)
def test_a_local_time_that_daylight_saving_makes_ambiguous_or_nonexistent_is_refused(local, word):
    lines = ["2024-11-03T00:59:00,AAPL,190.01,100,B,190.00,190.01", f"{local},AAPL,190.01,100,B,190.00,190.01"]
    error = _refused(_csv(ticks.HEADER, lines), zone=NY)
    assert NY in error.rule and "daylight saving" in error.rule and f"({word})" in error.rule
    assert error.observed == f"data row 2, column timestamp: '{local}'"


def test_an_offset_in_a_zoned_feed_and_local_time_in_a_utc_feed_are_refused():
    row = "2024-01-02T09:30:00{},AAPL,190.01,100,B,190.00,190.01"
    error = _refused(_csv(ticks.HEADER, [row.format(""), row.format("-05:00")]), zone=NY)
    assert "must carry no offset" in error.rule and NY in error.rule
    assert error.observed == "data row 2, column timestamp: '2024-01-02T09:30:00-05:00'"
    error = _refused(_csv(ticks.HEADER, [row.format("Z"), row.format("")]))
    assert "explicit UTC offset" in error.rule and "feeds.ticks.source_timezone" in error.rule
    assert error.observed == "data row 2, column timestamp: '2024-01-02T09:30:00'"


def test_parquet_local_timestamps_are_read_only_with_a_zone():
    local = pa.array([datetime(2024, 1, 2, 9, 30), datetime(2024, 11, 3, 1, 30)], pa.timestamp("us"))
    table = pa.table({"timestamp": local, "symbol": ["EURUSD"] * 2, "bid": [1.0950] * 2, "ask": [1.0951] * 2})
    error = _refused(_parquet_bytes(table.slice(0, 1)), "naive.parquet")
    assert "local time" in error.rule and "feeds.ticks.source_timezone" in error.rule
    read = _read(_parquet_bytes(table.slice(0, 1)), "naive.parquet", NY)
    assert read["timestamp"].to_pylist() == [_utc("2024-01-02T14:30:00")]
    error = _refused(_parquet_bytes(table), "naive.parquet", NY)
    assert "(ambiguous)" in error.rule and error.observed == "data row 2, column timestamp: '2024-11-03T01:30:00'"


def test_ingest_reads_the_feed_clock_in_the_zone_of_configs_feeds_and_commits_schema_v2(retrain_home, edit_config,
                                                                                      tmp_path):
    from retrain.ingest import landing, ticks as ingest

    folder = tmp_path / "vendor" / f"date={PARTITION}"
    folder.mkdir(parents=True)
    (folder / "fx.csv").write_bytes(_csv("timestamp,symbol,bid,ask", ["2024-01-02T09:30:00,EURUSD,1.0950,1.0951"]))

    def ingest_with(zone: str | None, run: str):
        edit_config("feeds", lambda raw: raw["feeds"]["ticks"].update(source_timezone=zone))
        landing.land("ticks", str(folder))
        return ingest.ingest_partition(PARTITION, run)

    with pytest.raises(DataFormatError, match="feeds.ticks.source_timezone"):
        ingest_with(None, "run-utc")  # no zone declared: local time is refused (and quarantined)
    new_york = ingest_with(NY, "run-ny")
    assert new_york.status == "ingested" and new_york.snapshot.manifest["schema_version"] == ticks.SCHEMA_VERSION == 2
    assert ticks.read_partition(new_york.snapshot)["timestamp"].to_pylist() == [_utc("2024-01-02T14:30:00")]
    # the zone corrected: the same raw file builds a new version, read in the new zone
    chicago = ingest_with("America/Chicago", "run-chicago")
    assert chicago.status == "ingested" and chicago.snapshot.version != new_york.snapshot.version
    assert ticks.read_partition(chicago.snapshot)["timestamp"].to_pylist() == [_utc("2024-01-02T15:30:00")]


# --------------------------------------------------------------------------------------------------------
# v1: raw files and curated partitions


def test_a_v1_raw_file_gives_a_v2_table():
    table = _read(_csv(ticks.HEADER, ["2024-01-02T14:30:00Z,AAPL,190.01,100,B,190.00,190.01"]))
    assert table.schema == ticks.SCHEMA
    assert table.to_pylist() == [{"timestamp": _utc("2024-01-02T14:30:00"), "symbol": "AAPL", "price": 190.01,
                                  "size": 100.0, "side": "B", "bid": 190.0, "ask": 190.01, "kind": "trade",
                                  "trade_id": None, "venue": None}]


def _commit(table: pa.Table, partition: str, schema_version: int):
    return snapshots.commit("ticks", f"v{schema_version}-{partition}",
                            lambda folder: ticks.write_partition(table, folder), rows=table.num_rows,
                            source_files=[], partition=partition, schema_version=schema_version)


def _as_v1(table: pa.Table) -> pa.Table:
    v1 = table.select(ticks.V1_COLUMNS)
    return v1.set_column(3, "size", v1["size"].cast(pa.int64())).cast(ticks.SCHEMA_V1)


def test_a_v1_curated_partition_reads_back_as_v2(retrain_home):
    curated = tick_reader.normalize_partition([("a.csv", tick_generator.to_csv_bytes(
        tick_generator.generate_ticks(date(2024, 1, 2), ticks_per_day=2_000, seed=1)))], PARTITION)
    old = _commit(_as_v1(curated), PARTITION, 1)
    assert pq.read_schema(old.file(old.manifest["files"][0]["path"])).remove_metadata() == ticks.SCHEMA_V1
    assert ticks.read_partition(old).equals(curated)
    assert ticks.read_partition(_commit(curated, "2024-01-03", 2)).equals(curated)


# --------------------------------------------------------------------------------------------------------
# training on v2


def _quotes_only(day: date, seed: int) -> pa.Table:
    """A quote-only day: the generator's quotes without their trades."""
    table = tick_generator.generate_ticks(day, ticks.DEFAULT_SYMBOLS, 40_000, seed=seed)
    lines = [f"{t.isoformat().replace('+00:00', 'Z')},{s},{b},{a}" for t, s, b, a in
             zip(*(table[c].to_pylist() for c in ("timestamp", "symbol", "bid", "ask")))]
    return tick_reader.normalize_partition([("fx.csv", _csv("timestamp,symbol,bid,ask", lines))], day.isoformat())


def test_a_quote_only_feed_trains_on_mid_quote_bars_with_zero_volume(retrain_home):
    cfg = training.TickTrainingConfig(window_partitions=3, symbols=list(ticks.DEFAULT_SYMBOLS),
                                      lightgbm=training.TickLightGBM(num_threads=1))
    days = [date(2024, 1, 2) + timedelta(days=i) for i in range(3)]
    tables = [_quotes_only(day, seed=7) for day in days]
    bars = training.bars(tables[0])
    assert bars["ticks"].sum() == tables[0].num_rows
    assert (bars[["volume", "buy_volume", "sell_volume"]] == 0).all().all()
    assert (bars["high"] >= bars["low"]).all() and bars["close"].notna().all()

    committed = [_commit(table, day.isoformat(), 2) for table, day in zip(tables, days)]
    train, valid, test = training.prepare(committed, cfg)
    assert len(train) > cfg.min_train_examples and len(test) > 0
    assert (train["imbalance"] == 0).all() and train["imbalance_5"].isna().all()
    model = training.train(train, valid, cfg)
    metrics, _ = training.evaluate(model, test)
    assert np.isfinite(metrics["test_log_loss"])


def test_bars_count_fractional_trade_sizes_and_no_volume_from_quotes():
    table = tick_reader.normalize_partition([("crypto.csv", _csv(V2_HEADER, CRYPTO))], PARTITION)
    bars = training.bars(table).set_index("symbol")
    assert bars.loc["BTCUSD", "volume"] == pytest.approx(0.264) == bars.loc["BTCUSD", "buy_volume"]
    assert bars.loc["ETHUSD", "volume"] == 1.5 and bars.loc["ETHUSD", "sell_volume"] == 1.5
    assert bars.loc["BTCUSD", "ticks"] == 3 and bars.loc["BTCUSD", "open"] == (41999.5 + 42000.5) / 2
