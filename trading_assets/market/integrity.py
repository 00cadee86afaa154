"""Content integrity of candles (pure polars, no Dagster, no store): revisions and plausibility.

A fetch that answers the same number of rows as the store holds can still be wrong: a page in cents, a
file shifted by a day or written in local wall-clock time. Two defences:

- **Revision guard** (`diff_candles`): before a stored day is replaced, each minute present both in the
  store and in the new answer is compared. Closed minutes do not move on an exchange, so a change beyond
  `RevisionTolerance` is a revision and the ingest refuses it (`RevisionRefusedError`, one line) unless the
  run allows revisions. Minutes newly appearing (a gap filled) are not a revision. Minutes that were still
  forming when they were stored ("unsettled": their candle closed less than `settle_minutes` before the
  stored row's `ingested_at`) may change freely: exchanges finish the newest candles and revise their
  volume.
- **Plausibility** (`price_jumps`, `median_shift`): a price move between consecutive stored minutes, or
  across the day boundary, far beyond the symbol's recent volatility, and a day whose median price is
  more than twice (or less than half) a neighbouring stored day's.

Tolerances and why:

- Prices of a settled minute: relative change <= 1e-6 (`price_rel`). Exchanges never re-price a closed
  minute; 1e-6 only absorbs float formatting and is still below a few ticks (BTC at 60,000 with a 0.01
  tick: one tick is 1.7e-7).
- Volume of a settled minute: relative change <= 1 % (`volume_rel`): late-reported trades; a volume in
  other units (x100, x1e8) is far beyond it.
- Jumps: the scale is the median absolute 1-minute log close return over the day and the previous stored
  day (each step divided by sqrt(minutes between the two candles), so gaps do not count as jumps), at
  least `MIN_RETURN_SCALE`. A candle jumps when its open or close lies more than `k` scales (log) from the
  previous candle's close, or its high or low more than `WICK_ALLOWANCE` x `k` scales. Calibration:
  on the real Binance files in ../shared/data/real-1m (BTC, ETH, SOL 2026-03/04; BTC, ETH 2024-07/08
  with the 5 August 2024 crash; freqtrade's gappy test pairs) the largest open/close move is 101 scales
  (ETH at the crash) and the largest wick 117; but the project's synthetic market (Student-t bursts) reaches
  247 scales (open/close, or a wick divided by `WICK_ALLOWANCE`) over 2023-11 .. 2026-12 (3 symbols, seeds
  1, 2, 7, predictability 0 and 0.7). `DEFAULT_JUMP_K = 500` (wicks 2,000) passes both with 2x headroom
  and still flags every x100 or /100 (log 4.6) unless the median 1-minute move exceeds 0.9 %, a x10
  unless it exceeds 0.46 %, and a x2 on any day whose median move is under 0.14 % (real BTC/ETH:
  0.01-0.09 %). The suggested k = 25 would fail most real days (typical daily maxima are 30-60 scales).
- Day medians: within [0.5, 2] of each neighbouring stored day's (real neighbours: 0.80 .. 1.25; the
  synthetic market, SOL at 5 % daily volatility: 0.63 .. 1.60).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from trading_assets.market.candles import PRICE_COLUMNS, day_bounds, rows_between

VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
#: Multiples of the symbol's recent volatility (median absolute 1-minute log return) that make a jump.
DEFAULT_JUMP_K = 500.0
#: A high or low may lie this many times farther from the previous close than an open or close.
WICK_ALLOWANCE = 4.0
#: The smallest volatility scale used (log return per minute): a flat market is not infinitely sensitive.
MIN_RETURN_SCALE = 5e-5
#: The day's median close may lie within these factors of a neighbouring stored day's.
MEDIAN_RATIO_BOUNDS = (0.5, 2.0)


@dataclass(frozen=True)
class RevisionTolerance:
    """How much a stored, settled minute may change in a re-fetch before it counts as a revision."""

    #: Largest relative change of open, high, low or close.
    price_rel: float = 1e-6
    #: Largest relative change of volume.
    volume_rel: float = 0.01
    #: A minute whose candle closed less than this long before it was stored may change freely.
    settle_minutes: int = 10

    def describe(self) -> str:
        return (
            f"prices {self.price_rel:g}, volume {self.volume_rel:.0%} relative; "
            f"minutes stored within {self.settle_minutes} min of their close exempt"
        )


DEFAULT_REVISION_TOLERANCE = RevisionTolerance()


#: Revised days a refusal describes in full; the rest are counted.
MESSAGE_DAYS = 3


class RevisionRefusedError(ValueError):
    """A fetch changed stored minutes beyond the tolerance: nothing was written."""


@dataclass(frozen=True)
class MinuteRevision:
    """One minute's stored and new values, the column that changed most and by how much."""

    minute: datetime
    column: str
    relative_change: float
    stored: dict[str, float]
    new: dict[str, float]

    @property
    def factor(self) -> float:
        old = self.stored[self.column]
        return self.new[self.column] / old if old else math.inf

    def describe(self) -> str:
        def values(row: dict[str, float]) -> str:
            return "/".join(f"{row[c]:.10g}" for c in VALUE_COLUMNS)

        return (
            f"largest relative change {self.relative_change:.4g} ({self.column} x{self.factor:.4g}) at "
            f"{self.minute.isoformat()}: stored o/h/l/c/v {values(self.stored)}, new {values(self.new)}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "minute": self.minute.isoformat(),
            "column": self.column,
            "relative_change": _finite(self.relative_change),
            "stored": self.stored,
            "new": self.new,
        }


