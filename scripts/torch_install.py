"""Install torch into the running interpreter's environment (called by scripts/setup.sh with .venv/bin/python).

- A machine with a GPU (`nvidia-smi` runs and exits 0) gets plain `pip install torch==VERSION`: on Linux,
  PyPI's torch is the CUDA build.
- A machine without one gets the CPU build from PyTorch's own CPU wheel index (PyPI stays an extra index for
  torch's dependencies). PyPI's Linux torch would be the multi-GB CUDA build.
- When that index cannot be reached (checked with a short timeout, so set-up never hangs on it) or the
  install from it fails, one line says so and plain pip decides (a wheel found through pip's find-links,
  or PyPI's build).

Nothing is installed when torch is already there (and, with TORCH_VERSION set, is that version): set-up stays
idempotent and fast. TORCH_VERSION overrides the version (default DEFAULT_VERSION).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from importlib import metadata

DEFAULT_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"
#: Seconds for the reachability probe and for each of pip's socket operations on the CPU index.
PROBE_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 15
PIP_RETRIES = 1


def torch_install_command(
    has_gpu: bool, index_reachable: bool, version: str, python: str = sys.executable
) -> list[str]:
    """The pip command that installs torch==`version` for this machine (see the module docstring)."""
    base = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    requirement = f"torch=={version}"
    if has_gpu or not index_reachable:
        return [*base, requirement]
    return [
        *base,
        "--index-url",
        CPU_INDEX,
        "--extra-index-url",
        PYPI,
        "--timeout",
        str(PIP_TIMEOUT_S),
        "--retries",
        str(PIP_RETRIES),
        requirement,
    ]


def has_gpu() -> bool:
    """True when `nvidia-smi` is on PATH and runs successfully (a driver and at least one GPU)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return False
    try:
        return subprocess.run([binary], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def index_reachable(url: str = CPU_INDEX, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when `url`/torch/ answers within about `timeout` seconds. The probe runs in a thread that is
    abandoned after the timeout: a socket timeout alone does not bound a slow DNS lookup."""
    answers: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/torch/", timeout=timeout) as response:
                answers.append(response.status < 500)
        except urllib.error.HTTPError as error:
            answers.append(error.code < 500)
        except (OSError, ValueError):  # URLError, timeouts, refused connections, DNS failures
            answers.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    return bool(answers and answers[0])


def installed_version() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def wanted_is_installed(installed: str | None, requested: str | None) -> bool:
    """Is nothing to do? torch is there and, when a version was asked for, is that version (`2.13.0` is
    satisfied by `2.13.0+cpu`)."""
    if installed is None:
        return False
    return requested is None or installed.split("+", 1)[0] == requested.split("+", 1)[0]


def run_pip(command: list[str]) -> int:
    """Run pip; its stderr passes through except the "WARNING: Location ... is ignored" lines that a pip
    configuration naming absent local indexes prints for every package."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if not line.startswith("WARNING: Location"):
            sys.stderr.write(line)
    return process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    requested = os.environ.get("TORCH_VERSION") or None
    if wanted_is_installed(installed_version(), requested):
        return 0
    version = requested or DEFAULT_VERSION
    gpu = has_gpu()
    reachable = False if gpu else index_reachable()  # a GPU machine needs no probe
    if gpu:
        print(f"torch: nvidia-smi found a GPU; installing torch=={version} from PyPI (the CUDA build)")
    elif reachable:
        print(f"torch: no GPU; installing torch=={version} (CPU build) from {CPU_INDEX}")
    else:
        print(
            f"torch: PyTorch's CPU index ({CPU_INDEX}) is unreachable; installing torch=={version} "
            "as plain pip resolves it (on Linux from PyPI that is the CUDA build)",
            file=sys.stderr,
        )
    if run_pip(torch_install_command(gpu, reachable, version)) == 0:
        return 0
    if gpu or not reachable:
        return 1
    print(
        f"torch: installing from PyTorch's CPU index failed; installing torch=={version} "
        "as plain pip resolves it",
        file=sys.stderr,
    )
    return run_pip(torch_install_command(gpu, False, version))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
