"""The SQLite database's file and directory: created private, a loose existing file reported.

The file holds the sealed credentials, the masked identifiers and every user id that linked an
account. SQLite itself creates a database 0644 (less the umask) and its -wal and -shm files with
the database file's own mode, so creating the empty file 0600 first makes all three private.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from app.errors import ConfigurationError

log = logging.getLogger("points_gateway.store")
DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


def prepare_sqlite_file(path: Path, *, report: bool = True) -> None:
    """Create a missing directory 0700 and a missing database file 0600; warn on a loose file.

    An existing directory is left as it is (it may be shared on purpose, or not ours to change);
    an existing database file is not changed either, only reported when `report` is set.
    """
    try:
        # An existing directory keeps its mode (exist_ok); only a new one is made 0700.
        path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_create(path, exc) from exc
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        if report:
            _report_loose(path)
        return
    except OSError as exc:
        raise _cannot_create(path, exc) from exc
    os.close(descriptor)


def _cannot_create(path: Path, exc: OSError) -> ConfigurationError:
    reason = exc.strerror or type(exc).__name__
    return ConfigurationError(f"cannot create the SQLite database {path}: {reason}")


def _report_loose(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return  # SQLite will say what is wrong with it
    if mode & 0o077:
        log.warning(
            "the SQLite database %s can be read by group or others (mode %04o): "
            "it holds the sealed credentials; run `chmod 600` on it",
            path,
            mode,
        )
