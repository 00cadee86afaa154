from __future__ import annotations

import argparse

from trading_assets_bench.features import add_arguments, run


def test_bench_reports_the_documented_keys_from_a_single_threaded_child() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    result = run(parser.parse_args(["--rows", "20000", "--reference-rows", "3000", "--repeats", "1"]))
    assert {"rows", "features", "seconds", "rows_per_s", "reference_rows_per_s", "speedup"} <= set(result)
    assert result["rows"] == 20000 and result["features"] == 39 and result["threads"] == 1
    assert result["rows_per_s"] > 0 and result["reference_rows_per_s"] > 0
