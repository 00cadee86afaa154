"""The `trading-assets` command line: thin commands over the core and the Dagster definitions.

Every expected refusal (a bad argument or setting, an unknown symbol, a missing or damaged artifact, a
store that does not exist yet) is one line on stderr naming what was wrong, with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from trading_assets.ml.config import RUN_OPTIONS, TrainConfig, run_option
from trading_assets.ml.model_types import MODEL_TYPES, UnknownModelType, canonical_name

if TYPE_CHECKING:
    from trading_assets.settings import Settings

BENCHMARKS = ("ingest", "features", "training", "runtime", "backfill", "retrain", "gates")
#: Exit code of a refused command (bad arguments or settings), as argparse uses.
REFUSED = 2


class Refused(Exception):
    """An expected refusal of the command line; its message is the one line printed."""


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (`trading-assets runtime: argument --iterations: ...`), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(REFUSED, f"{self.prog}: {message}\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (None) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from trading_assets.settings import load_settings

        return args.handler(args, load_settings())
    except Exception as error:
        if not isinstance(error, _expected_refusals()):
            raise
        message = " ".join(str(error).split())
        print(f"{parser.prog} {args.command}: {message}", file=sys.stderr)
        return REFUSED


def _expected_refusals() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix, not the program's (imported late: they pull torch and duckdb)."""
    from trading_assets.ml.artifacts import ModelArtifactError
    from trading_assets.settings import SettingsError
    from trading_assets.store.duckdb_store import StoreMissingError

    return (Refused, SettingsError, ModelArtifactError, StoreMissingError)


