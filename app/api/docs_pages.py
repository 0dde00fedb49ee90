"""The API document's pages: Swagger UI at /docs, ReDoc at /redoc, their assets served from here.

The assets are the ones the pinned fastapi-offline package ships (docs/decisions.md): the pages
load nothing from a CDN, Google Fonts or fastapi.tiangolo.com, so they work without internet
and no request leaves the gateway's origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from importlib import metadata, resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from app.api.security_deps import PUBLIC
from app.errors import ConfigurationError

ASSETS_PACKAGE = "fastapi-offline"
# The package's files and their media types (every answer is nosniff: a script must say it is one).
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The package's version is in the assets' URLs, so a cached copy is never stale: a new pin is a
# new URL.
IMMUTABLE = "public, max-age=31536000, immutable"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def asset_dir() -> Path:
    """The packaged assets' folder, checked complete (a broken install stops the start)."""
    folder = resources.files(ASSETS_PACKAGE.replace("-", "_")) / "static"
    missing = [name for name in ASSET_TYPES if not (folder / name).is_file()]
    if not isinstance(folder, Path) or missing:  # FileResponse needs files on disk
        raise ConfigurationError(
            f"POINTS_DOCS_ENABLED: the {ASSETS_PACKAGE} package's files are missing "
            f"({', '.join(missing) or folder}); reinstall the gateway, or turn the docs pages off"
        )
    return folder


def assets_url() -> str:
    """Where the assets are served: under /docs, versioned by the package that ships them."""
    return f"/docs/assets/{metadata.version(ASSETS_PACKAGE)}"


def _content_security_policy(page: HTMLResponse) -> str:
    # Only this origin, so a bundle that tried to reach anywhere else would be refused by the
    # browser; the page's own inline script (Swagger UI's setup) is allowed by its hash.
    inline = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    return "; ".join(
        (
            "default-src 'none'",
            " ".join(("script-src 'self'", *inline)),
            "style-src 'self' 'unsafe-inline'",  # both UIs style their elements inline
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def _locked(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = _content_security_policy(page)
    return page


def _asset(path: Path, media_type: str) -> Callable[[], Awaitable[FileResponse]]:
    async def serve_asset() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"cache-control": IMMUTABLE})

    return serve_asset


def docs_router(*, title: str, openapi_url: str) -> APIRouter:
    """/docs, /redoc and their assets: public routes, rate-limited per client address."""
    folder = asset_dir()
    assets = assets_url()
    router = APIRouter(include_in_schema=False, dependencies=[PUBLIC])

    @router.get("/docs", response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # As FastAPI's own pages: a root path set on the server (never a header) prefixes links.
        root = request.scope.get("root_path", "").rstrip("/")
        return _locked(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{assets}/swagger-ui.css",
                swagger_favicon_url=f"{root}{assets}/favicon.png",
                oauth2_redirect_url=None,  # no OAuth2 flow among the security schemes
            )
        )

    @router.get("/redoc", response_class=HTMLResponse)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return _locked(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{title} - ReDoc",
                redoc_js_url=f"{root}{assets}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{assets}/favicon.png",
                with_google_fonts=False,
            )
        )

    for name, media_type in ASSET_TYPES.items():
        router.add_api_route(
            f"{assets}/{name}",
            _asset(folder / name, media_type),
            methods=["GET"],
            name=f"docs_asset_{name}",
            response_class=FileResponse,
        )
    return router
