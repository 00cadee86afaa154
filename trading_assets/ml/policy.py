"""The promotion policy: what a model must show, over how many folds, net of which costs.

Each field is declared once here: its default, its bounds, its environment variable (`TA_<FIELD>`) and its
help. The settings read these records from the environment (the deployment's policy), the model assets
derive their run config from them, the settings table of docs/settings.md is generated from them. A run may only
*tighten* the policy in force (`tightened`), and promotion refuses a model judged under anything looser than
the policy in force when it is promoted (`check_judged_not_looser`). `STRICTER` says, per field, which way
is stricter.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Direction = Literal["higher", "lower", "false"]
R = TypeVar("R", bound=BaseModel)


def _field(default: Any, help_text: str, stricter: Direction, unset: str | None = None, **bounds: Any) -> Any:
    """A policy field: its default, bounds and help, which way is stricter (read by `tightened`), and what
    an unset (None) value means (the settings table shows it)."""
    extra: dict[str, Any] = {"stricter": stricter} | ({"unset": unset} if unset else {})
    return Field(default, description=help_text, json_schema_extra=extra, **bounds)


class PromotionPolicy(BaseModel):
    """The gates' thresholds and the evidence they are judged on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_accuracy: float = _field(
        0.68,
        "accuracy gate: pooled out-of-sample accuracy of the walk-forward folds must reach this",
        "higher",
        gt=0.5,
        le=1.0,
    )
    max_calibration_error: float = _field(
        0.05,
        "calibration gate: expected calibration error (15 bins, L1) of the pooled folds at most this",
        "lower",
        gt=0.0,
        lt=1.0,
    )
    min_skill_margin: float = _field(
        0.0,
        "skill gate: the lower confidence bound of accuracy minus the strongest rival (naive rule or "
        "model in service) must exceed this",
        "higher",
        ge=0.0,
        le=1.0,
    )
    min_excess_return: float = _field(
        0.0,
        "economics gate: the lower confidence bound of the net return minus the best constant position "
        "must exceed this (a fraction: 0.01 = 1 %)",
        "higher",
        ge=0.0,
        le=10.0,
    )
    folds: int = _field(
        4,
        "walk-forward folds the gates judge (each scored by a model trained only before it)",
        "higher",
        ge=2,
        le=12,
    )
    confidence: float = _field(
        0.95,
        "one-sided confidence of the skill and economics bounds, before the per-symbol split over "
        "model types (Holm's first step)",
        "higher",
        ge=0.8,
        lt=1.0,
    )


class CostPolicy(BaseModel):
    """What a trade costs at the venue: the economics gate's backtest charges it per unit of position change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fee_bps: float | None = _field(
        None,
        "fee per side in basis points; unset: the venue's taker fee (ccxt's fee table of the configured "
        "exchange; the synthetic and files sources state theirs)",
        "higher",
        unset="venue's",
        ge=0.0,
        le=1000.0,
    )
    slippage_bps: float = _field(
        1.0, "price impact per side in basis points, on top of the fee", "higher", ge=0.0, le=1000.0
    )
    half_spread_bps: float = _field(
        1.0,
        "half the bid-ask spread per side in basis points (a market order crosses it)",
        "higher",
        ge=0.0,
        le=1000.0,
    )
    allow_short: bool = _field(
        False, "the signal may go short (spot venues: long/flat only); shorts pay borrow_bps_per_day", "false"
    )
    borrow_bps_per_day: float = _field(
        3.0,
        "cost of holding a short, in basis points per day, charged pro rata",
        "higher",
        ge=0.0,
        le=1000.0,
    )


#: The policy records, in the order the settings table lists them.
POLICY_RECORDS: tuple[type[BaseModel], ...] = (PromotionPolicy, CostPolicy)


class PolicyError(ValueError):
    """A policy that would be looser than the one in force, or a value outside its bounds (one line)."""


def stricter_direction(record: type[BaseModel], name: str) -> Direction:
    extra = record.model_fields[name].json_schema_extra
    assert isinstance(extra, dict)
    return extra["stricter"]  # type: ignore[return-value]


def is_looser(record: type[BaseModel], name: str, value: Any, in_force: Any) -> bool:
    """Whether `value` of field `name` is looser than `in_force` (both concrete: a fee resolved to a number)."""
    direction = stricter_direction(record, name)
    if direction == "false":
        return bool(value) and not bool(in_force)
    if value is None or in_force is None:
        return value is None and in_force is not None
    return value < in_force if direction == "higher" else value > in_force


def looser_fields(record: type[BaseModel], judged: dict[str, Any], in_force: BaseModel) -> list[str]:
    """`name=judged (policy in force: value)` for each field of `judged` looser than `in_force`; a field the
    judged policy lacks (recorded before it existed) counts as looser."""
    found = []
    for name in record.model_fields:
        current = getattr(in_force, name)
        if name not in judged or is_looser(record, name, judged[name], current):
            found.append(f"{name}={judged.get(name, 'unrecorded')!r} (policy in force: {current!r})")
    return found


def tightened(in_force: R, overrides: dict[str, Any], where: str = "run config") -> R:
    """`in_force` with `overrides` (None: keep) applied, each only if at least as strict; PolicyError naming the
    first field that would loosen it or lies outside its bounds."""
    record = type(in_force)
    given = {name: value for name, value in overrides.items() if value is not None}
    for name, value in given.items():
        current = getattr(in_force, name)
        if is_looser(record, name, value, current):
            raise PolicyError(
                f"{where} {name}={value!r} is looser than the policy in force ({name}={current!r}): a run may "
                "only tighten the deployment's policy (TA_* settings)"
            )
    try:
        return record.model_validate({**in_force.model_dump(), **given})
    except ValidationError as error:
        raise PolicyError(f"{where}: {one_line(error)}") from None


def one_line(error: ValidationError) -> str:
    """The first problem of a pydantic validation error in one line: `field: message (got value)`."""
    first = error.errors()[0]
    name = ".".join(str(part) for part in first["loc"])
    return f"{name}={first.get('input')!r}: {first['msg']}"


def resolved(costs: CostPolicy, venue_fee_bps: float) -> CostPolicy:
    """`costs` with an unset fee replaced by the venue's."""
    return costs if costs.fee_bps is not None else costs.model_copy(update={"fee_bps": venue_fee_bps})


def check_judged_not_looser(judged: dict[str, Any], policy: PromotionPolicy, costs: CostPolicy) -> None:
    """PolicyError (one line naming each field) when a model's recorded policy or costs (`judged`: the
    manifest's `gates` record) are looser than the policy and resolved costs in force."""
    looser = looser_fields(PromotionPolicy, judged.get("policy", {}), policy) + looser_fields(
        CostPolicy, judged.get("costs", {}), costs
    )
    if looser:
        raise PolicyError("judged under a looser policy than the one in force: " + "; ".join(looser))
