from datetime import date

import dagster as dg

from trading_assets.defs.partitions import (
    SymbolDayPartitions,
    keys_by_symbol_day,
    partition_batches,
    split_key,
)


def test_keys_are_grouped_by_symbol_and_ordered_by_day_as_given() -> None:
    keys = ["2024-01-03|BTC-USD", "2024-01-01|ETH-USD", "2024-01-01|BTC-USD"]
    multi = dg.MultiPartitionKey({"symbol": "ETH-USD", "date": "2024-01-02"})
    assert keys_by_symbol_day([*keys, multi]) == {
        "BTC-USD": {date(2024, 1, 1): "2024-01-01|BTC-USD", date(2024, 1, 3): "2024-01-03|BTC-USD"},
        "ETH-USD": {date(2024, 1, 1): "2024-01-01|ETH-USD", date(2024, 1, 2): "2024-01-02|ETH-USD"},
    }


def test_a_key_splits_into_symbol_and_day() -> None:
    assert split_key("2024-02-29|SOL-USD") == ("SOL-USD", date(2024, 2, 29))


def test_batches_are_consecutive_days_of_one_symbol() -> None:
    keys = [f"2024-01-0{day}|BTC-USD" for day in (1, 2, 3, 5)] + ["2024-01-01|ETH-USD"]
    assert [(symbol, list(key_of_day.values())) for symbol, key_of_day in partition_batches(keys, 2)] == [
        ("BTC-USD", ["2024-01-01|BTC-USD", "2024-01-02|BTC-USD"]),
        ("BTC-USD", ["2024-01-03|BTC-USD"]),
        ("BTC-USD", ["2024-01-05|BTC-USD"]),
        ("ETH-USD", ["2024-01-01|ETH-USD"]),
    ]


def test_symbol_day_partitions_equal_dagsters_and_build_a_range_once(monkeypatch) -> None:
    symbol = dg.StaticPartitionsDefinition(["BTC-USD", "ETH-USD"])
    day = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
    ours = SymbolDayPartitions({"symbol": symbol, "date": day})
    dagsters = dg.MultiPartitionsDefinition({"symbol": symbol, "date": day})
    assert ours == dagsters and hash(ours) == hash(dagsters)
    built = []
    original = dg.MultiPartitionsDefinition.get_partition_keys_in_range
    monkeypatch.setattr(
        dg.MultiPartitionsDefinition,
        "get_partition_keys_in_range",
        lambda self, *args: built.append(args) or original(self, *args),
    )
    whole = dg.PartitionKeyRange("2024-01-01|BTC-USD", "2024-03-31|BTC-USD")
    assert list(ours.get_partition_keys_in_range(whole)) == list(original(dagsters, whole))
    assert ours.get_partition_keys_in_range(whole) is ours.get_partition_keys_in_range(whole)
    assert len(built) == 1
    for month in range(1, 11):  # only the newest ranges are kept
        ours.get_partition_keys_in_range(
            dg.PartitionKeyRange(f"2024-{month:02d}-01|BTC-USD", "2024-12-01|BTC-USD")
        )
    ours.get_partition_keys_in_range(whole)
    assert len(built) == 12
