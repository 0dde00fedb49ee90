"""The `points-gateway` command: serve, demo, openapi."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.errors import ConfigurationError, GatewayError
from app.observability.logging import configure_logging


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.gateway import preflight
    from app.gc_tuning import tune_for_serving
    from app.http_protocol import header_capped_protocol
    from app.main import create_app
    from app.observability.shutdown import GracefulServer
    from app.settings import get_settings

    settings = get_settings()
    # JSON lines by default (POINTS_LOG_FORMAT); uvicorn's own loggers go through the same handler.
    configure_logging(settings.log_format, settings.log_level)
    # Configuration errors surface here, as one clear line, not inside uvicorn's lifespan.
    asyncio.run(preflight(settings))
    app = create_app(settings)
    tune_for_serving()
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": settings.log_level,
        "log_config": None,  # keep the structlog handler configured above
        "access_log": False,  # the gateway logs one line per request itself
        "server_header": False,
        # The gateway reads X-Forwarded-For itself, from POINTS_LIMITS__TRUSTED_PROXIES only.
        "proxy_headers": False,
        # Caps the bytes and time of request headers before uvicorn buffers them (issue 13).
        "http": header_capped_protocol(settings.limits),
        # After SIGTERM: stop accepting, let requests in flight finish for up to this long.
        "timeout_graceful_shutdown": settings.shutdown_grace,
    }
    if args.workers > 1:
        uvicorn.run("app.main:create_app_from_env", factory=True, workers=args.workers, **common)
        return 0
    server = GracefulServer(uvicorn.Config(app, **common), app.state.shutdown)
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's own "startup failed" code


def _demo(args: argparse.Namespace) -> int:
    from app.sandbox.demo import run_demo

    asyncio.run(
        run_demo(
            host=args.host,
            port=args.port,
            iamport_port=args.iamport_port,
            gafapay_port=args.gafapay_port,
            smile_port=args.smile_port,
        )
    )
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from app.sandbox.serve import run_sandbox

    asyncio.run(
        run_sandbox(host=args.host, iamport_port=args.iamport_port, gafapay_port=args.gafapay_port)
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


def _providers_check(args: argparse.Namespace) -> int:
    from app.definitions.loader import DefinitionsInvalid, load_folder
    from app.settings import get_settings

    folder = Path(args.dir) if args.dir else get_settings().providers_dir
    if folder is None:
        raise ConfigurationError("name a folder, or set POINTS_PROVIDERS_DIR")
    try:
        plugins = load_folder(folder)
    except DefinitionsInvalid as exc:
        raise ConfigurationError(str(exc)) from None
    for plugin in plugins:
        print(f"points-gateway: {plugin.name}: ok ({plugin.display_name})")
    print(f"points-gateway: {len(plugins)} definitions in {folder} are valid")
    return 0


def _providers_schema(args: argparse.Namespace) -> int:
    from app.definitions.loader import definition_schema

    sys.stdout.write(definition_schema())
    return 0


def _providers_try(args: argparse.Namespace) -> int:
    from app.points.models import BalanceStatus
    from app.provider_trial import try_provider
    from app.settings import get_settings

    balance = asyncio.run(try_provider(get_settings(), args.name, args.account))
    print(balance.model_dump_json(indent=2))
    return 0 if balance.status is BalanceStatus.OK else 1


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
    demo.add_argument("--smile-port", type=int, default=8003)
    demo.set_defaults(run=_demo)

    sandbox = commands.add_parser(
        "sandbox", help="serve only the two provider emulators, seeded like the demo"
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--iamport-port", type=int, default=8001)
    sandbox.add_argument("--gafapay-port", type=int, default=8002)
    sandbox.set_defaults(run=_sandbox)

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

    providers = commands.add_parser(
        "providers", help="provider definitions (POINTS_PROVIDERS_DIR)"
    ).add_subparsers(dest="providers_command", required=True)
    check = providers.add_parser("check", help="validate every *.yaml definition of a folder")
    check.add_argument("dir", nargs="?", default=None, help="default: POINTS_PROVIDERS_DIR")
    check.set_defaults(run=_providers_check)
    providers.add_parser(
        "schema", help="print the JSON Schema of the definition format"
    ).set_defaults(run=_providers_schema)
    trial = providers.add_parser(
        "try", help="one call to a provider through the full path, with the POINTS_* settings"
    )
    trial.add_argument("name", help="the provider's name")
    trial.add_argument("--account", required=True, help="the account's fields, as JSON")
    trial.set_defaults(run=_providers_try)

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
    # Readable lines for the demo and the admin commands (`serve` switches to POINTS_LOG_FORMAT);
    # every line is redacted (secrets, CR/LF) and httpx's per-URL lines are kept quiet.
    configure_logging("console", "info")
    try:
        code: int = args.run(args)
    except ConfigurationError as exc:
        print(f"points-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        # Field and rule only: pydantic's own text quotes the rejected value, maybe a secret.
        lines = [
            f"  POINTS_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
        print("points-gateway: configuration error:\n" + "\n".join(lines), file=sys.stderr)
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
