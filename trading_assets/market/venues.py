"""What trading on a venue costs: the fee per side the economics gate charges when no setting overrides it.

ccxt carries each exchange's fee table offline (`fees['trading']`, lowest tier); the runtime's signal trades
with market orders, so the taker fee applies. The offline sources state theirs:

- files: 10 bps, Binance's taker fee (the reference files are Binance candles); set TA_FEE_BPS when your
  files come from another venue.
- synthetic: 0 bps, a zero-fee spot pair (as Binance's BTC pairs were from July 2022 to March 2023); slippage
  and half spread (TA_SLIPPAGE_BPS, TA_HALF_SPREAD_BPS) are still charged. Why not 10: a market whose
  1-minute returns are serially uncorrelated (as real ones are, and as the demo market's are) cannot give
  both 0.68 direction accuracy and moves that pay a 24 bps round trip. With no autocorrelation the variance
  of a q-minute return is q times a minute's, so a predictable drift that keeps its sign for q minutes has at
  most 1/q of a minute's variance: 0.68 accuracy (R^2 of about 0.3) allows q of about 3 minutes, whose
  expected move is a few basis points at BTC's 2.2 %/day. Measured on the demo market: the signal's gross
  per round trip is 8 bps (BTC), 4-11 (ETH), 18-23 (SOL); docs/data.md, "The demo market".
"""

from __future__ import annotations

#: The fee per side, in basis points, that each offline source states.
STATED_FEE_BPS = {"synthetic": 0.0, "files": 10.0}


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
