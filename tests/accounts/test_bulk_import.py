"""`accounts import` of NDJSON: streamed, batched, strict, resumable, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.bulk_import import MAX_LINE, ImportOptions, ImportReport, import_ndjson
from app.accounts.bulk_lines import AccountRows
from app.accounts.import_checkpoint import Checkpoint
from app.accounts.import_progress import LogProgress, Progress
from app.accounts.schema import linked_accounts as t
from app.accounts.sealing import Keyring
from app.errors import ConfigurationError
from app.providers.base import Ownership
from app.providers.benepia import BenepiaAccount
from app.providers.gafapay import GafapayAccount
from tests.accounts.conftest import KEY_A, PLUGINS, Cli, StoreFactory
from tests.accounts.test_store_cli import (
    BAD_ID_VALUE,
    CURRENCY,
    GAFA_TOKEN,
    PASSWORD,
    assert_no_secrets,
    read_linked,
)


def benepia(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "user_id": user,
        "provider": "benepia",
        "benepia_user": f"{user}.kim",
        "benepia_password": password,
    }


def gafapay(user: str, gafapay_id: str = "0b0b", **extra: str) -> dict[str, str]:
    return {
        "user_id": user,
        "provider": "gafapay",
        "gafapay_user_id": gafapay_id,
        "currency_id": CURRENCY,
        **extra,
    }


def write_lines(path: Path, lines: list[object]) -> Path:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def quiet(total: int, start: int) -> Progress:
    return LogProgress(total=total)


async def run(engine: AsyncEngine, options: ImportOptions) -> ImportReport:
    rows = AccountRows(PLUGINS, Keyring.parse(KEY_A))
    return await import_ndjson(engine, rows, options, quiet)


async def users_in(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        found = await conn.execute(select(t.c.user_id).order_by(t.c.user_id))
        return list(found.scalars())


# --- straight into the store, on both databases ------------------------------------------------


async def test_ndjson_import_links_what_the_store_reads_back_and_relinks_like_a_link(
    engine: AsyncEngine, make_sql_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_sql_store(KEY_A)
    old = BenepiaAccount(benepia_user="old.name", benepia_password=SecretStr("old-pw"))
    first, _ = await store.upsert(
        "alice", "benepia", old, masked_id="o***", ownership=Ownership.SECRET
    )
    store.note_fetched("alice", ["benepia"])
    await store.aclose()
    store = make_sql_store(KEY_A)
    (fetched,) = [i.last_fetch_at for i in await store.accounts("alice")]
    assert fetched is not None

    path = write_lines(
        tmp_path / "a.ndjson",
        [benepia("alice"), "", gafapay("alice", "fb8f", token=GAFA_TOKEN), gafapay("bob")],
    )
    report = await run(engine, ImportOptions(path=path, batch=2))
    assert (report.linked, report.rejected, report.stopped) == (3, 0, None)
    assert not (tmp_path / "a.ndjson.checkpoint").exists()  # done: nothing to resume
    assert not (tmp_path / "a.ndjson.rejects.ndjson").exists()

    alice = await store.linked("alice")
    assert alice["benepia"] == BenepiaAccount(
        benepia_user="alice.kim", benepia_password=SecretStr(PASSWORD)
    )
    assert isinstance(alice["gafapay"], GafapayAccount)
    assert alice["gafapay"].token is not None
    assert alice["gafapay"].token.get_secret_value() == GAFA_TOKEN
    # Ids only: the operator vouches, so it is served.
    assert isinstance((await store.linked("bob"))["gafapay"], GafapayAccount)
    # A relink, as the link route does it: linked_at and last_fetch_at kept, the rest replaced.
    info = {i.provider: i for i in await store.accounts("alice")}["benepia"]
    assert info.linked_at == first.linked_at
    assert info.last_fetch_at == fetched
    assert info.updated_at > first.updated_at
    async with engine.connect() as conn:
        kinds = dict(
            (await conn.execute(select(t.c.user_id + "/" + t.c.provider, t.c.ownership))).all()
        )
    assert kinds == {
        "alice/benepia": "secret",
        "alice/gafapay": "user_token",
        "bob/gafapay": "trusted_link",
    }
    await store.aclose()


async def test_the_same_account_twice_in_a_batch_keeps_the_later_line(
    engine: AsyncEngine, make_sql_store: StoreFactory, tmp_path: Path
) -> None:
    lines: list[object] = [benepia("alice", password="first-pw"), benepia("alice"), gafapay("bob")]
    report = await run(engine, ImportOptions(path=write_lines(tmp_path / "a.ndjson", lines)))
    assert (report.linked, report.rejected) == (3, 0)
    store = make_sql_store(KEY_A)
    account = (await store.linked("alice"))["benepia"]
    assert isinstance(account, BenepiaAccount)
    assert account.benepia_password.get_secret_value() == PASSWORD
    await store.aclose()


async def test_an_overlong_line_is_rejected_and_the_next_line_read(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(
        b"\xef\xbb\xbf"  # a byte-order mark, as some editors write
        + json.dumps(gafapay("u1")).encode()
        + b"\n"
        + b"x" * (MAX_LINE * 3)
        + b"\n"
        + json.dumps(gafapay("u3")).encode()
        + b"\n"
    )
    report = await run(engine, ImportOptions(path=path))
    assert (report.linked, report.rejected) == (2, 1)
    rejects = (tmp_path / "a.ndjson.rejects.ndjson").read_text("utf-8")
    assert f"line 2: longer than {MAX_LINE:,} bytes" in rejects
    assert await users_in(engine) == ["u1", "u3"]


async def test_strict_stops_at_the_bad_line_with_nothing_of_its_batch_written(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    lines: list[object] = [gafapay(f"u{i}") for i in range(1, 4)]
    lines.append(gafapay("u4", BAD_ID_VALUE))
    path = write_lines(tmp_path / "a.ndjson", [*lines, gafapay("u5")])
    report = await run(engine, ImportOptions(path=path, batch=2, strict=True))
    assert report.stopped is not None
    assert report.stopped.startswith("line 4: gafapay.gafapay_user_id: ")
    assert BAD_ID_VALUE not in report.stopped
    # Lines 1-2 were a committed batch; line 3 shared the bad line's batch.
    assert await users_in(engine) == ["u1", "u2"]
    checkpoint = Checkpoint.load(tmp_path / "a.ndjson.checkpoint")
    assert checkpoint is not None
    assert checkpoint.line == 2
    assert not (tmp_path / "a.ndjson.rejects.ndjson").exists()


async def test_resume_goes_on_after_the_checkpoint_and_ends_with_every_account(
    engine: AsyncEngine, make_sql_store: StoreFactory, tmp_path: Path
) -> None:
    users = [f"u{i}" for i in range(1, 8)]
    path = write_lines(tmp_path / "a.ndjson", [benepia(u) for u in users])
    # An interrupted run: lines 1-4 committed (with other passwords), the checkpoint after them.
    store = make_sql_store(KEY_A)
    for user in users[:4]:
        account = BenepiaAccount(benepia_user="before", benepia_password=SecretStr("before-pw"))
        await store.upsert(user, "benepia", account, masked_id="b***", ownership=Ownership.SECRET)
    offset = sum(len(line) for line in path.read_bytes().splitlines(keepends=True)[:4])
    Checkpoint(line=4, offset=offset, rejects_offset=0).save(tmp_path / "a.ndjson.checkpoint")

    report = await run(engine, ImportOptions(path=path, batch=2, resume=True))
    assert (report.resumed_after, report.linked) == (4, 3)
    assert await users_in(engine) == users
    for user in users[:4]:  # committed batches are not redone
        assert (await store.linked(user))["benepia"].benepia_user == "before"  # type: ignore[union-attr]
    for user in users[4:]:
        assert (await store.linked(user))["benepia"].benepia_user == f"{user}.kim"  # type: ignore[union-attr]
    assert not (tmp_path / "a.ndjson.checkpoint").exists()
    await store.aclose()


async def test_a_run_without_resume_starts_at_line_1_and_drops_an_old_checkpoint(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.ndjson", [benepia("u1"), benepia("bad user")])
    Checkpoint(line=1, offset=0, rejects_offset=999).save(tmp_path / "a.ndjson.checkpoint")
    report = await run(engine, ImportOptions(path=path))
    assert (report.resumed_after, report.linked, report.rejected) == (0, 1, 1)
    assert not (tmp_path / "a.ndjson.checkpoint").exists()
    assert await users_in(engine) == ["u1"]


async def test_resume_cuts_the_rejects_file_back_to_the_checkpoint(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "a.ndjson", [benepia("bad user"), benepia("u2"), benepia("bad 3")]
    )
    first = len(path.read_bytes().splitlines(keepends=True)[0])
    rejects = tmp_path / "a.ndjson.rejects.ndjson"
    # Line 1's reject was kept by the committed batch; a crash left a stale one after it.
    rejects.write_bytes(b'{"error": "line 1: kept"}\n{"error": "stale"}\n')
    Checkpoint(line=1, offset=first, rejects_offset=26).save(tmp_path / "a.ndjson.checkpoint")
    report = await run(engine, ImportOptions(path=path, resume=True))
    assert (report.linked, report.rejected) == (1, 1)
    errors = [json.loads(x)["error"] for x in rejects.read_text("utf-8").splitlines()]
    assert errors[0] == "line 1: kept"
    assert errors[1].startswith("line 3: user_id: ")
    assert len(errors) == 2


async def test_resume_refuses_a_checkpoint_that_does_not_fall_on_a_line_of_the_file(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "a.ndjson", [benepia("u1"), benepia("u2")])
    Checkpoint(line=1, offset=7, rejects_offset=0).save(tmp_path / "a.ndjson.checkpoint")
    with pytest.raises(ConfigurationError, match="does not fit"):
        await run(engine, ImportOptions(path=path, resume=True))
    assert await users_in(engine) == []


# --- through the command (SQLite) ----------------------------------------------------------------


def test_bad_lines_are_reported_by_number_and_field_and_kept_in_a_0600_rejects_file(
    cli: Cli,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert cli("db", "upgrade")[0] == 0
    lines: list[object] = [
        benepia("alice"),
        gafapay("bob", BAD_ID_VALUE, token=GAFA_TOKEN),
        benepia("carol", password=""),
        f'{{"user_id": "dave", "benepia_password": "{PASSWORD}"',  # cut short: not JSON
        {**benepia("erin"), "provider": PASSWORD},
        {**gafapay("frank"), "programme": "gafapay"},
        benepia("bad user"),
        gafapay("grace"),
    ]
    path = write_lines(tmp_path / "a.ndjson", lines)
    code, out, err = cli("accounts", "import", str(path))
    assert code == 0, err
    assert "linked 2 accounts" in out
    for expected in (
        "line 2: gafapay.gafapay_user_id: ",
        "line 3: benepia.benepia_password: ",
        "line 4: not valid JSON",
        "line 5: provider: not one of the enabled providers",
        "line 6: gafapay.programme: ",
        "line 7: user_id: ",
        "skipped 6 bad lines",
    ):
        assert expected in err
    assert_no_secrets(out, err)

    rejects = tmp_path / "a.ndjson.rejects.ndjson"
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    kept = [json.loads(line) for line in rejects.read_text("utf-8").splitlines()]
    assert [r["error"].split(":")[0] for r in kept] == [f"line {n}" for n in range(2, 8)]
    # The original line, as given, beside its error (a line that is not JSON: as text).
    assert {k: v for k, v in kept[0].items() if k != "error"} == lines[1]
    assert kept[2]["raw"] == lines[3]
    assert set(read_linked(env["POINTS_DATABASE_URL"], KEY_A, "grace")) == {"gafapay"}


def test_a_rejects_file_left_readable_is_made_0600_and_replaced(
    cli: Cli,
    tmp_path: Path,
) -> None:
    assert cli("db", "upgrade")[0] == 0
    rejects = tmp_path / "elsewhere.ndjson"
    rejects.write_text("old\n", encoding="utf-8")
    rejects.chmod(0o644)
    path = write_lines(tmp_path / "a.ndjson", [benepia("bad user")])
    code, _, err = cli("accounts", "import", str(path), "--rejects", str(rejects))
    assert code == 0, err
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    assert rejects.read_text("utf-8").count("\n") == 1
    assert "old" not in rejects.read_text("utf-8")


def test_strict_exits_1_at_the_first_bad_line(
    cli: Cli,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert cli("db", "upgrade")[0] == 0
    path = write_lines(tmp_path / "a.ndjson", [benepia("alice"), benepia("bob", password="")])
    code, out, err = cli("accounts", "import", str(path), "--strict")
    assert code == 1
    assert "line 2: benepia.benepia_password: " in err
    assert "--resume" in err
    assert_no_secrets(out, err)
    assert read_linked(env["POINTS_DATABASE_URL"], KEY_A, "alice") == {}
    assert not (tmp_path / "a.ndjson.rejects.ndjson").exists()


def test_a_json_file_is_still_the_whole_file_form_and_refuses_ndjson_flags(
    cli: Cli,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    assert cli("db", "upgrade")[0] == 0
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"alice": {"gafapay": gafapay("x")}}), encoding="utf-8")
    code, _, err = cli("accounts", "import", str(path))
    assert code == 2  # the whole-file form has no user_id/provider inside an account
    assert "alice.gafapay.user_id" in err
    path.write_text(
        json.dumps({"alice": {"gafapay": {"gafapay_user_id": "fb8f", "currency_id": CURRENCY}}}),
        encoding="utf-8",
    )
    assert cli("accounts", "import", str(path), "--resume")[0] == 2
    code, out, err = cli("accounts", "import", str(path))
    assert code == 0, err
    assert "linked 1 accounts" in out
    assert set(read_linked(env["POINTS_DATABASE_URL"], KEY_A, "alice")) == {"gafapay"}


def test_without_a_terminal_progress_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress(total=1000, every=0.0)
    with caplog.at_level("INFO", logger="points_gateway.accounts"):
        progress.update(position=0, lines=0, linked=0, rejected=0)
        progress.update(position=500, lines=7, linked=5, rejected=2)
    (line,) = [r.getMessage() for r in caplog.records][-1:]
    assert line.startswith("import progress: line 7, 5 linked, 2 rejected, ")
    assert line.endswith("accounts/s, 50.0% of the file")


def test_batch_must_be_positive(cli: Cli, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.ndjson", [gafapay("u1")])
    assert cli("accounts", "import", str(path), "--batch", "0")[0] == 2
