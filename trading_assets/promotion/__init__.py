"""Promotion gates, the promoted-model registry and the ensemble (no Dagster)."""
