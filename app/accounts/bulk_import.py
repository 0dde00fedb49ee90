"""`accounts import` of any size: streamed line by line, sealed as it goes, written in batches.

Memory holds one batch, never the file. Each batch is one transaction of upserts (the link's
statement, `link_statement`), then the checkpoint records the last line it covers, so a crash
leaves whole batches only and `--resume` goes on after the last one committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.bulk_lines import AccountRows, LineError, Row
from app.accounts.import_checkpoint import Checkpoint
from app.accounts.import_progress import Progress
from app.accounts.sql_store import link_statement
from app.errors import ConfigurationError

BATCH = 1000
SHOWN = 20
MAX_LINE = 64 * 1024
"""No account is near this; a longer line is rejected without being held whole."""
_BOM = b"\xef\xbb\xbf"
"""Bad lines printed as they are met; every one of them is in the rejects file."""


class FileFormat(StrEnum):
    """NDJSON, one account a line (streamed), or the whole-file JSON object of users."""

    NDJSON = "ndjson"
    JSON = "json"

    @classmethod
    def of(cls, path: Path) -> FileFormat:
        """By extension: `.json` is the whole-file object, anything else NDJSON."""
        return cls.JSON if path.suffix.lower() == ".json" else cls.NDJSON


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """What `points-gateway accounts import` was asked to do."""

    path: Path
    rejects: Path | None = None
    strict: bool = False
    resume: bool = False
    batch: int = BATCH

    @property
    def rejects_path(self) -> Path:
        """Where bad lines go: `--rejects`, else `<file>.rejects.ndjson` beside the input."""
        return self.rejects or self.path.with_name(self.path.name + ".rejects.ndjson")

    @property
    def checkpoint_path(self) -> Path:
        """`<file>.checkpoint` beside the input."""
        return self.path.with_name(self.path.name + ".checkpoint")


@dataclass
class ImportReport:
    """What a run did."""

    linked: int = 0
    rejected: int = 0
    resumed_after: int = 0
    stopped: str | None = None
    """--strict: the bad line that stopped the run."""
    rejects: Path | None = None
    notes: list[str] = field(default_factory=list)


class BatchWriter:
    """Writes rows as links do, one transaction per batch."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._statement = link_statement(engine.dialect.name)

    async def write(self, rows: Iterable[Row]) -> None:
        """Upsert `rows` in one transaction: all of them, or none after a failure or a crash."""
        params = list(rows)
        if params:
            async with self._engine.begin() as conn:
                await conn.execute(self._statement, params)


