"""The `trading-assets` command line: thin commands over the core and the Dagster definitions."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = ("ingest", "features", "training")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    return args.handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trading-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="run the offline demo pipeline into the project's Dagster instance"
    )
    demo.add_argument("--days", type=int, default=3, help="most recent complete UTC days to materialize")
    demo.set_defaults(handler=_run_demo)

    bench = commands.add_parser("bench", help="benchmarks that print JSON")
    benches = bench.add_subparsers(dest="benchmark", required=True)
    for name in BENCHMARKS:
        sub = benches.add_parser(name, help=f"the {name} benchmark")
        sub.add_argument("--json", dest="json_path", help="also write the JSON result to this file")
        sub.set_defaults(handler=_run_bench, bench_name=name)
        _bench_module(name).add_arguments(sub)
    return parser


def _bench_module(name: str):
    return importlib.import_module(f"trading_assets.bench.{name}")


def _run_bench(args: argparse.Namespace) -> int:
    result = _bench_module(args.bench_name).run(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from trading_assets.demo import run_demo

    return run_demo(days=args.days)


if __name__ == "__main__":
    sys.exit(main())
