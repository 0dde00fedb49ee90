"""The provider SDK stays small: adapters import `app.providers`, never the web stack or httpx."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import app.providers

PROVIDERS = Path(app.providers.__file__).parent
WEB_STACK = ("fastapi", "starlette", "uvicorn", "httpx")


def test_importing_the_adapters_loads_no_web_framework_or_httpx() -> None:
    # A fresh interpreter: this one has loaded everything already.
    probe = (
        "import json, sys\n"
        "import app.providers, app.providers.benepia, app.providers.gafapay\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {WEB_STACK!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(found.stdout) == []


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_provider_module_imports_httpx() -> None:
    for path in PROVIDERS.glob("*.py"):
        assert not any(name.split(".")[0] == "httpx" for name in imports_of(path)), path.name


def test_the_built_in_adapters_use_the_public_module_of_the_gateway() -> None:
    for adapter in ("benepia.py", "gafapay.py", "iamport_token.py", "iamport_envelope.py"):
        gateway = {n for n in imports_of(PROVIDERS / adapter) if n.split(".")[0] == "app"}
        allowed = {
            "app.providers",
            "app.providers.iamport_envelope",
            "app.providers.iamport_token",
            "app.providers.sessions",
        }
        assert gateway <= allowed, (adapter, gateway - allowed)


def test_the_public_module_names_what_it_exports() -> None:
    exported = set(app.providers.__all__)
    assert {"Upstream", "Reply", "ProviderPlugin", "PointsProvider", "mask", "expect"} <= exported
    assert all(hasattr(app.providers, name) for name in exported)
