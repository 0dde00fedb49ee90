"""/docs and /redoc in a real headless Chromium: they render with no request leaving the gateway.

Chromium is Debian's package, installed here when missing (Playwright only drives it: its own
browser downloads are never used). Without it the tests skip, and fail under
POINTS_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

from app.main import create_app
from app.sandbox.servers import Served, bind
from tests.conftest import make_settings, make_store, require_services
from tests.support.servers import HOST, serving

APT_TIMEOUT = 600.0  # the whole installation, a package-list refresh included
# Bounds every browser step: the first start of a fresh profile takes a few seconds.
LAUNCH_TIMEOUT_MS = 60_000
PAGE_TIMEOUT_MS = 30_000
# Playwright starts each browser with a fresh temporary profile (its own --user-data-dir).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # as root, in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Any name the pages tried to resolve fails at once: the test never waits on the internet,
    # and the attempt is still recorded as a request (and fails the test).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(APT_TIMEOUT + 120)]


def _unavailable(reason: str) -> NoReturn:
    """Fail under POINTS_REQUIRE_SERVICES=1 (CI), else skip."""
    if require_services():
        pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def _apt_get(*args: str, deadline: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(
            ["apt-get", *args],
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1.0),
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"installing chromium took over {APT_TIMEOUT} s (apt-get {args[0]})")


def _installed_chromium() -> str | None:
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get when missing (as root only)."""
    found = _installed_chromium()
    if found is not None:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        _unavailable("chromium is not installed, and apt-get cannot install it here")
    deadline = time.monotonic() + APT_TIMEOUT
    install = ("install", "-y", "--no-install-recommends", "chromium")
    proc = _apt_get(*install, deadline=deadline)
    if proc.returncode != 0:  # stale or missing package lists: refresh them once
        _apt_get("update", deadline=deadline)
        proc = _apt_get(*install, deadline=deadline)
    found = _installed_chromium()
    if found is None:
        _unavailable(f"apt-get could not install chromium: {proc.stderr.strip()[-2000:]}")
    return found


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_FLAGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield launched
        finally:
            launched.close()


def _served(*, docs_enabled: bool) -> Served:
    app = create_app(make_settings(docs_enabled=docs_enabled), store=make_store())
    return Served(app, bind(HOST, 0))


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A real gateway (uvicorn on 127.0.0.1) with the docs pages on, auth disabled."""
    served = _served(docs_enabled=True)
    with serving([served]):
        yield served.url


@pytest.fixture(scope="module")
def gateway_without_docs() -> Iterator[str]:
    served = _served(docs_enabled=False)
    with serving([served]):
        yield served.url


# ReDoc 2.x always shows its maker's logo from its CDN under the menu (no option hides it; the
# image hides itself when it fails to load). The page's Content-Security-Policy stops it in the
# browser, so it never reaches the network; it is the one attempt tolerated, and only blocked.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class Traffic:
    """What a page asked for and what went wrong, as the browser saw it."""

    requests: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def record(self, page: Page) -> None:
        page.context.on("request", self._request)
        page.context.on("requestfailed", self._failed)
        page.context.on("response", self._response)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _failed(self, request: Request) -> None:
        self.failures[request.url] = request.failure or "failed"

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failures[response.url] = f"HTTP {response.status}"

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":  # a request the policy refused is reported here too
            self.errors.append(message.text)


@dataclass
class Visit:
    """One browser tab and its traffic."""

    page: Page
    traffic: Traffic


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    context = browser.new_context(service_workers="block")
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    traffic = Traffic()
    traffic.record(page)
    try:
        yield Visit(page, traffic)
    finally:
        context.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def assert_stayed_home(traffic: Traffic, gateway: str, *, refused: set[str]) -> None:
    """Every request that reached the network went to `gateway`, and every one succeeded."""
    assert urlsplit(gateway).hostname == HOST
    # data: and blob: URLs are the page's own bytes (icons inlined in CSS, ReDoc's worker).
    network = [
        url
        for url in traffic.requests
        if not url.startswith(("data:", "blob:")) and traffic.failures.get(url) != "csp"
    ]
    elsewhere = [url for url in network if _origin(url) != _origin(gateway)]
    assert not elsewhere, f"requests left {gateway}: {elsewhere}"
    blocked = {url for url, why in traffic.failures.items() if why == "csp"}
    assert blocked <= refused, f"unexpected requests the policy refused: {blocked - refused}"
    failed = {url: why for url, why in traffic.failures.items() if why != "csp"}
    assert not failed, failed
    errors = [text for text in traffic.errors if not any(url in text for url in blocked)]
    assert not errors, errors


def _files(traffic: Traffic) -> set[str]:
    return {urlsplit(url).path.rsplit("/", 1)[-1] for url in traffic.requests}


@pytest.mark.parametrize(
    ("path", "operation", "assets", "refused"),
    [
        pytest.param(
            "/docs",
            # Swagger UI: one block per operation, `operations-<tag>-<operationId>`.
            "#operations-points-get_user_points",
            {"swagger-ui-bundle.js", "swagger-ui.css"},
            set(),
            id="swagger-ui",
        ),
        pytest.param(
            "/redoc",
            # ReDoc: one section per operation, `operation/<operationId>`.
            '[id="operation/get_user_points"]',
            {"redoc.standalone.js"},
            {REDOC_LOGO},
            id="redoc",
        ),
    ],
)
def test_the_page_renders_the_operations_from_the_gateway_alone(
    visit: Visit, gateway: str, path: str, operation: str, assets: set[str], refused: set[str]
) -> None:
    response = visit.page.goto(gateway + path, wait_until="load")

    assert response is not None
    assert response.status == 200
    visit.page.wait_for_selector(operation, state="visible")
    visit.page.wait_for_load_state("networkidle")
    assert_stayed_home(visit.traffic, gateway, refused=refused)
    assert {*assets, "openapi.json"} <= _files(visit.traffic)


def test_the_setting_turns_the_pages_off(visit: Visit, gateway_without_docs: str) -> None:
    for path in ("/docs", "/redoc"):
        response = visit.page.goto(gateway_without_docs + path)

        assert response is not None
        assert response.status == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert {_origin(url) for url in visit.traffic.requests} == {_origin(gateway_without_docs)}