@dataclass(frozen=True)
class RevisionDiff:
    """What a re-fetch of one stored (symbol, day) changes, minute by minute."""

    symbol: str
    day: date
    minutes_stored: int
    minutes_compared: int
    #: Settled minutes whose values changed beyond the tolerance.
    minutes_changed: int
    #: Stored minutes the new answer lacks.
    minutes_removed: int
    #: New minutes the store lacked (gaps filled: not a revision).
    minutes_added: int
    #: Unsettled minutes (stored while still forming) whose values changed: accepted.
    unsettled_minutes_updated: int
    #: The changed minute with the largest relative change of a price (of the volume when no price
    #: changed beyond the tolerance); None when none changed.
    largest: MinuteRevision | None

    @property
    def largest_relative_change(self) -> float:
        return self.largest.relative_change if self.largest else 0.0

    def refused(self, allow_shrink: bool) -> bool:
        """A revision: settled minutes changed, or stored minutes gone without `allow_shrink`."""
        return self.minutes_changed > 0 or (self.minutes_removed > 0 and not allow_shrink)

    def describe(self) -> str:
        parts = [
            f"{self.day.isoformat()} {self.minutes_changed} of {self.minutes_stored} stored minutes changed"
        ]
        if self.minutes_removed:
            parts.append(f"{self.minutes_removed} removed")
        text = ", ".join(parts)
        return f"{text}, {self.largest.describe()}" if self.largest else text

    def as_metadata(self) -> dict[str, object]:
        return {
            "minutes_stored": self.minutes_stored,
            "minutes_compared": self.minutes_compared,
            "minutes_changed": self.minutes_changed,
            "minutes_removed": self.minutes_removed,
            "minutes_added": self.minutes_added,
            "unsettled_minutes_updated": self.unsettled_minutes_updated,
            "largest_relative_change": _finite(self.largest_relative_change),
            "example": self.largest.as_json() if self.largest else None,
        }


