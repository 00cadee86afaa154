"""What trading on a venue costs: the fee per side the economics gate charges when no setting overrides it.

ccxt carries each exchange's fee table offline (`fees['trading']`, lowest tier); the runtime's signal trades
with market orders, so the taker fee applies. The offline sources state theirs: the synthetic market is a
Binance-like spot venue (10 bps), and the files source's reference data are Binance candles (10 bps); set
TA_FEE_BPS when your files come from another venue.
"""

from __future__ import annotations

#: The fee per side, in basis points, that each offline source states.
STATED_FEE_BPS = {"synthetic": 10.0, "files": 10.0}


def venue_fee_bps(exchange_id: str) -> float:
    """The taker fee per side in basis points of the venue's lowest tier, from
    `ccxt.<exchange_id>().fees['trading']['taker']` (coinbase 120, coinbaseexchange 60, binance 10, kraken 26
    with ccxt 4.5). Raises ValueError naming the exchange when ccxt does not know it or lists no taker fee."""
    import ccxt  # lazily: the backtest and the gates must not need it

    if exchange_id not in ccxt.exchanges:
        raise ValueError(f"unknown exchange {exchange_id!r}: ccxt has no exchange of that id; set TA_FEE_BPS")
    taker = getattr(ccxt, exchange_id)().fees.get("trading", {}).get("taker")
    if not isinstance(taker, int | float) or isinstance(taker, bool) or taker < 0:
        raise ValueError(
            f"ccxt lists no taker fee for exchange {exchange_id!r} (got {taker!r}); set TA_FEE_BPS"
        )
    return float(taker) * 10_000.0


def source_fee_bps(source: str, exchange_id: str) -> float:
    """The fee per side of the configured source: its stated fee, or the ccxt exchange's taker fee."""
    if source in STATED_FEE_BPS:
        return STATED_FEE_BPS[source]
    return venue_fee_bps(exchange_id)
