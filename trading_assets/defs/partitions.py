"""Partitions: symbol (static, from settings) x date (daily UTC from the history start), and partition keys."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg

from trading_assets.market.candles import consecutive_day_batches
from trading_assets.settings import Settings
from trading_assets.store.duckdb_store import DAYS_PER_TRANSACTION


class SymbolDayPartitions(dg.MultiPartitionsDefinition):
    """Dagster's (symbol, date) partitions, remembering the keys of the ranges asked for.

    `context.add_asset_metadata(..., partition_key=...)` checks the key against the keys of the run's
    whole range, which Dagster 1.13 builds anew on each call: a 731-day run of one symbol built 731 keys
    1,462 times, ~15 CPU-seconds (docs/backfill-speed.md). The keys of a range between two keys depend
    only on the two dimensions, which are static, so they are kept (the newest `RANGES_KEPT` ranges).
    """

    RANGES_KEPT = 8

    def get_partition_keys_in_range(  # ty: ignore[invalid-method-override]
        self, partition_key_range: dg.PartitionKeyRange, dynamic_partitions_store: Any = None
    ) -> Sequence[str]:
        kept = self.__dict__.setdefault("_keys_of_range", OrderedDict())
        range_ = (partition_key_range.start, partition_key_range.end)
        keys = kept.get(range_)
        if keys is None:
            keys = tuple(super().get_partition_keys_in_range(partition_key_range, dynamic_partitions_store))
            kept[range_] = keys
            while len(kept) > self.RANGES_KEPT:
                kept.popitem(last=False)
        return keys


@dataclass(frozen=True)
class Partitions:
    """The partitions of the code location: per symbol, per UTC day, and per (symbol, day)."""

    symbol: dg.StaticPartitionsDefinition
    date: dg.DailyPartitionsDefinition
    symbol_date: dg.MultiPartitionsDefinition


def build_partitions(settings: Settings) -> Partitions:
    symbol = dg.StaticPartitionsDefinition(list(settings.symbols))
    day = dg.DailyPartitionsDefinition(start_date=settings.history_start.isoformat(), timezone="UTC")
    return Partitions(symbol, day, SymbolDayPartitions({"symbol": symbol, "date": day}))


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, date]:
    """(symbol, day) of a symbol x date partition key such as "2024-01-02|BTC-USD"."""
    dimensions = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else _parse(key)
    return dimensions["symbol"], date.fromisoformat(dimensions["date"])


def _parse(key: str) -> dict[str, str]:
    day, symbol = key.split("|", 1)
    return {"date": day, "symbol": symbol}


def partition_range_tags(first: date, last: date, symbols: tuple[str, ...]) -> dict[str, str]:
    """Run tags selecting every (symbol, day) with first <= day <= last, as a single-run backfill does."""
    ordered = sorted(symbols)
    return {
        "dagster/asset_partition_range_start": f"{first.isoformat()}|{ordered[0]}",
        "dagster/asset_partition_range_end": f"{last.isoformat()}|{ordered[-1]}",
    }


def keys_by_symbol_day(keys: Iterable[str | dg.MultiPartitionKey]) -> dict[str, dict[date, str]]:
    """The partition keys of each symbol by day (days ascending), keeping each key as given."""
    by_symbol: dict[str, dict[date, str]] = {}
    for key in keys:
        symbol, day = split_key(key)
        by_symbol.setdefault(symbol, {})[day] = str(key)
    return {symbol: dict(sorted(by_day.items())) for symbol, by_day in sorted(by_symbol.items())}


def partition_batches(
    keys: Iterable[str | dg.MultiPartitionKey], max_days: int = DAYS_PER_TRANSACTION
) -> Iterator[tuple[str, dict[date, str]]]:
    """(symbol, {day: key}) for each run of up to `max_days` consecutive days of one symbol, in order (by
    default the store's batch: the days one transaction reads, writes and checks)."""
    for symbol, key_of_day in keys_by_symbol_day(keys).items():
        for days in consecutive_day_batches(key_of_day, max_days):
            yield symbol, {day: key_of_day[day] for day in days}
