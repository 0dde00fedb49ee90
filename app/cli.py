"""The `points-gateway` command: serve, demo, openapi."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from app.providers.base import ConfigurationError


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.settings import get_settings

    settings = get_settings()
    app = create_app(settings)  # validates the configuration before binding anything
    common = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level,
        "server_header": False,
        "proxy_headers": False,
    }
    if args.workers > 1:
        uvicorn.run("app.main:create_app_from_env", factory=True, workers=args.workers, **common)
    else:
        uvicorn.run(app, **common)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from app.sandbox.demo import run_demo

    asyncio.run(
        run_demo(
            host=args.host,
            port=args.port,
            iamport_port=args.iamport_port,
            gafapay_port=args.gafapay_port,
        )
    )
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from app.main import create_app
    from app.openapi_doc import render_openapi
    from app.settings import Settings

    # The document does not depend on configuration, so none is read from the environment.
    text = render_openapi(create_app(Settings.model_validate({"enabled_providers": []})))
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="points-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="serve the gateway wired to sandbox emulators")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--iamport-port", type=int, default=8001)
    demo.add_argument("--gafapay-port", type=int, default=8002)
    demo.set_defaults(run=_demo)

    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", "-o", default=None, help="file to write (default: stdout)")
    openapi.set_defaults(run=_openapi)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # httpx logs every request URL at INFO; those carry provider user ids.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = args.run(args)
    except (ConfigurationError, ValidationError) as exc:
        print(f"points-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"points-gateway: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
