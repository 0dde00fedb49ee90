"""The `points-gateway` command line: demo, serve, and the operator's commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.errors import ConfigurationError, GatewayError
from app.observability.logging import configure_logging
from app.settings import explain


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.gc_tuning import tune_for_serving
    from app.http_protocol import header_capped_protocol
    from app.main import create_app
    from app.observability.shutdown import GracefulServer
    from app.observability.supervisor import serve_workers
    from app.startup_check import load_settings, preflight

    loaded = load_settings()
    settings = loaded.settings
    # JSON lines by default (POINTS_LOG_FORMAT); uvicorn's own loggers go through the same handler.
    configure_logging(settings.log_format, settings.log_level)
    # Configuration errors surface here, all of them at once, not inside uvicorn's lifespan.
    asyncio.run(preflight(loaded))
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
        config = uvicorn.Config(
            "app.main:create_app_from_env", factory=True, workers=args.workers, **common
        )
        serve_workers(config, drain=settings.shutdown_drain)
        return 0
    server = GracefulServer(
        uvicorn.Config(app, **common), app.state.shutdown, drain=settings.shutdown_drain
    )
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
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from app.accounts.admin import db_upgrade
    from app.settings import get_settings

    done = asyncio.run(db_upgrade(get_settings()))
    print(f"points-gateway: {done.describe()}")
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    from app.accounts.sealing import Keyring

    print(Keyring.generate_entry(args.key_id))
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from app.accounts.admin import rotate_keys
    from app.settings import get_settings

    report = asyncio.run(
        rotate_keys(get_settings(), batch=args.batch, max_rate=args.max_rate or None)
    )
    print(
        f"points-gateway: re-sealed {report.resealed}, skipped {report.skipped_changed} changed "
        f"while rotating, {report.unreadable} unreadable"
    )
    return 1 if report.unreadable else 0


def _accounts_import(args: argparse.Namespace) -> int:
    from app.accounts.admin import import_accounts
    from app.accounts.bulk_import import ImportOptions
    from app.settings import get_settings

    options = ImportOptions(
        path=Path(args.file),
        rejects=Path(args.rejects) if args.rejects else None,
        strict=args.strict,
        resume=args.resume,
        batch=args.batch,
    )
    report = asyncio.run(import_accounts(get_settings(), options))
    resumed = f" after line {report.resumed_after}" if report.resumed_after else ""
    print(f"points-gateway: linked {report.linked} accounts{resumed}")
    if report.rejected:
        print(
            f"points-gateway: skipped {report.rejected} bad lines, kept in {report.rejects}",
            file=sys.stderr,
        )
    if report.stopped is not None:
        print(f"points-gateway: {report.stopped}", file=sys.stderr)
        print(
            "points-gateway: stopped (--strict); nothing of its batch was written; fix the line "
            "and run again with --resume",
            file=sys.stderr,
        )
        return 1
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


_DATABASE_SETTING = "POINTS_DATABASE_URL; unset, SQLite in POINTS_DATA_DIR"


def _report_configuration(problems: list[str]) -> None:
    if len(problems) == 1:
        print(f"points-gateway: configuration error: {problems[0]}", file=sys.stderr)
        return
    lines = [f"points-gateway: {len(problems)} configuration errors:"]
    for problem in problems:
        first, *rest = problem.splitlines()
        lines.append(f"  - {first}")
        lines.extend(f"  {line}" for line in rest)
    print("\n".join(lines), file=sys.stderr)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


# 1M rows in under 4 minutes while serving keeps its p99 (docs/decisions.md, issue 18).
ROTATE_MAX_RATE = 5000


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of rows per second") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be 0 (no limit) or a positive number")
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; an option's default shown after its help, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default in (None, argparse.SUPPRESS)
            or "default" in text
            or not action.option_strings
        ):
            return text
        return f"{text} (default: {action.default})"


_DESCRIPTION = """\
One REST API for a user's loyalty and reward-point balances across providers.

Start with `points-gateway demo` (the gateway and sandbox emulators on 127.0.0.1:8000, no setup);
`points-gateway COMMAND --help` says more about each command.
"""

_SERVE_DESCRIPTION = """\
Serve the gateway with uvicorn. Everything but the address is configured by POINTS_* environment
variables (README: Configuration; a minimal environment against the demo's emulators is in
README: Serve). Every missing or invalid setting is reported at once, before binding.

