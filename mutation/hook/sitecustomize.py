"""Imported by every Python process the mutation runner starts (its folder is on PYTHONPATH).

It serves one module's mutated source in place of the file, so the mutant is live in the test
process and in any server or CLI subprocess the tests start, and the working tree is never edited.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, path: str, source: str) -> None:
        self._path = path
        self._source = source

    def exec_module(self, module: ModuleType) -> None:
        exec(compile(self._source, self._path, "exec"), module.__dict__)  # noqa: S102


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, path: str, source: str) -> None:
        self._name = name
        self._path = path
        self._source = source

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._name:
            return None
        loader = _MutantLoader(self._path, self._source)
        return importlib.util.spec_from_file_location(fullname, self._path, loader=loader)


def _install() -> None:
    spec_file = os.environ.get("POINTS_MUTANT")
    if not spec_file:
        return
    with open(spec_file, encoding="utf-8") as file:
        mutant = json.load(file)
    sys.meta_path.insert(0, _MutantFinder(mutant["module"], mutant["path"], mutant["source"]))


_install()
