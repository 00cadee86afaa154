"""The `trading-assets` command line: thin commands over the core and the Dagster definitions."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import date
from pathlib import Path

BENCHMARKS = ("ingest", "features", "training", "runtime", "backfill")
MODEL_TYPES = ("lstm", "transformer", "sklearn")


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
    demo.add_argument(
        "--days", type=int, default=14, help="complete UTC days to materialize, ending at --end-day"
    )
    demo.add_argument(
        "--end-day",
        type=date.fromisoformat,
        default=None,
        help="last UTC day of the demo's data, YYYY-MM-DD (default: yesterday); pin it for a repeatable demo",
    )
    demo.add_argument("--epochs", type=int, default=2, help="training epochs per model")
    demo.add_argument("--iterations", type=int, default=3, help="dry-run iterations at the end")
    demo.add_argument("--sleep-seconds", type=float, default=2.0, help="pause between dry-run iterations")
    demo.set_defaults(handler=_run_demo)

    train = commands.add_parser("train", help="train one model from the feature store (outside Dagster)")
    train.add_argument("--symbol", required=True)
    train.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    train.add_argument("--epochs", type=int, default=15)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--seq-len", type=int, default=60)
    train.add_argument("--horizon", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_run_train)

    evaluate = commands.add_parser("evaluate", help="verify a model artifact and check its gates")
    evaluate.add_argument(
        "--model", required=True, help="artifact directory models/<type>/<symbol>/<version>"
    )
    evaluate.add_argument("--symbol", required=True)
    evaluate.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    evaluate.add_argument("--min-accuracy", type=float)
    evaluate.add_argument("--max-calibration-error", type=float)
    evaluate.add_argument("--promote", action="store_true", help="promote it when every blocking gate passes")
    evaluate.set_defaults(handler=_run_evaluate)

    promote = commands.add_parser(
        "promote",
        help="promote a trained model version (gates re-checked), or roll the version in service back/forward",
        description="Without --rollback/--forward: promote version V (default: the latest trained) of "
        "models/<type>/<symbol>/ after re-checking the artifact and its gates. --rollback serves the version "
        "served before the current one (twice: two back); --forward undoes a rollback. The target is loaded "
        "and checked before it is served.",
    )
    promote.add_argument("model_type", choices=MODEL_TYPES, metavar="MODEL_TYPE", help=", ".join(MODEL_TYPES))
    promote.add_argument("--symbol", required=True)
    moves = promote.add_mutually_exclusive_group()
    moves.add_argument("--version", help="the trained version to promote (default: the latest trained)")
    moves.add_argument("--rollback", action="store_true", help="serve the previously served version")
    moves.add_argument("--forward", action="store_true", help="undo the last rollback")
    promote.set_defaults(handler=_run_promote)

    runtime = commands.add_parser(
        "runtime", help="score fresh candles with the promoted ensemble (no orders)"
    )
    runtime.add_argument("--mode", default="dryrun", help="only dryrun exists; live is refused")
    runtime.add_argument("--iterations", type=int, default=5)
    runtime.add_argument("--sleep-seconds", type=float, default=10.0)
    runtime.add_argument("--symbols", nargs="*", help="default: all configured symbols")
    runtime.add_argument("--long-above", type=float, default=0.55)
    runtime.add_argument("--short-below", type=float, default=0.45)
    runtime.set_defaults(handler=_run_runtime)

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


def _run_train(args: argparse.Namespace) -> int:
    from trading_assets.commands import train

    return train(
        args.symbol, args.model_type, args.epochs, args.batch_size, args.seq_len, args.horizon, args.seed
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from trading_assets.commands import evaluate

    return evaluate(
        Path(args.model),
        args.symbol,
        args.model_type,
        args.min_accuracy,
        args.max_calibration_error,
        args.promote,
    )


def _run_promote(args: argparse.Namespace) -> int:
    from trading_assets.commands import move_promotion, promote_version

    if args.rollback or args.forward:
        return move_promotion(args.symbol, args.model_type, forward=args.forward)
    return promote_version(args.symbol, args.model_type, args.version)


def _run_runtime(args: argparse.Namespace) -> int:
    from trading_assets.commands import runtime

    return runtime(
        args.mode, args.iterations, args.sleep_seconds, args.symbols, args.long_above, args.short_below
    )


def _run_demo(args: argparse.Namespace) -> int:
    from trading_assets.demo import run_demo

    return run_demo(args.days, args.epochs, args.iterations, args.sleep_seconds, args.end_day)


if __name__ == "__main__":
    sys.exit(main())
