"""Where an interrupted `accounts import` stands: written after each committed batch."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from app.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Every line up to `line` is committed or rejected; `offset` is the byte just past it."""

    line: int
    offset: int
    rejects_offset: int
    """The rejects file's size then: a resumed run cuts off what a crash left after it."""

    def save(self, path: Path) -> None:
        """Replace the checkpoint atomically: a crash leaves the old one or the new one."""
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint at `path`, None if there is none."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                line=int(raw["line"]),
                offset=int(raw["offset"]),
                rejects_offset=int(raw["rejects_offset"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"cannot read the checkpoint {path} ({type(exc).__name__}): delete it to start "
                "from the first line"
            ) from exc
