"""Screenshots of the Dagster UI after `trading-assets demo`, taken with headless Chromium.

    PYTHONPATH=. .venv/bin/python scripts/ui_screenshots.py [--dagster-home DIR] [--out DIR]

Starts `dagster-webserver` (no daemon: nothing gets launched while it looks) on 127.0.0.1 and a free port
against the demo's DAGSTER_HOME (default <project>/dagster_home), in its own process group, and captures:

- model.png: a model's latest materialization (its metadata: metrics, learning curve, reliability);
- failed_gate.png: the asset checks of a model whose blocking gate failed in the latest model run, if one did
  (otherwise checks.png: the checks of the first model);
- ensemble.png: the ensemble asset.

Chromium is Debian's package (`apt-get install -y chromium`); when it is absent the script says so and
exits 0. The process group it started is ended on the way out. Needs the settings (TA_*) the demo ran with.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from trading_assets_bench.harness.dagster_server import HOST, free_port  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser")
WINDOW = "1600,1300"
#: Virtual time Chromium gives the page's scripts before the screenshot (the UI loads data over GraphQL).
PAGE_BUDGET_MS = 20000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dagster-home",
        type=Path,
        default=Path(os.environ.get("DAGSTER_HOME", PROJECT_ROOT / "dagster_home")),
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "ui-screenshots")
    args = parser.parse_args()
    chromium = next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)
    if chromium is None:
        print("ui_screenshots: chromium not found, skipping (install Debian's: apt-get install -y chromium)")
        return 0
    started = time.monotonic()
    home = args.dagster_home.resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    pages = _pages(home)
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log = (home / "ui-screenshots-webserver.log").open("ab")
    server = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", HOST, "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: ended below, nothing else is signalled
    )
    try:
        base = f"http://{HOST}:{port}"
        _wait_until_loaded(base, server)
        # The UI's one-time "Join the Dagster community" dialog would cover the pages; "Skip" sends this.
        requests.post(
            f"{base}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=10
        ).raise_for_status()
        for name, path in pages.items():
            target = args.out / f"{name}.png"
            _screenshot(chromium, f"{base}{path}", target, args.out / ".chromium-profile")
            print(f"ui_screenshots: {target} ({target.stat().st_size // 1024} KiB) <- {path}")
    finally:
        _stop(server)
        log.close()
        shutil.rmtree(args.out / ".chromium-profile", ignore_errors=True)
    print(f"ui_screenshots: {len(pages)} pages in {time.monotonic() - started:.0f} s")
    return 0


def _pages(home: Path) -> dict[str, str]:
    """Page name -> UI path: a model, a failed gate's checks (if any gate failed), the ensemble."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    failed = None
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs(limit=50):
            for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
                evaluation = entry.dagster_event.asset_check_evaluation_data
                if evaluation.blocking and not evaluation.passed:
                    failed = evaluation
                    break
            if failed is not None:
                break
    pages = {"model": "/assets/lstm_model?view=events"}
    if failed is not None:
        asset = quote(failed.asset_key.to_user_string())
        pages["failed_gate"] = f"/assets/{asset}?view=checks&checkDetail={quote(failed.check_name)}"
    else:
        pages["checks"] = "/assets/lstm_model?view=checks"
    pages["ensemble"] = "/assets/ensemble?view=events"
    return pages


def _wait_until_loaded(base: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ui_screenshots: dagster-webserver exited with {server.returncode}")
        try:
            entries = requests.post(f"{base}/graphql", json={"query": query}, timeout=5).json()["data"][
                "workspaceOrError"
            ]["locationEntries"]
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return
        except (requests.RequestException, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"ui_screenshots: the webserver did not load the code location within {timeout:.0f} s")


def _screenshot(chromium: str, url: str, target: Path, profile: Path) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW}",
            f"--virtual-time-budget={PAGE_BUDGET_MS}",
            f"--screenshot={target}",
            url,
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=120,
    )


def _stop(server: subprocess.Popen) -> None:
    for signum, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, signum)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # members that outlived the leader (the code server)
        os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