def _number(kind: Callable[[str], float], minimum: float, name: str) -> Callable[[str], float]:
    """An argparse type: a `kind` number of at least `minimum`."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}")
        return value

    return parse


POSITIVE_INT = _number(int, 1, "a positive integer")
NON_NEGATIVE_INT = _number(int, 0, "an integer >= 0")
NON_NEGATIVE_SECONDS = _number(float, 0.0, "a number of seconds >= 0")


def _model_type(text: str) -> str:
    """A model type's name; a former name of a type (`ml.model_types.ALIASES`) gives today's."""
    try:
        return canonical_name(text)
    except UnknownModelType:
        return text  # argparse's `choices` refuses it, listing the types


def _probability(text: str) -> float:
    value = _number(float, 0.0, "a probability in [0, 1]")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1]")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="trading-assets", description=__doc__, formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_demo_command,
        _add_train_command,
        _add_evaluate_command,
        _add_promote_command,
        _add_runtime_command,
        _add_bench_command,
        _add_settings_command,
    ):
        add_command(commands)
    return parser


def _add_demo_command(commands: argparse._SubParsersAction) -> None:
    """`demo`: the offline demo pipeline."""
    demo = _command(commands, "demo", "run the offline demo pipeline into the project's Dagster instance")
    demo.add_argument(
        "--days", type=POSITIVE_INT, default=14, help="most recent complete UTC days to materialize"
    )
    demo.add_argument(
        "--end-day",
        type=date.fromisoformat,
        default=None,
        help="last UTC day of the demo's data, YYYY-MM-DD (default: yesterday); pin it for a repeatable demo",
    )
    demo.add_argument("--epochs", type=POSITIVE_INT, default=2, help="training epochs per model")
    demo.add_argument("--iterations", type=NON_NEGATIVE_INT, default=3, help="dry-run iterations at the end")
    demo.add_argument(
        "--sleep-seconds", type=NON_NEGATIVE_SECONDS, default=2.0, help="pause between dry-run iterations"
    )
    demo.set_defaults(handler=_run_demo)


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    """`train`: one model from the feature store."""
    train = _command(commands, "train", "train one model from the feature store (outside Dagster)")
    train.add_argument("--symbol", required=True, help="a configured symbol (TA_SYMBOLS), e.g. BTC-USD")
    train.add_argument(
        "--model-type", required=True, type=_model_type, choices=MODEL_TYPES, help="which model to train"
    )
    train.add_argument(
        "--epochs",
        type=POSITIVE_INT,
        help=f"maximum training epochs, early stop (default: TA_TRAIN_EPOCHS, {TrainConfig.max_epochs})",
    )
    for option in ("batch_size", "seq_len", "horizon", "seed"):  # default and help as TrainConfig declares
        _, default, help_text, bounds = run_option(RUN_OPTIONS[option])
        kind = POSITIVE_INT if bounds.get("ge") == 1 else NON_NEGATIVE_INT
        train.add_argument(f"--{option.replace('_', '-')}", type=kind, default=default, help=help_text)
    train.set_defaults(handler=_run_train)


def _add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    """`evaluate`: verify an artifact and check its gates."""
    evaluate = _command(commands, "evaluate", "verify a model artifact and check its gates")
    evaluate.add_argument(
        "--model", required=True, help="artifact directory models/<type>/<symbol>/<version>"
    )
    evaluate.add_argument("--symbol", required=True, help="the symbol the model must be for")
    evaluate.add_argument(
        "--model-type", required=True, type=_model_type, choices=MODEL_TYPES, help="the model's type"
    )
    evaluate.add_argument(
        "--min-accuracy",
        type=float,
        help="accuracy gate; may only tighten the TA_MIN_ACCURACY setting (its default)",
    )
    evaluate.add_argument(
        "--max-calibration-error",
        type=float,
        help="calibration gate; may only tighten the TA_MAX_CALIBRATION_ERROR setting (its default)",
    )
    evaluate.add_argument("--promote", action="store_true", help="promote it when every blocking gate passes")
    evaluate.set_defaults(handler=_run_evaluate)


def _add_promote_command(commands: argparse._SubParsersAction) -> None:
    """`promote`: change the model in service (a Dagster run)."""
    promote = commands.add_parser(
        "promote",
        help="change the model in service: promote a trained version, roll back/forward, pin (a Dagster run)",
        description="Runs the code location's model_registry job in DAGSTER_HOME, so the change is recorded on "
        "promoted_<type>_model and the UI shows what serves. Without --rollback/--forward/--pin: promote "
        "version V (default: the latest trained) of models/<type>/<symbol>/ after re-checking the artifact "
        "and its gates. --rollback serves the version served before the current one (twice: two back); "
        "--forward undoes a rollback; --pin V serves a version promoted before. The target is loaded and "
        "checked before it is served.",
    )
    promote.add_argument(
        "model_type", type=_model_type, choices=MODEL_TYPES, metavar="MODEL_TYPE", help=", ".join(MODEL_TYPES)
    )
    promote.add_argument("--symbol", required=True)
    moves = promote.add_mutually_exclusive_group()
    moves.add_argument("--version", help="the trained version to promote (default: the latest trained)")
    moves.add_argument("--rollback", action="store_true", help="serve the previously served version")
    moves.add_argument("--forward", action="store_true", help="undo the last rollback")
    moves.add_argument("--pin", metavar="VERSION", help="serve this version, promoted before")
    promote.add_argument("--reason", default="", help="why (recorded with the change)")
    promote.set_defaults(handler=_run_promote)


def _add_runtime_command(commands: argparse._SubParsersAction) -> None:
    """`runtime`: the dry-run scoring loop."""
    runtime = _command(commands, "runtime", "score fresh candles with the promoted ensemble (no orders)")
    runtime.add_argument("--mode", default="dryrun", help="only dryrun exists; live is refused")
    runtime.add_argument("--iterations", type=POSITIVE_INT, default=5, help="scoring rounds to run")
    runtime.add_argument(
        "--sleep-seconds", type=NON_NEGATIVE_SECONDS, default=10.0, help="pause between rounds"
    )
    runtime.add_argument(
        "--symbols", nargs="*", help="configured symbols to score (default: all of TA_SYMBOLS)"
    )
    runtime.add_argument(
        "--long-above", type=_probability, default=0.55, help="ensemble probability above which to go long"
    )
    runtime.add_argument(
        "--short-below", type=_probability, default=0.45, help="ensemble probability below which to go short"
    )
    runtime.set_defaults(handler=_run_runtime)


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    """`bench`: the benchmarks."""
    bench = _command(commands, "bench", f"benchmarks that print JSON: {', '.join(BENCHMARKS)}")
    bench.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark")
    bench.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options (see --help)")
    bench.set_defaults(handler=_run_bench)


def _add_settings_command(commands: argparse._SubParsersAction) -> None:
    """`settings`: the settings table."""
    settings_command = _command(
        commands,
        "settings",
        "print every TA_* setting with its default and meaning (docs/settings.md's table)",
    )
    settings_command.set_defaults(handler=_run_settings)


def _command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows every option's default."""
    return commands.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)


