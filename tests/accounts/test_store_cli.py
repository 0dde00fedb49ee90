"""The store's operator commands, run in process: `db upgrade`, `keys ...`, `accounts import`."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Mapping
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy import text

from app.accounts.engine import build_engine
from app.accounts.migrate import MIGRATIONS, schema_state
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.accounts.store import LinkedAccount
from app.providers.benepia import BenepiaAccount
from app.providers.gafapay import GafapayAccount
from tests.accounts.conftest import KEY_A, KEY_B, PG_URL, PLUGINS, Cli
from tests.conftest import customer_token

PASSWORD = "sEcReT-cli-pw-0303"
GAFA_TOKEN = customer_token("fb8f", jti="sEcReT-cli-token-0404")
CURRENCY = "1f1519903ed240578f071aa45cb479f2"
BAD_ID_VALUE = "zz-sEcReT-not-hex"

ACCOUNTS: dict[str, dict[str, dict[str, str]]] = {
    "alice": {
        "benepia": {"benepia_user": "alice.kim", "benepia_password": PASSWORD},
        "gafapay": {"gafapay_user_id": "fb8f", "currency_id": CURRENCY, "token": GAFA_TOKEN},
    },
    "bob": {"gafapay": {"gafapay_user_id": "0b0b", "currency_id": CURRENCY}},
}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_accounts(path: Path, accounts: Mapping[str, object] = ACCOUNTS) -> Path:
    path.write_text(json.dumps(accounts), encoding="utf-8")
    return path


def read_linked(url: str, keys: str, user_id: str) -> dict[str, LinkedAccount]:
    async def read() -> dict[str, LinkedAccount]:
        store = SqlAccountStore(
            build_engine(url, timeout=5.0), Keyring.parse(keys), PLUGINS, timeout=5.0
        )
        try:
            return dict(await store.linked(user_id))
        finally:
            await store.aclose()

    return asyncio.run(read())


def count_rows(url: str) -> int:
    async def count() -> int:
        store = SqlAccountStore(
            build_engine(url, timeout=5.0), Keyring.parse(KEY_A), PLUGINS, timeout=5.0
        )
        try:
            return await store.count()
        finally:
            await store.aclose()

    return asyncio.run(count())


def assert_no_secrets(*texts: str) -> None:
    for shown in texts:
        for secret in (PASSWORD, GAFA_TOKEN, BAD_ID_VALUE, KEY_A.partition(":")[2]):
            assert secret not in shown


# --- keys generate -----------------------------------------------------------------------------


def test_keys_generate_prints_one_parseable_entry(cli: Cli) -> None:
    code, out, err = cli("keys", "generate")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    keyring = Keyring.parse(lines[0])
    assert len(keyring.keys[keyring.current_id]) == 32
    code, again, _ = cli("keys", "generate")
    assert again != out


def test_keys_generate_with_a_key_id(cli: Cli) -> None:
    code, out, _ = cli("keys", "generate", "--key-id", "k2027")
    assert code == 0
    assert Keyring.parse(out.strip()).current_id == "k2027"


@pytest.mark.parametrize("key_id", ["bad id", "a:b", "x,y", "k" * 33])
def test_keys_generate_never_prints_an_entry_the_gateway_refuses(cli: Cli, key_id: str) -> None:
    code, out, err = cli("keys", "generate", "--key-id", key_id)
    assert code == 2
    assert out == ""
    assert "key id" in err


# --- db upgrade --------------------------------------------------------------------------------


def test_db_upgrade_twice_succeeds_and_says_what_it_did(cli: Cli, env: dict[str, str]) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    said = []
    for _ in range(2):
        code, out, err = cli("db", "upgrade")
        assert code == 0, err
        said.append(out.strip())
    assert said == [
        f"points-gateway: created the account schema (revision {head})",
        f"points-gateway: the account schema is already up to date (revision {head})",
    ]

    async def exists() -> bool:
        engine = build_engine(env["POINTS_DATABASE_URL"], timeout=5.0)
        try:
            return await schema_state(engine) == "current"
        finally:
            await engine.dispose()

    assert asyncio.run(exists())


def test_db_upgrade_with_postgresql_down_exits_cleanly(cli: Cli) -> None:
    url = f"postgresql+asyncpg://postgres:pg-sEcReT-pass@127.0.0.1:{closed_port()}/test"
    code, out, err = cli("db", "upgrade", POINTS_DATABASE_URL=url)
    assert code != 0
    assert err.strip()
    assert "pg-sEcReT-pass" not in out + err
    assert "up to date" not in out
    assert err.startswith("points-gateway: cannot reach the account database (POINTS_DATABASE_URL")


def test_db_upgrade_under_a_regular_file_exits_cleanly(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    url = f"sqlite+aiosqlite:///{tmp_path}/plain-file/cli.db"
    code, _, err = cli("db", "upgrade", POINTS_DATABASE_URL=url)
    assert code == 2
    assert err.startswith("points-gateway: ")


def test_db_upgrade_with_an_unsupported_url_is_a_configuration_error(cli: Cli) -> None:
    code, _, err = cli("db", "upgrade", POINTS_DATABASE_URL="mysql://root:pw@127.0.0.1/x")
    assert code == 2
    assert "configuration error" in err
    assert "mysql" in err


def test_db_upgrade_on_a_missing_postgresql_database_exits_cleanly(cli: Cli) -> None:
    url = PG_URL.rsplit("/", 1)[0] + "/points_gateway_no_such_database"
    code, _, err = cli("db", "upgrade", POINTS_DATABASE_URL=url)
    assert code == 2
    assert err.startswith("points-gateway: ")
    assert "points_gateway_no_such_database" in err
    assert len(err.strip().splitlines()) == 1


# --- accounts import ---------------------------------------------------------------------------


def test_accounts_import_links_every_account(cli: Cli, env: dict[str, str], tmp_path: Path) -> None:
    assert cli("db", "upgrade")[0] == 0
    path = write_accounts(tmp_path / "accounts.json")
    code, out, err = cli("accounts", "import", str(path))
    assert code == 0, err
    assert "linked 3 accounts" in out
    assert_no_secrets(out, err)

    url, keys = env["POINTS_DATABASE_URL"], env["POINTS_SECRET_KEYS"]
    alice = read_linked(url, keys, "alice")
    benepia = alice["benepia"]
    assert isinstance(benepia, BenepiaAccount)
    assert benepia == BenepiaAccount(benepia_user="alice.kim", benepia_password=SecretStr(PASSWORD))
    gafapay = alice["gafapay"]
    assert isinstance(gafapay, GafapayAccount)
    assert gafapay.token is not None
    assert gafapay.token.get_secret_value() == GAFA_TOKEN
    bob = read_linked(url, keys, "bob")
    assert set(bob) == {"gafapay"}
    # Ids only, vouched for by the operator who imports them: served, not ownership_proof_required.
    assert isinstance(bob["gafapay"], GafapayAccount)

    # Importing again replaces, it does not duplicate.
    assert cli("accounts", "import", str(path))[0] == 0
    assert count_rows(url) == 3


@pytest.mark.parametrize(
    ("accounts", "names"),
    [
        (
            {"alice": {"gafapay": {"gafapay_user_id": BAD_ID_VALUE, "currency_id": CURRENCY}}},
            ["alice.gafapay.gafapay_user_id"],
        ),
        (
            {"alice": {"benepia": {"benepia_user": "alice.kim", "benepia_password": ""}}},
            ["alice.benepia.benepia_password"],
        ),
        (
            {"alice": {"benepia": {"benepia_user": "alice.kim", "password": PASSWORD}}},
            ["alice.benepia.benepia_password", "alice.benepia.password"],
        ),
        ({"alice": {"kakaopay": {"id": PASSWORD}}}, ["alice.kakaopay"]),
        ({"alice": PASSWORD}, ["alice"]),
        ({"alice": {"benepia": PASSWORD}}, ["alice.benepia"]),
        (
            {"alice": {"gafapay": {**ACCOUNTS["alice"]["gafapay"], "gafapay_user_id": "0b0b"}}},
            ["alice.gafapay.token: was issued for another account"],
        ),
    ],
    ids=[
        "bad-hex-id",
        "empty-password",
        "misnamed-field",
        "unknown-provider",
        "not-an-object",
        "account-not-an-object",
        "token-of-another-account",
    ],
)
def test_accounts_import_of_a_bad_file_names_the_field_not_the_value(
    cli: Cli,
    env: dict[str, str],
    tmp_path: Path,
    accounts: dict[str, object],
    names: list[str],
) -> None:
    assert cli("db", "upgrade")[0] == 0
    # A good account first: nothing is linked unless the whole file is valid.
    mixed = {"bob": ACCOUNTS["bob"], **accounts}
    code, out, err = cli("accounts", "import", str(write_accounts(tmp_path / "bad.json", mixed)))
    assert code == 2
    for name in names:
        assert name in err
    assert_no_secrets(out, err)
    assert count_rows(env["POINTS_DATABASE_URL"]) == 0


def test_accounts_import_of_unreadable_files(cli: Cli, tmp_path: Path) -> None:
    assert cli("db", "upgrade")[0] == 0
    broken = tmp_path / "broken.json"
    broken.write_text('{"alice": {"benepia": {"benepia_password": "' + PASSWORD + '"', "utf-8")
    code, _, err = cli("accounts", "import", str(broken))
    assert code == 2
    assert_no_secrets(err)
    code, _, err = cli("accounts", "import", str(tmp_path / "missing.json"))
    assert code == 2
    assert "missing.json" in err


def test_accounts_import_of_a_provider_not_enabled(cli: Cli, tmp_path: Path) -> None:
    assert cli("db", "upgrade")[0] == 0
    path = write_accounts(tmp_path / "accounts.json")
    code, _, err = cli("accounts", "import", str(path), POINTS_ENABLED_PROVIDERS="benepia")
    assert code == 2
    assert "gafapay" in err
    assert "not enabled" in err


def test_accounts_import_without_a_key_is_a_configuration_error(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("db", "upgrade")[0] == 0
    monkeypatch.delenv("POINTS_SECRET_KEYS")
    code, _, err = cli("accounts", "import", str(write_accounts(tmp_path / "a.json")))
    assert code == 2
    assert "POINTS_SECRET_KEYS" in err


def test_accounts_import_with_the_database_down_exits_cleanly(cli: Cli, tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/test"
    path = write_accounts(tmp_path / "accounts.json")
    code, _, err = cli("accounts", "import", str(path), POINTS_DATABASE_URL=url)
    assert code != 0
    assert err.startswith("points-gateway: ")
    assert_no_secrets(err)


def test_accounts_import_before_db_upgrade_exits_cleanly(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("accounts", "import", str(write_accounts(tmp_path / "accounts.json")))
    assert code == 2
    assert err.startswith("points-gateway: ")
    assert "db upgrade" in err


@pytest.mark.parametrize("user_id", ["alice kim", "x" * 129, ""])
def test_accounts_import_refuses_user_ids_the_api_cannot_address(
    cli: Cli, env: dict[str, str], tmp_path: Path, user_id: str
) -> None:
    assert cli("db", "upgrade")[0] == 0
    path = write_accounts(tmp_path / "a.json", {"bob": ACCOUNTS["bob"], user_id: ACCOUNTS["bob"]})
    code, out, err = cli("accounts", "import", str(path))
    assert code == 2
    assert "user id" in err
    assert "linked" not in out
    assert count_rows(env["POINTS_DATABASE_URL"]) == 0


# --- keys rotate -------------------------------------------------------------------------------


def test_keys_rotate_reseals_and_reports_counts(
    cli: Cli, env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli("db", "upgrade")[0] == 0
    assert cli("accounts", "import", str(write_accounts(tmp_path / "a.json")))[0] == 0

    rotated = f"{KEY_B},{KEY_A}"
    caplog.set_level(logging.INFO, "points_gateway.progress")
    code, out, err = cli("keys", "rotate", "--batch", "2", POINTS_SECRET_KEYS=rotated)
    assert code == 0, err
    assert "re-sealed 3" in out
    # Not a terminal: progress as log lines, the total first.
    lines = [r.getMessage() for r in caplog.records if r.name == "points_gateway.progress"]
    assert lines[0] == "re-sealing under key key-b: 3 rows"
    assert lines[-1].startswith("re-sealing under key key-b: 3 rows in ")
    assert "0 unreadable" in out
    assert_no_secrets(out, err)

    code, out, _ = cli("keys", "rotate", POINTS_SECRET_KEYS=rotated)
    assert code == 0
    assert "re-sealed 0" in out

    url = env["POINTS_DATABASE_URL"]
    alice = read_linked(url, KEY_B, "alice")
    assert isinstance(alice["benepia"], BenepiaAccount)
    assert isinstance(alice["gafapay"], GafapayAccount)
    assert isinstance(read_linked(url, KEY_B, "bob")["gafapay"], GafapayAccount)


def test_keys_rotate_with_unreadable_rows_exits_1(
    cli: Cli, env: dict[str, str], tmp_path: Path
) -> None:
    assert cli("db", "upgrade")[0] == 0
    assert cli("accounts", "import", str(write_accounts(tmp_path / "a.json")))[0] == 0

    async def tamper() -> None:
        engine = build_engine(env["POINTS_DATABASE_URL"], timeout=5.0)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE linked_accounts SET sealed = 'v1.key-a.AAAA.AAAA' "
                        "WHERE user_id = 'bob'"
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    code, out, _ = cli("keys", "rotate", POINTS_SECRET_KEYS=f"{KEY_B},{KEY_A}")
    assert code == 1
    assert "re-sealed 2" in out
    assert "1 unreadable" in out


def test_keys_rotate_without_keys_is_a_configuration_error(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("db", "upgrade")[0] == 0
    monkeypatch.delenv("POINTS_SECRET_KEYS")
    code, _, err = cli("keys", "rotate")
    assert code == 2
    assert "POINTS_SECRET_KEYS" in err


def test_keys_rotate_with_a_malformed_keyring_does_not_echo_it(cli: Cli) -> None:
    short = KEY_A[: len(KEY_A) - 8]
    code, out, err = cli("keys", "rotate", POINTS_SECRET_KEYS=short)
    assert code == 2
    assert short.partition(":")[2] not in out + err


def test_keys_rotate_with_postgresql_down_exits_cleanly(cli: Cli) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/test"
    code, _, err = cli("keys", "rotate", POINTS_DATABASE_URL=url)
    assert code != 0
    assert err.startswith("points-gateway: ")


def test_keys_rotate_before_db_upgrade_exits_cleanly(cli: Cli) -> None:
    code, _, err = cli("keys", "rotate")
    assert code == 2
    assert err.startswith("points-gateway: ")
    assert "db upgrade" in err


@pytest.mark.parametrize("batch", ["0", "-1", "many"])
def test_keys_rotate_refuses_a_batch_below_one(
    cli: Cli, env: dict[str, str], tmp_path: Path, batch: str
) -> None:
    assert cli("db", "upgrade")[0] == 0
    assert cli("accounts", "import", str(write_accounts(tmp_path / "a.json")))[0] == 0
    code, out, err = cli("keys", "rotate", "--batch", batch, POINTS_SECRET_KEYS=f"{KEY_B},{KEY_A}")
    assert code == 2
    assert "--batch" in err
    assert "re-sealed" not in out
