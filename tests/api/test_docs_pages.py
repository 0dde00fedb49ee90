"""/docs and /redoc over HTTP: their assets come from the gateway, and a setting turns them off.

tests/api/test_docs_pages_browser.py renders them in a real browser.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

import app.api.docs_pages
from app.api.docs_pages import ASSET_TYPES, IMMUTABLE, asset_dir, assets_url
from app.errors import ConfigurationError
from app.main import create_app
from tests.conftest import PROBLEM, make_settings, make_store, serve_in_process

PAGES = ("/docs", "/redoc")
ASSETS = [f"{assets_url()}/{name}" for name in ASSET_TYPES]
_URL = re.compile(r"""(?:href|src|url)\s*[=:]\s*["']([^"']+)["']""")


@pytest.fixture
async def docs_on() -> AsyncIterator[httpx.AsyncClient]:
    async with serve_in_process(create_app(make_settings(), store=make_store())) as client:
        yield client


@pytest.fixture
async def docs_off() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(docs_enabled=False), store=make_store())
    async with serve_in_process(app) as client:
        yield client


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_links_only_the_gateway_s_own_urls(
    docs_on: httpx.AsyncClient, path: str
) -> None:
    response = await docs_on.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    links = _URL.findall(response.text)
    assert "/openapi.json" in links
    assert any(link.startswith(assets_url()) for link in links)
    assert all(link.startswith("/") and not link.startswith("//") for link in links), links
    assert "fonts.googleapis.com" not in response.text


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_s_policy_allows_only_its_origin_and_its_own_script(
    docs_on: httpx.AsyncClient, path: str
) -> None:
    response = await docs_on.get(path)

    policy = dict(
        directive.split(" ", 1)
        for directive in response.headers["content-security-policy"].split("; ")
    )
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in inline
    }
    assert set(policy["script-src"].split()) == {"'self'", *hashes}
    assert "unsafe" not in policy["script-src"]


@pytest.mark.parametrize("name", ASSET_TYPES)
async def test_an_asset_is_the_package_s_file_cacheable_for_good(
    docs_on: httpx.AsyncClient, name: str
) -> None:
    response = await docs_on.get(f"{assets_url()}/{name}")

    assert response.status_code == 200
    assert response.content == (asset_dir() / name).read_bytes()
    assert response.headers["content-type"] == ASSET_TYPES[name]
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "etag" in response.headers


async def test_the_assets_url_names_the_pinned_package(docs_on: httpx.AsyncClient) -> None:
    assert assets_url() == "/docs/assets/1.7.7"  # pyproject.toml pins fastapi-offline==1.7.7
    response = await docs_on.get(f"{assets_url()}/index.html")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", [*PAGES, *ASSETS, "/docs/oauth2-redirect"])
async def test_turned_off_they_are_not_found(docs_off: httpx.AsyncClient, path: str) -> None:
    response = await docs_off.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "not_found"


async def test_turned_off_the_document_is_still_served(docs_off: httpx.AsyncClient) -> None:
    response = await docs_off.get("/openapi.json")

    assert response.status_code == 200
    assert "/users/{user_id}/points" in response.json()["paths"]


async def test_the_pages_are_not_in_the_document(docs_on: httpx.AsyncClient) -> None:
    paths = (await docs_on.get("/openapi.json")).json()["paths"]

    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


async def test_the_pages_are_rate_limited_per_address_like_other_public_routes() -> None:
    settings = make_settings(limits={"rate": "3/minute", "failed_auth_rate": None})
    async with serve_in_process(create_app(settings, store=make_store())) as client:
        answers = [await client.get(path) for path in ("/docs", ASSETS[0], "/redoc", "/docs")]

    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["code"] == "rate_limited"
    assert "retry-after" in answers[-1].headers


async def test_a_root_path_prefixes_every_link() -> None:
    app = create_app(make_settings(), store=make_store())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/gateway")
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            page = await client.get("/gateway/docs")

    assert page.status_code == 200
    links = _URL.findall(page.text)
    assert links
    assert all(link.startswith("/gateway/") for link in links), links


def test_a_broken_install_stops_the_start_unless_the_pages_are_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app.api.docs_pages, "ASSET_TYPES", {"absent.js": "text/javascript"})

    with pytest.raises(ConfigurationError, match="POINTS_DOCS_ENABLED"):
        create_app(make_settings(), store=make_store())
    create_app(make_settings(docs_enabled=False), store=make_store())