class RejectsFile:
    """The bad lines as given, each with an `error`; 0600, since a line may hold a password."""

    def __init__(self, path: Path, *, keep: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # a file left by someone else may be readable by others
        # Never grow it: a file shorter than the checkpoint says was changed since; keep it as is.
        os.ftruncate(fd, min(keep, os.fstat(fd).st_size))
        self._file = os.fdopen(fd, "ab")
        self.path = path

    def add(self, raw: bytes, error: str) -> None:
        try:
            original = orjson.loads(raw)
        except orjson.JSONDecodeError:
            original = None
        if isinstance(original, dict):
            record = {**original, "error": error}
        else:
            record = {"raw": raw.rstrip(b"\r\n").decode("utf-8", "replace"), "error": error}
        self._file.write(orjson.dumps(record) + b"\n")

    def offset(self) -> int:
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        """Close it; an empty file is removed."""
        empty = self.offset() == 0
        self._file.close()
        if empty:
            self.path.unlink(missing_ok=True)


def _lines(source: BinaryIO) -> Iterator[bytes]:
    """The file's lines; a line over MAX_LINE comes as its first MAX_LINE + 1 bytes only, so a
    file without newlines cannot fill memory."""
    first = source.tell() == 0
    while raw := source.readline(MAX_LINE + 1):
        if first and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        first = False
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while (rest := source.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
        yield raw


def _start(options: ImportOptions, source: BinaryIO, report: ImportReport) -> Checkpoint | None:
    checkpoint = Checkpoint.load(options.checkpoint_path)
    if not options.resume:
        if checkpoint is not None:
            report.notes.append(
                f"starting from line 1: {options.checkpoint_path} (after line "
                f"{checkpoint.line}) is removed; --resume would have gone on from it"
            )
            # Else a crash before this run's first commit would leave it to a later --resume,
            # beside a rejects file this run has already emptied.
            options.checkpoint_path.unlink()
        return None
    if checkpoint is None:
        report.notes.append(f"no checkpoint at {options.checkpoint_path}: starting from line 1")
        return None
    # The checkpoint must fall just after a line of this file.
    if checkpoint.offset > 0:
        source.seek(checkpoint.offset - 1)
        if source.read(1) != b"\n":
            raise ConfigurationError(
                f"{options.checkpoint_path} does not fit {options.path} (edited before the "
                "checkpoint?): delete it to start from the first line"
            )
    source.seek(checkpoint.offset)
    report.resumed_after = checkpoint.line
    return checkpoint


async def import_ndjson(
    engine: AsyncEngine,
    rows: AccountRows,
    options: ImportOptions,
    progress: Callable[[int, int], Progress],
) -> ImportReport:
    """Stream an NDJSON file into the store in batches, skipping (or, strict, stopping at) bad
    lines."""
    report = ImportReport()
    writer = BatchWriter(engine)
    with options.path.open("rb") as source:
        size = os.fstat(source.fileno()).st_size
        checkpoint = _start(options, source, report)
        line = checkpoint.line if checkpoint else 0
        rejects = (
            None
            if options.strict
            else RejectsFile(
                options.rejects_path, keep=checkpoint.rejects_offset if checkpoint else 0
            )
        )
        shown = progress(size, source.tell())
        for note in report.notes:
            shown.note(f"points-gateway: {note}")
        batch: dict[tuple[str, str], Row] = {}
        bad: list[tuple[bytes, str]] = []
        pending = 0
        now = datetime.now(UTC)

        async def commit() -> None:
            nonlocal pending, now
            await writer.write(batch.values())
            if rejects is not None:
                for raw, error in bad:
                    rejects.add(raw, error)
            Checkpoint(
                line=line,
                offset=source.tell(),
                rejects_offset=rejects.offset() if rejects else 0,
            ).save(options.checkpoint_path)
            report.linked += pending - len(bad)
            batch.clear()
            bad.clear()
            pending = 0
            now = datetime.now(UTC)
            shown.update(
                position=source.tell(), lines=line, linked=report.linked, rejected=report.rejected
            )

        try:
            for raw in _lines(source):
                line += 1
                if not raw.strip():
                    continue
                pending += 1
                try:
                    if len(raw) > MAX_LINE:
                        raise LineError(f"longer than {MAX_LINE:,} bytes")
                    row = rows.from_line(raw, now=now)
                except LineError as exc:
                    message = f"line {line}: {exc}"
                    if options.strict:
                        report.stopped = message
                        break
                    bad.append((raw, message))
                    report.rejected += 1
                    if report.rejected <= SHOWN:
                        shown.note(f"points-gateway: {message}")
                    continue
                # A user and provider twice in one batch: the later line wins, as two links would.
                batch[(row["user_id"], row["provider"])] = row
                if pending >= options.batch:
                    await commit()
            else:
                if pending:
                    await commit()
                options.checkpoint_path.unlink(missing_ok=True)
        finally:
            shown.close()
            if rejects is not None:
                rejects.close()
                report.rejects = rejects.path if rejects.path.exists() else None
    return report


async def import_accounts_object(
    engine: AsyncEngine,
    rows: AccountRows,
    accounts: Mapping[str, Mapping[str, BaseModel]],
    *,
    batch: int = BATCH,
) -> int:
    """Write an already validated `{user_id: {provider: account}}` in batches; returns how many."""
    writer = BatchWriter(engine)
    pending: list[Row] = []
    count = 0
    now = datetime.now(UTC)
    for user_id, links in accounts.items():
        for provider, account in links.items():
            pending.append(rows.row(user_id, provider, account, now=now))
            if len(pending) >= batch:
                await writer.write(pending)
                count += len(pending)
                pending.clear()
    await writer.write(pending)
    return count + len(pending)
