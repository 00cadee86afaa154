"""trading-assets: a Dagster code location from exchange candles to gated, promoted trading models."""
