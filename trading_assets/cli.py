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

    bench = commands.add_parser("bench", help=f"benchmarks that print JSON: {', '.join(BENCHMARKS)}")
    bench.add_argument("benchmark", choices=BENCHMARKS)
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options (see --help)")
    bench.set_defaults(handler=_run_bench)
    return parser


def _bench_module(name: str):
    return importlib.import_module(f"trading_assets.bench.{name}")


def _run_bench(args: argparse.Namespace) -> int:
    """Benchmarks import their module (and so torch) only when they run, keeping other commands quick."""
    module = _bench_module(args.benchmark)
    parser = argparse.ArgumentParser(
        prog=f"trading-assets bench {args.benchmark}", description=module.__doc__
    )
    parser.add_argument("--json", dest="json_path", help="also write the JSON result to this file")
    module.add_arguments(parser)
    options = parser.parse_args(args.options)
    result = module.run(options)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if options.json_path:
        path = Path(options.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from trading_assets.demo import run_demo

    return run_demo(days=args.days)


if __name__ == "__main__":
    sys.exit(main())