def _check_symbols(symbols: list[str], settings: Settings) -> None:
    configured = settings.symbols
    unknown = [symbol for symbol in symbols if symbol not in configured]
    if unknown:
        raise Refused(
            f"unknown symbol {', '.join(map(repr, unknown))}: configured are {', '.join(configured)} (TA_SYMBOLS)"
        )


#: Where an editable install's package lies: the source checkout, with the benchmarks beside the package.
_CHECKOUT = Path(__file__).resolve().parent.parent


def _bench_module(name: str):
    """The benchmark's module from trading_assets_bench, imported only when asked. The benchmarks are not in
    the wheel: they lie in the source checkout beside this package, found there under an editable install."""
    if not importlib.util.find_spec("trading_assets_bench") and (_CHECKOUT / "trading_assets_bench").is_dir():
        sys.path.append(str(_CHECKOUT))
        # and for the processes a benchmark starts (`python -m trading_assets_bench...`)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [os.environ.get("PYTHONPATH"), str(_CHECKOUT)])
        )
    try:
        return importlib.import_module(f"trading_assets_bench.{name}")
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing == "trading_assets_bench":
            raise Refused(
                "the benchmarks are not part of the installed package: run them from a source checkout "
                "installed with pip install -e '.[dev]'"
            ) from None
        if missing.startswith("trading_assets"):
            raise
        raise Refused(
            f"the {name} benchmark needs {missing}, which is not installed: "
            "pip install -e '.[bench]' in a source checkout (or '.[dev]')"
        ) from None


def _run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """Benchmarks import their module (and so torch) only when they run, keeping other commands quick."""
    module = _bench_module(args.benchmark)
    from trading_assets_bench import BenchmarkRefused

    parser = _OneLineParser(
        prog=f"trading-assets bench {args.benchmark}",
        description=module.__doc__,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--json", dest="json_path", help="also write the JSON result to this file")
    module.add_arguments(parser)
    options = parser.parse_args(args.options)
    try:
        result = module.run(options)
    except BenchmarkRefused as error:
        raise Refused(str(error)) from None
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if options.json_path:
        path = Path(options.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return 0


def _run_train(args: argparse.Namespace, settings: Settings) -> int:
    from trading_assets.commands import train

    _check_symbols([args.symbol], settings)
    return train(
        settings,
        args.symbol,
        args.model_type,
        args.epochs,
        args.batch_size,
        args.seq_len,
        args.horizon,
        args.seed,
    )


def _run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from trading_assets.commands import evaluate

    _check_symbols([args.symbol], settings)
    from trading_assets.ml.policy import PolicyError, tightened

    overrides = {"min_accuracy": args.min_accuracy, "max_calibration_error": args.max_calibration_error}
    try:
        policy = tightened(settings.policy, overrides, where="command line")
    except PolicyError as error:
        raise Refused(str(error)) from None
    if not Path(args.model).is_dir():
        raise Refused(f"--model {args.model}: no such artifact directory")
    return evaluate(settings, Path(args.model), args.symbol, args.model_type, policy, args.promote)


def _run_promote(args: argparse.Namespace, settings: Settings) -> int:
    from trading_assets.commands import change_service_in_dagster

    action = "rollback" if args.rollback else "forward" if args.forward else "pin" if args.pin else "promote"
    return change_service_in_dagster(
        settings, args.model_type, args.symbol, action, args.pin or args.version, args.reason
    )


def _run_runtime(args: argparse.Namespace, settings: Settings) -> int:
    from trading_assets.commands import runtime

    if args.symbols:
        _check_symbols(args.symbols, settings)
    if args.short_below > args.long_above:
        raise Refused(f"--short-below {args.short_below} is above --long-above {args.long_above}")
    return runtime(
        settings,
        args.mode,
        args.iterations,
        args.sleep_seconds,
        args.symbols,
        args.long_above,
        args.short_below,
    )


def _run_settings(args: argparse.Namespace, settings: Settings) -> int:
    from trading_assets.settings import settings_table

    print(settings_table())
    return 0


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from trading_assets.demo import run_demo

    return run_demo(settings, args.days, args.epochs, args.iterations, args.sleep_seconds, args.end_day)


if __name__ == "__main__":
    sys.exit(main())