def _finite(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _relative_change(column: str) -> pl.Expr:
    old, new = pl.col(f"{column}_stored"), pl.col(column)
    return (
        pl.when(new == old)
        .then(0.0)
        .when(old != 0)
        .then((new - old).abs() / old.abs())
        .otherwise(math.inf)
        .alias(f"_rel_{column}")
    )


def diff_candles(
    stored: pl.DataFrame,
    incoming: pl.DataFrame,
    symbol: str,
    day: date,
    tolerance: RevisionTolerance = DEFAULT_REVISION_TOLERANCE,
) -> RevisionDiff:
    """Compare the stored candles of (symbol, day) with a new answer for it, minute by minute.

    `stored` has the candle columns and `ingested_at` (when each row was written); `incoming` the candle
    columns. Both may hold other days: only `day`'s minutes are compared.
    """
    start, end = day_bounds(day)
    in_day = pl.col("minute").is_between(start, end, closed="left")
    old = stored.filter(in_day).select("minute", *VALUE_COLUMNS, "ingested_at")
    new = incoming.filter(in_day).select("minute", *VALUE_COLUMNS)
    both = new.join(old, on="minute", how="inner", suffix="_stored").with_columns(
        [_relative_change(c) for c in VALUE_COLUMNS]
    )
    settled = pl.col("minute") + timedelta(minutes=1 + tolerance.settle_minutes) <= pl.col("ingested_at")
    beyond = _price_revised(tolerance) | (pl.col("_rel_volume") > tolerance.volume_rel)
    any_change = pl.any_horizontal([pl.col(f"_rel_{c}") > 0 for c in VALUE_COLUMNS])
    both = both.with_columns(settled.alias("_settled"), beyond.alias("_beyond"), any_change.alias("_any"))
    changed = both.filter(pl.col("_settled") & pl.col("_beyond"))
    return RevisionDiff(
        symbol=symbol,
        day=day,
        minutes_stored=old.height,
        minutes_compared=both.height,
        minutes_changed=changed.height,
        minutes_removed=old.join(new, on="minute", how="anti").height,
        minutes_added=new.join(old, on="minute", how="anti").height,
        unsettled_minutes_updated=both.filter(~pl.col("_settled") & pl.col("_any")).height,
        largest=_largest_change(changed, tolerance),
    )


def _price_revised(tolerance: RevisionTolerance) -> pl.Expr:
    return pl.any_horizontal([pl.col(f"_rel_{c}") > tolerance.price_rel for c in PRICE_COLUMNS])


def _largest_change(changed: pl.DataFrame, tolerance: RevisionTolerance) -> MinuteRevision | None:
    """The changed minute with the largest relative change of a price (of the volume when no price changed
    beyond the tolerance). Changes are compared to 9 significant digits, so float noise does not pick among
    equal ones: the earliest minute and the first of open, high, low, close win a tie."""
    if changed.height == 0:
        return None
    # prices first: when a price changed beyond the tolerance, the example is the largest price change
    columns = (
        PRICE_COLUMNS if (changed.select(_price_revised(tolerance)).to_series().any()) else VALUE_COLUMNS
    )
    rounded = [pl.col(f"_rel_{c}").round_sig_figs(9).alias(f"_round_{c}") for c in columns]
    ranked = changed.with_columns(rounded).with_columns(
        pl.max_horizontal([f"_round_{c}" for c in columns]).alias("_round_max")
    )
    row = ranked.sort(["_round_max", "minute"], descending=[True, False]).row(0, named=True)
    column = next(c for c in columns if row[f"_round_{c}"] == row["_round_max"])
    return MinuteRevision(
        minute=row["minute"],
        column=column,
        relative_change=row[f"_rel_{column}"],
        stored={c: row[f"{c}_stored"] for c in VALUE_COLUMNS},
        new={c: row[c] for c in VALUE_COLUMNS},
    )


def revision_refused_message(symbol: str, diffs: Sequence[RevisionDiff], tolerance: RevisionTolerance) -> str:
    """One line naming symbol, each revised day (the first `MESSAGE_DAYS`, then a count), its changed
    minutes and its largest change."""
    days = "; ".join(diff.describe() for diff in diffs[:MESSAGE_DAYS])
    if len(diffs) > MESSAGE_DAYS:
        rest = diffs[MESSAGE_DAYS:]
        days += (
            f"; and {len(rest)} more day(s) ({rest[0].day.isoformat()} .. {rest[-1].day.isoformat()}, "
            f"{sum(d.minutes_changed for d in rest)} minutes changed)"
        )
    return (
        f"refusing to revise candles of {symbol}: {days} (tolerance: {tolerance.describe()}); stored rows "
        "kept (run config allow_revision: true accepts the revision)"
    )


# --- plausibility ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceJump:
    """A candle that lies far from the previous candle's close."""

    minute: datetime
    previous_minute: datetime
    previous_close: float
    column: str
    price: float
    #: |log(price / previous close)| / sqrt(minutes between them)
    log_move: float
    #: log_move in multiples of the day's scale (a wick's divided by WICK_ALLOWANCE), compared with k
    multiple: float

    def describe(self) -> str:
        return (
            f"{self.column} {self.price:.10g} at {self.minute.isoformat()} against close "
            f"{self.previous_close:.10g} at {self.previous_minute.isoformat()} "
            f"({self.multiple:.0f} x the median move{', wick counted /' + format(WICK_ALLOWANCE, 'g') if self.column in ('high', 'low') else ''})"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "minute": self.minute.isoformat(),
            "previous_minute": self.previous_minute.isoformat(),
            "previous_close": self.previous_close,
            "column": self.column,
            "price": self.price,
            "log_move": self.log_move,
            "multiple_of_scale": self.multiple,
        }


@dataclass(frozen=True)
class PriceJumps:
    """Jumps of one stored day: between its consecutive minutes and across both day boundaries."""

    day: date
    rows: int
    #: median absolute 1-minute log close return (day and previous stored day), at least MIN_RETURN_SCALE
    scale: float
    k: float
    steps_checked: int
    #: whether the previous / next day had stored candles (the boundary was checked)
    previous_day_stored: bool
    next_day_stored: bool
    #: every step beyond k x scale, largest first (at most 20 kept)
    jumps: list[PriceJump]
    jump_count: int

    @property
    def passed(self) -> bool:
        return self.jump_count == 0

    @property
    def threshold(self) -> float:
        return self.k * self.scale

    def describe(self) -> str:
        if self.passed:
            return f"{self.day.isoformat()}: no move beyond {self.k:g} x {self.scale:.3g}"
        return (
            f"{self.day.isoformat()}: {self.jump_count} minute(s) beyond {self.k:g} x the median move "
            f"{self.scale:.3g}; largest: {self.jumps[0].describe()}"
        )


def _steps(candles: pl.DataFrame) -> pl.DataFrame:
    """Each candle against the previous one: the gap-normalised log close return, and the log distance of
    each of its prices from the previous close (raw, and as judged: wicks divided by WICK_ALLOWANCE)."""
    gap = (pl.col("minute") - pl.col("minute").shift(1)).dt.total_minutes().cast(pl.Float64).sqrt()
    previous_close = pl.col("close").shift(1)
    moves = {c: (pl.col(c) / previous_close).log().abs() / gap for c in PRICE_COLUMNS}
    # what is compared with k x scale: wicks count WICK_ALLOWANCE times less
    judged = {c: move / (WICK_ALLOWANCE if c in ("high", "low") else 1.0) for c, move in moves.items()}
    return (
        candles.sort("minute")
        .with_columns(
            pl.col("minute").shift(1).alias("previous_minute"),
            previous_close.alias("previous_close"),
            ((pl.col("close") / previous_close).log().abs() / gap).alias("close_return"),
            *[expr.alias(f"_move_{c}") for c, expr in moves.items()],
            *[expr.alias(f"_judged_{c}") for c, expr in judged.items()],
        )
        .slice(1)
    )


def price_jumps(
    candles: pl.DataFrame, day: date, k: float = DEFAULT_JUMP_K, min_scale: float = MIN_RETURN_SCALE
) -> PriceJumps:
    """The jumps of `day` in one symbol's stored `candles` (which should hold day-1 .. day+1).

    A step is a candle of `day` against the previous stored candle (the previous day's last one for the
    day's first), and the next day's first candle against the day's last. A step jumps when the candle's
    open or close lies more than `k` x scale (log, per sqrt minute of distance) from the previous close,
    or its high or low more than WICK_ALLOWANCE x k x scale.
    """
    start, end = day_bounds(day)
    previous_start, next_end = start - timedelta(days=1), end + timedelta(days=1)
    candles = _sorted(candles)
    this_day = rows_between(candles, start, end)
    previous_day = rows_between(candles, previous_start, start)
    next_day = rows_between(candles, end, next_end)
    context = pl.concat([previous_day.tail(1), this_day, next_day.head(1)]).select("minute", *PRICE_COLUMNS)
    steps = _steps(context)
    scale_steps = _steps(pl.concat([previous_day, this_day]).select("minute", *PRICE_COLUMNS))
    median = scale_steps["close_return"].median() if scale_steps.height else None
    scale = max(float(median or 0.0), min_scale)
    moves = (
        steps.with_columns(pl.max_horizontal([f"_judged_{c}" for c in PRICE_COLUMNS]).alias("_move"))
        .filter(pl.col("_move") > k * scale)
        .sort("_move", descending=True)
    )
    jumps = [_jump(row, scale) for row in moves.head(20).iter_rows(named=True)]
    return PriceJumps(
        day=day,
        rows=this_day.height,
        scale=scale,
        k=k,
        steps_checked=steps.height,
        previous_day_stored=previous_day.height > 0,
        next_day_stored=next_day.height > 0,
        jumps=jumps,
        jump_count=moves.height,
    )


def _sorted(candles: pl.DataFrame) -> pl.DataFrame:
    """`candles` in minute order (the store returns them so; a caller's frame may not be)."""
    return candles if candles["minute"].is_sorted() else candles.sort("minute")


def _jump(row: dict[str, object], scale: float) -> PriceJump:
    column = max(PRICE_COLUMNS, key=lambda c: row[f"_judged_{c}"])
    return PriceJump(
        minute=row["minute"],
        previous_minute=row["previous_minute"],
        previous_close=float(row["previous_close"]),
        column=column,
        price=float(row[column]),
        log_move=float(row[f"_move_{column}"]),
        multiple=float(row[f"_judged_{column}"]) / scale,
    )


@dataclass(frozen=True)
class MedianShift:
    """The day's median close against each neighbouring stored day's."""

    day: date
    median_close: float | None
    #: neighbouring day -> its median close (only days with stored candles)
    neighbours: dict[date, float]
    bounds: tuple[float, float]
    #: the first minute of the day whose close lies outside bounds x a neighbour's median
    example_minute: datetime | None
    example_close: float | None

    @property
    def ratios(self) -> dict[date, float]:
        if self.median_close is None:
            return {}
        return {day: self.median_close / median for day, median in self.neighbours.items()}

    @property
    def passed(self) -> bool:
        low, high = self.bounds
        return all(low <= ratio <= high for ratio in self.ratios.values())

    def describe(self) -> str:
        ratios = ", ".join(f"{day.isoformat()}: x{ratio:.4g}" for day, ratio in self.ratios.items())
        if self.passed:
            return f"{self.day.isoformat()}: median close within {list(self.bounds)} x {ratios or 'no neighbour'}"
        example = (
            f"; first minute outside: {self.example_minute.isoformat()} close {self.example_close:.10g}"
            if self.example_minute
            else ""
        )
        return (
            f"{self.day.isoformat()}: median close {self.median_close:.10g} outside {list(self.bounds)} x "
            f"its stored neighbours' ({ratios}){example}"
        )


def median_shift(
    candles: pl.DataFrame, day: date, bounds: tuple[float, float] = MEDIAN_RATIO_BOUNDS
) -> MedianShift:
    """`day`'s median close against the previous and the next day's, where those are stored."""
    candles = _sorted(candles)
    by_day = {
        offset: rows_between(candles, *day_bounds(day + timedelta(days=offset))) for offset in (-1, 0, 1)
    }
    this_day = by_day[0]
    median = this_day["close"].median() if this_day.height else None
    neighbours = {
        day + timedelta(days=offset): float(frame["close"].median())
        for offset, frame in by_day.items()
        if offset and frame.height
    }
    example_minute = example_close = None
    if median is not None and neighbours:
        low, high = bounds
        outside = pl.any_horizontal(
            [(pl.col("close") < low * m) | (pl.col("close") > high * m) for m in neighbours.values()]
        )
        first = this_day.filter(outside).head(1)
        if first.height:
            example_minute, example_close = first["minute"][0], float(first["close"][0])
    return MedianShift(day, median, neighbours, bounds, example_minute, example_close)
