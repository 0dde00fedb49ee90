"""The `points-gateway` command: serve, demo, openapi."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.errors import GatewayError
from app.providers.base import ConfigurationError
from app.security.log_redaction import RedactingFilter


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.gateway import preflight
    from app.main import create_app
    from app.settings import get_settings

    settings = get_settings()
    # Configuration errors surface here, as one clear line, not inside uvicorn's lifespan.
    asyncio.run(preflight(settings))
    app = create_app(settings)
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
    from app.accounts.memory_store import MemoryAccountStore
    from app.main import create_app
    from app.openapi_doc import render_openapi
    from app.settings import Settings

    # The document does not depend on configuration, so none is read from the environment.
    settings = Settings.model_validate({"enabled_providers": [], "auth": {"mode": "disabled"}})
    text = render_openapi(create_app(settings, store=MemoryAccountStore()))
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from app.accounts.admin import db_upgrade
    from app.settings import get_settings

    asyncio.run(db_upgrade(get_settings()))
    print("points-gateway: database schema is up to date")
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from app.accounts.sealing import Keyring

    print(Keyring.generate_entry(args.key_id))
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from app.accounts.admin import rotate_keys
    from app.settings import get_settings

    report = asyncio.run(rotate_keys(get_settings(), batch=args.batch))
    print(
        f"points-gateway: re-sealed {report.resealed}, skipped {report.skipped_changed} changed "
        f"while rotating, {report.unreadable} unreadable"
    )
    return 1 if report.unreadable else 0


def _accounts_import(args: argparse.Namespace) -> int:
    from app.accounts.admin import import_accounts
    from app.settings import get_settings

    count = asyncio.run(import_accounts(get_settings(), Path(args.file)))
    print(f"points-gateway: linked {count} accounts")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


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

    db = commands.add_parser("db", help="manage the account database").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply the schema migrations").set_defaults(run=_db_upgrade)

    keys = commands.add_parser("keys", help="manage credential sealing keys").add_subparsers(
        dest="keys_command", required=True
    )
    generate = keys.add_parser("generate", help="print a new id:key entry for POINTS_SECRET_KEYS")
    generate.add_argument("--key-id", default=None)
    generate.set_defaults(run=_keys_generate)
    rotate = keys.add_parser("rotate", help="re-seal stored credentials under the current key")
    rotate.add_argument("--batch", type=_positive, default=200)
    rotate.set_defaults(run=_keys_rotate)

    accounts = commands.add_parser("accounts", help="manage linked accounts").add_subparsers(
        dest="accounts_command", required=True
    )
    imports = accounts.add_parser("import", help="link every account of a JSON file")
    imports.add_argument("file")
    imports.set_defaults(run=_accounts_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    # httpx logs every request URL at INFO; those carry provider user ids.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        code: int = args.run(args)
    except (ConfigurationError, ValidationError) as exc:
        print(f"points-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"points-gateway: {reason}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"points-gateway: {exc.detail}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # The driver's own first line says what failed; SQLAlchemy's text adds statements.
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        print(f"points-gateway: database error: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