Exit codes: 0 stopped, 2 configuration error, 3 startup failed.
"""


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError("a port is 0-65535")
    return value


def _address(parser: argparse.ArgumentParser, port: int, what: str = "the gateway") -> None:
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=_port, default=port, help=f"the port of {what}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="points-gateway", description=_DESCRIPTION, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        summary: str,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        return parent.add_parser(
            name, help=summary, description=description or summary, formatter_class=_HelpFormatter
        )

    serve = command(commands, "serve", "serve the gateway with uvicorn", _SERVE_DESCRIPTION)
    _address(serve, 8000)
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes (with more than 1, set POINTS_REDIS_URL so they share the "
        "cache and the rate limits)",
    )
    serve.set_defaults(run=_serve, database=True)

    demo = command(
        commands,
        "demo",
        "serve the gateway wired to sandbox emulators",
        "Serve the gateway and the emulators of iamport/KCP (Benepia), GafaPay and Smile.io, "
        "with demo users alice and bob linked. No environment is read.",
    )
    _address(demo, 8000)
    demo.add_argument("--iamport-port", type=_port, default=8001, help="the iamport emulator")
    demo.add_argument("--gafapay-port", type=_port, default=8002, help="the GafaPay emulator")
    demo.add_argument("--smile-port", type=_port, default=8003, help="the Smile.io emulator")
    demo.set_defaults(run=_demo)

    sandbox = command(
        commands, "sandbox", "serve only the two provider emulators, seeded like the demo"
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    sandbox.add_argument("--iamport-port", type=_port, default=8001, help="the iamport emulator")
    sandbox.add_argument("--gafapay-port", type=_port, default=8002, help="the GafaPay emulator")
    sandbox.set_defaults(run=_sandbox)

    openapi = command(
        commands,
        "openapi",
        "write the OpenAPI document",
        "Write the OpenAPI 3.1 document (as committed in openapi/openapi.json). No environment "
        "is read.",
    )
    openapi.add_argument("--output", "-o", default="-", help="the file to write; - is stdout")
    openapi.set_defaults(run=_openapi)

    db = command(commands, "db", "manage the account database").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND"
    )
    command(
        db,
        "upgrade",
        "create the schema or apply the migrations it lacks",
        "Create the account schema, or bring it up to this release (POINTS_DATABASE_URL; unset, "
        "SQLite in POINTS_DATA_DIR, created if missing). Safe to run again.",
    ).set_defaults(run=_db_upgrade, database=True)

    keys = command(commands, "keys", "manage credential sealing keys").add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND"
    )
    generate = command(keys, "generate", "print a new id:key entry for POINTS_SECRET_KEYS")
    generate.add_argument(
        "--key-id", default=None, help="the id (default: k and 8 random hex digits)"
    )
    generate.set_defaults(run=_keys_generate)
    rotate = command(
        keys,
        "rotate",
        "re-seal stored credentials under the current key",
        "Re-seal every stored credential under the first key of POINTS_SECRET_KEYS (older keys "
        "stay listed until this has run).",
    )
    rotate.add_argument("--batch", type=_positive, default=200, help="rows per transaction")
    rotate.add_argument(
        "--max-rate",
        type=_rate,
        default=ROTATE_MAX_RATE,
        help="rows per second at most, so serving keeps its share of the CPU and the database "
        "(0: as fast as it goes)",
    )
    rotate.set_defaults(run=_keys_rotate, database=True)

    providers = command(
        commands, "providers", "provider definitions (POINTS_PROVIDERS_DIR)"
    ).add_subparsers(dest="providers_command", required=True, metavar="COMMAND")
    check = command(providers, "check", "validate every *.yaml definition of a folder")
    check.add_argument(
        "dir", nargs="?", default=None, help="the folder; default: POINTS_PROVIDERS_DIR"
    )
    check.set_defaults(run=_providers_check)
    command(providers, "schema", "print the JSON Schema of the definition format").set_defaults(
        run=_providers_schema
    )
    trial = command(
        providers,
        "try",
        "one call to a provider through the full path, with the POINTS_* settings",
    )
    trial.add_argument("name", help="the provider's name")
    trial.add_argument("--account", required=True, help="the account's fields, as JSON")
    trial.set_defaults(run=_providers_try)

    accounts = command(commands, "accounts", "manage linked accounts").add_subparsers(
        dest="accounts_command", required=True, metavar="COMMAND"
    )
    imports = command(
        accounts,
        "import",
        "link every account of an NDJSON (or JSON) file",
        "Stream an NDJSON file, one account a line:\n"
        '  {"user_id": ..., "provider": ..., <the account fields>}\n'
        "validated, sealed and linked in batches; bad lines go to the rejects file.\n"
        "A .json file is the whole-file form {user_id: {provider: account}}, linked only if\n"
        "every entry is valid.",
    )
    imports.add_argument("file", help="the NDJSON file (or a .json file)")
    imports.add_argument(
        "--rejects",
        metavar="PATH",
        help="where bad lines go, each with its error (mode 0600; default FILE.rejects.ndjson)",
    )
    imports.add_argument(
        "--strict", action="store_true", help="stop at the first bad line (exit 1)"
    )
    imports.add_argument(
        "--resume",
        action="store_true",
        help="go on after the last committed batch (FILE.checkpoint) instead of line 1",
    )
    imports.add_argument("--batch", type=_positive, default=1000, help="accounts per transaction")
    imports.set_defaults(run=_accounts_import, database=True)
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
        _report_configuration(exc.problems)
        return 2
    except ValidationError as exc:
        # Field and rule only: pydantic's own text quotes the rejected value, maybe a secret.
        _report_configuration(explain(exc))
        return 2
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename is None and getattr(args, "database", False):
            reason = f"cannot reach the account database ({_DATABASE_SETTING}): {reason}"
        print(f"points-gateway: {reason}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"points-gateway: {exc.detail}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        # The driver's own first line says what failed; SQLAlchemy's text adds statements.
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        print(f"points-gateway: database error ({_DATABASE_SETTING}): {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
