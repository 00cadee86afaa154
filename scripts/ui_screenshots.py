"""Screenshots of the Dagster UI after `trading-assets demo`, taken with headless Chromium.

    PYTHONPATH=. .venv/bin/python scripts/ui_screenshots.py [--dagster-home DIR] [--out DIR]

Starts `dagster-webserver` (no daemon: nothing gets launched while it looks) on 127.0.0.1 and a free port
against the demo's DAGSTER_HOME (default <project>/dagster_home), in its own process group, and captures:

- model.png: a model's latest materialization (its metadata: metrics, learning curve, reliability);
- failed_gate.png: the asset checks of a model whose blocking gate failed in the latest model run, if one did
  (otherwise checks.png: the checks of the first model);
- ensemble.png: the ensemble asset;
- chart_<name>.png: each chart of the model's metadata (learning curve, reliability diagram, backtest against
  buy-and-hold), opened as a person would: the UI shows a long Markdown value behind "[Show Markdown]", so
  the script clicks it through Chromium's DevTools protocol and captures the dialog;
- registry.png: the version list (`versions`) of a promoted model, opened the same way.

Through the same DevTools session it asserts what a reader should see, and exits 1 naming each failure:
every chart's image has loaded, is at least 800 px wide and not blank (under 99 % of one colour); the
failed-gate page shows the failed check; the registry table lists a champion. A demo where no gate failed
fails too: CI makes one symbol's market noise on purpose so that page exists.

Chromium is Debian's package (`apt-get install -y chromium`); when it is absent the script says so and
exits 0. The process group it started is ended on the way out. Needs the settings (TA_*) the demo ran with.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests
import websockets

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from trading_assets_bench.harness.dagster_server import HOST, free_port  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser")
WINDOW = "1600,4600"  # tall enough for the whole of the model page's metadata
#: Metadata entries of the model page that hold a chart, captured one by one.
CHARTS = ("learning_curve_chart", "reliability_chart", "backtest_chart")
#: The narrowest chart a reader gets (pixels of the PNG itself).
MIN_CHART_WIDTH = 800
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
        problems = _checked_pages(chromium, base, pages, args.out)
    finally:
        _stop(server)
        log.close()
        shutil.rmtree(args.out / ".chromium-profile", ignore_errors=True)
    for problem in problems:
        print(f"ui_screenshots: FAILED: {problem}")
    print(
        f"ui_screenshots: {len(pages)} pages in {time.monotonic() - started:.0f} s, {len(problems)} problem(s)"
    )
    return 1 if problems else 0


def _pages(home: Path) -> dict[str, str]:
    """Page name -> UI path: a model, a failed gate's checks (if any gate failed), the ensemble, a promoted
    model (the logistic one: the demo's most reliably promoted type)."""
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
    pages["registry"] = _latest_materialization_path("promoted_logistic_model")
    return pages


def _latest_materialization_path(asset: str) -> str:
    """The UI path of the asset's latest materialization (not a later observation, e.g. a failed gate's),
    selected by its partition and time as the UI's own links do."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    if not records:
        return f"/assets/{asset}?view=events"
    record = records[0]
    partition = f"&partition={quote(record.partition_key)}" if record.partition_key else ""
    return f"/assets/{asset}?view=events{partition}&time={int(record.timestamp * 1000)}"


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
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _checked_pages(chromium: str, base: str, pages: dict[str, str], out: Path) -> list[str]:
    """Open the pages in a headless Chromium driven over its DevTools protocol: capture each chart's and the
    registry's "[Show Markdown]" dialog, and return what a reader would not see (empty when all is well)."""
    port = free_port()
    browser = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={out / '.chromium-devtools'}",
            "--window-size=1400,1000",
            f"--remote-debugging-address={HOST}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return asyncio.run(_check(port, base, pages, out))
    finally:
        _stop(browser)
        shutil.rmtree(out / ".chromium-devtools", ignore_errors=True)


class _DevTools:
    """One Chromium page driven over the DevTools protocol."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.ids = iter(range(1, 1_000_000))

    async def call(self, method: str, **params: object) -> dict:
        request_id = next(self.ids)
        await self.socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == request_id:
                return message.get("result", {})

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def until(self, expression: str, tries: int = 120) -> object:
        """The first truthy value of `expression`, polled every 0.5 s (the UI loads over GraphQL); or None."""
        for _ in range(tries):
            await asyncio.sleep(0.5)
            value = await self.evaluate(expression)
            if value:
                return value
        return None

    async def open_markdown(self, url: str, label: str) -> bool:
        """Navigate to `url` and click the "[Show Markdown]" of the metadata row `label`; True once its dialog
        shows."""
        await self.call("Page.navigate", url=url)
        if not await self.until(_CLICK_SHOW_MARKDOWN % json.dumps(label)):
            return False
        return bool(await self.until("!!document.querySelector('[role=dialog]')", tries=20))

    async def capture(self, target: Path) -> None:
        await asyncio.sleep(0.5)
        shot = await self.call("Page.captureScreenshot", format="png")
        target.write_bytes(base64.b64decode(shot["data"]))
        print(f"ui_screenshots: {target} ({target.stat().st_size // 1024} KiB)")


async def _check(port: int, base: str, pages: dict[str, str], out: Path) -> list[str]:
    deadline = time.monotonic() + 30
    while True:
        try:
            listed = requests.get(f"http://{HOST}:{port}/json/list", timeout=2).json()
            socket_url = next(page["webSocketDebuggerUrl"] for page in listed if page["type"] == "page")
            break
        except (requests.RequestException, StopIteration):
            if time.monotonic() > deadline:
                raise SystemExit("ui_screenshots: Chromium's DevTools endpoint did not come up") from None
            time.sleep(0.5)
    async with websockets.connect(socket_url, max_size=None) as socket:
        page = _DevTools(socket)
        problems = [
            problem
            for chart in CHARTS
            for problem in await _check_chart(page, base + pages["model"], chart, out)
        ]
        problems += await _check_failed_gate(page, base, pages)
        problems += await _check_registry(page, base + pages["registry"], out)
        return problems


async def _check_chart(page: _DevTools, url: str, chart: str, out: Path) -> list[str]:
    """The chart's dialog opens, its image loaded, is at least MIN_CHART_WIDTH px wide and not blank."""
    if not await page.open_markdown(url, chart):
        return [f"{chart}: no '[Show Markdown]' dialog on {url}"]
    image = await page.until(_IMAGE_FIGURES, tries=20)
    await page.capture(out / f"chart_{chart}.png")
    if not image:
        return [f"{chart}: its image did not load"]
    problems = []
    if image["width"] < MIN_CHART_WIDTH:
        problems.append(f"{chart}: {image['width']} px wide, under {MIN_CHART_WIDTH}")
    if image["dominant_share"] > 0.99:
        problems.append(f"{chart}: blank ({image['dominant_share']:.1%} of its pixels one colour)")
    return problems


async def _check_failed_gate(page: _DevTools, base: str, pages: dict[str, str]) -> list[str]:
    """The page of a failed blocking gate exists and shows the check as failed."""
    if "failed_gate" not in pages:
        return ["no blocking gate failed in the demo's model runs: the failed-gate page cannot be checked"]
    path = pages["failed_gate"]
    check = path.rsplit("checkDetail=", 1)[1]
    await page.call("Page.navigate", url=base + path)
    shown = await page.until(
        f"document.body.innerText.includes({json.dumps(check)}) && /failed/i.test(document.body.innerText)"
    )
    return [] if shown else [f"the failed-gate page {path} does not show {check} as failed"]


async def _check_registry(page: _DevTools, url: str, out: Path) -> list[str]:
    """The promoted model's `versions` table opens and lists the champion."""
    if not await page.open_markdown(url, "versions"):
        inline = await page.until("document.body.innerText.includes('champion')", tries=4)
        return [] if inline else [f"registry: no 'versions' table listing a champion on {url}"]
    listed = await page.until(
        "document.querySelector('[role=dialog]').innerText.includes('champion')", tries=20
    )
    await page.capture(out / "registry.png")
    return [] if listed else ["registry: the versions table names no champion"]


#: JavaScript: click the "[Show Markdown]" in the metadata row whose label is the given name; true if found.
_CLICK_SHOW_MARKDOWN = """(() => {
  const label = %s;
  for (const row of document.querySelectorAll('tr')) {
    const cells = row.querySelectorAll('td');
    if (cells.length < 2 || cells[0].innerText.trim() !== label) continue;
    const matches = [...cells[1].querySelectorAll('*')].filter(e => e.innerText && e.innerText.trim() === '[Show Markdown]');
    const target = matches.length ? matches[matches.length - 1] : null;  // the innermost: the link itself
    if (target) { (target.closest('button, a, [role=button]') || target).click(); return true; }
  }
  return false;
})()"""

#: JavaScript: the dialog image's natural width and the share of its most frequent colour (None until loaded).
_IMAGE_FIGURES = """(() => {
  const image = document.querySelector('[role=dialog] img');
  if (!image || !image.complete || !image.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = new Map();
  for (let i = 0; i < pixels.length; i += 4) {
    const key = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  return {width: image.naturalWidth, dominant_share: Math.max(...counts.values()) / (pixels.length / 4)};
})()"""


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
