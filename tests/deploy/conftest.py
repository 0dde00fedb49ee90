"""The command-line tools the deployment tests run: promtool (installed from Debian's
`prometheus` package when missing) and kubectl (for `kubectl kustomize`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.deploy.support import unavailable

APT_TIMEOUT = 300.0
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _apt_get(*args: str) -> subprocess.CompletedProcess[str] | None:
    """`apt-get ARGS` (bounded; waits up to a minute for another apt's lock), or None on timeout."""
    try:
        return subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=60", *args],
            capture_output=True,
            text=True,
            env=APT_ENV,
            timeout=APT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None


def debian_tool(tool: str, package: str) -> str:
    """The path of `tool`, installing Debian's `package` first when it is not on PATH."""
    found = shutil.which(tool)
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        unavailable(
            f"{tool} is not on PATH, and apt-get (as root) is not here to install {package}"
        )
    install = ("install", "-y", "--no-install-recommends", package)
    done = _apt_get(*install)
    if done is None or done.returncode != 0:
        # The package lists may be missing or stale on a fresh machine.
        _apt_get("update")
        done = _apt_get(*install)
    found = shutil.which(tool)
    if not found:
        detail = "timed out" if done is None else f"exit {done.returncode}: {done.stderr[-2000:]}"
        unavailable(f"apt-get install {package} did not provide {tool} ({detail})")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's promtool (Debian's `prometheus` package ships it)."""
    return debian_tool("promtool", "prometheus")


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl, for `kubectl kustomize`: the machine's own (Debian's kubernetes-client is 1.20,
    whose kustomize v2 knows no components, so it is not installed here)."""
    found = shutil.which("kubectl")
    if not found:
        unavailable("kubectl is not on PATH (needed to render the kustomizations)")
    return found
