"""README's configuration table lists every setting, and nothing that is not one (issue 6)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, TypeGuard, get_origin

from pydantic import BaseModel

from app.providers.benepia import BenepiaSettings
from app.providers.gafapay import GafapaySettings
from app.providers.registry import BUILTIN_PLUGINS
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PREFIX = "POINTS_"
# A documented variable: upper-case, `__` between sections, optionally ending in a `__<...>`
# placeholder for a dict-valued setting (POINTS_CACHE__PROVIDER_TTL__<PROVIDER>).
VARIABLE = re.compile(r"POINTS_[A-Z0-9_]*[A-Z0-9](?:__<[^>`|]+>)?")
PLACEHOLDER = re.compile(r"__<[^>]+>$")

# POINTS_PROVIDERS__<NAME>__<FIELD>: the raw `providers` dict, validated by each provider's model.
PROVIDER_SETTINGS: dict[str, type[BaseModel]] = {
    plugin.name: plugin.settings_model for plugin in BUILTIN_PLUGINS
}


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return (
        get_origin(annotation) is None
        and inspect.isclass(annotation)
        and issubclass(annotation, BaseModel)
    )


def _walk(model: type[BaseModel], prefix: str) -> tuple[set[str], set[str]]:
    """The variables of `model` under `prefix`: (plain names, dict-valued name prefixes)."""
    names: set[str] = set()
    dicts: set[str] = set()
    for field, info in model.model_fields.items():
        name = f"{prefix}{field.upper()}"
        annotation = info.annotation
        if model is Settings and field == "providers":
            for provider, settings_model in PROVIDER_SETTINGS.items():
                more, more_dicts = _walk(settings_model, f"{name}__{provider.upper()}__")
                names |= more
                dicts |= more_dicts
        elif _is_model(annotation):
            more, more_dicts = _walk(annotation, f"{name}__")
            names |= more
            dicts |= more_dicts
        elif get_origin(annotation) is dict:
            dicts.add(name)
        else:
            names.add(name)
    return names, dicts


SETTINGS, DICT_SETTINGS = _walk(Settings, PREFIX)


def _table_rows() -> list[list[str]]:
    """README table rows whose first cell is code (`| \\`...`), split into stripped cells."""
    rows = []
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def _documented() -> dict[str, list[list[str]]]:
    """The variable named by each row's first cell (one variable per row), with its rows."""
    found: dict[str, list[list[str]]] = {}
    for row in _table_rows():
        match = re.fullmatch(r"`([^`]+)`", row[0])
        if match is not None and VARIABLE.fullmatch(match.group(1)):
            found.setdefault(match.group(1), []).append(row)
    return found


def _is_setting(name: str) -> bool:
    if name in SETTINGS:
        return True
    base = PLACEHOLDER.sub("", name)
    if base in DICT_SETTINGS:
        return True
    # A concrete key of a dict-valued setting, e.g. POINTS_CACHE__PROVIDER_TTL__BENEPIA.
    return any(name.startswith(f"{prefix}__") for prefix in DICT_SETTINGS)


def test_the_walk_sees_nested_sections_and_both_providers() -> None:
    assert PROVIDER_SETTINGS["benepia"] is BenepiaSettings
    assert PROVIDER_SETTINGS["gafapay"] is GafapaySettings
    assert {
        "POINTS_REQUEST_DEADLINE",
        "POINTS_RESILIENCE__RETRY_ATTEMPTS",
        "POINTS_AUTH__JWT_SECRET",
        "POINTS_AUTH__API_KEYS",
        "POINTS_LIMITS__CORS_ORIGINS",
        "POINTS_OUTBOUND__CONNECT_TIMEOUT",
        "POINTS_SHUTDOWN_GRACE",
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET",
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID",
    } <= SETTINGS
    assert "POINTS_CACHE__PROVIDER_TTL" in DICT_SETTINGS
    assert "POINTS_PROVIDERS" not in SETTINGS | DICT_SETTINGS


def test_every_setting_has_one_row_with_default_and_meaning() -> None:
    documented = _documented()
    missing = sorted(name for name in SETTINGS if name not in documented)
    assert not missing, f"README configuration table lacks rows for {missing}"
    for prefix in sorted(DICT_SETTINGS):
        placeholders = [name for name in documented if PLACEHOLDER.sub("", name) == prefix]
        assert placeholders, f"README lacks a `{prefix}__<...>` row for a dict-valued setting"
    for name, rows in documented.items():
        assert len(rows) == 1, f"{name} has {len(rows)} rows in README tables"
        row = rows[0]
        assert len(row) == 3, f"the {name} row needs exactly: variable | default | meaning"
        assert row[1], f"the {name} row needs a default"
        assert row[2], f"the {name} row needs a meaning"


def test_no_table_row_names_a_setting_that_does_not_exist() -> None:
    stale = sorted(
        {
            name
            for row in _table_rows()
            for name in VARIABLE.findall(" | ".join(row))
            if not _is_setting(name)
        }
    )
    assert not stale, f"README tables name variables that are no setting: {stale}"


def test_readme_links_the_architecture_picture() -> None:
    assert "(docs/architecture.svg)" in README.read_text(encoding="utf-8")
    assert (ROOT / "docs" / "architecture.svg").is_file()


def _scalar_defaults(model: type[BaseModel], prefix: str) -> dict[str, object]:
    """Variable -> default, for the settings whose default is a number, a boolean or a string."""
    defaults: dict[str, object] = {}
    for field, info in model.model_fields.items():
        name = f"{prefix}{field.upper()}"
        if model is Settings and field == "providers":
            for provider, settings_model in PROVIDER_SETTINGS.items():
                defaults |= _scalar_defaults(settings_model, f"{name}__{provider.upper()}__")
        elif _is_model(info.annotation):
            defaults |= _scalar_defaults(info.annotation, f"{name}__")
        elif isinstance(info.default, bool | int | float | str):
            defaults[name] = info.default
    return defaults


def test_readme_defaults_are_the_code_defaults() -> None:
    # The settings own every default (the classes they configure take them as arguments), so
    # the README's default column is checked against them, number by number.
    documented = _documented()
    compared = 0
    for name, default in _scalar_defaults(Settings, PREFIX).items():
        cell = documented[name][0][1]
        shown = re.match(r"`([^`]*)`", cell)
        if shown is None:
            continue
        text = shown.group(1)
        if isinstance(default, bool):
            assert text == str(default).lower(), f"{name}: README says {cell}, code {default}"
        elif isinstance(default, int | float):
            assert float(text) == default, f"{name}: README says {cell}, code {default}"
        else:
            assert text == default, f"{name}: README says {cell}, code {default!r}"
        compared += 1
    assert compared >= 20, "the README's default cells are no longer `value` cells"
