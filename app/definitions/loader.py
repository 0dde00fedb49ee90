"""Reading definition files: every problem named by file, line and key, all at once.

`load_folder` reads every `*.yaml` of a folder and returns the plugins, or raises
`DefinitionsInvalid` listing each problem as `FILE:LINE: KEY: what is wrong`; `points-gateway
providers check` prints the same lines, and the gateway refuses to start on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

from app.definitions.compiled import DefinitionError, Loc, compile_definition
from app.definitions.format import Definition
from app.definitions.plugin import plugin_of
from app.providers import ProviderPlugin

MAX_FILE_BYTES = 256 * 1024


class DefinitionsInvalid(ValueError):
    """Definitions that cannot serve; `problems` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid provider definitions:\n  " + "\n  ".join(problems))
        self.problems = problems


def _locate(root: yaml.Node | None, loc: Loc) -> tuple[int, str]:
    """The 1-based line of the deepest node `loc` reaches, and the keys that reach it.

    Steps that are not in the file (pydantic names a union's members in its locations, such as
    `session` or `constrained-int`) are left out of both.
    """
    node, line = root, (root.start_mark.line + 1 if root is not None else 1)
    keys: list[str] = []
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if found is None:
                continue
            line, node = found[0].start_mark.line + 1, found[1]
            keys.append(str(step))
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                break
            node = node.value[step]
            line = node.start_mark.line + 1
            keys.append(str(step))
    return line, ".".join(keys) or "(top)"


def _problems(
    name: str, root: yaml.Node | None, errors: Iterable[tuple[Loc, str, bool]]
) -> list[str]:
    """One line per place, its messages joined (a union's members each say what they wanted).

    A missing key is named though it is not in the file: at the line of its parent.
    """
    found: dict[tuple[int, str], list[str]] = {}
    for loc, message, missing in errors:
        line, key = _locate(root, loc[:-1] if missing else loc)
        if missing:
            key = f"{key}.{loc[-1]}" if key != "(top)" else str(loc[-1])
        messages = found.setdefault((line, key), [])
        if message not in messages:
            messages.append(message)
    return [f"{name}:{line}: {key}: {'; or '.join(msgs)}" for (line, key), msgs in found.items()]


def read_definition(path: Path) -> ProviderPlugin:
    """One definition file as a plugin; DefinitionsInvalid with its problems otherwise."""
    name = str(path)
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise DefinitionsInvalid([f"{name}:1: the file is over {MAX_FILE_BYTES} bytes"])
        text = raw.decode("utf-8")
        # Anchors and aliases are refused: a few lines of them can expand to gigabytes.
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, yaml.SafeLoader)):
            raise DefinitionsInvalid([f"{name}: anchors and aliases (*name) are not supported"])
        root = yaml.compose(text, yaml.SafeLoader)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise DefinitionsInvalid([f"{name}: cannot be read ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise DefinitionsInvalid([f"{name}: is not UTF-8 text"]) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise DefinitionsInvalid([f"{name}:{line}: not YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise DefinitionsInvalid([f"{name}: not YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise DefinitionsInvalid(
            [f"{name}:1: a definition is a mapping of keys (name, request, ...)"]
        )
    try:
        definition = Definition.model_validate(data)
        return plugin_of(compile_definition(definition))
    except ValidationError as exc:
        errors = [
            (err["loc"], err["msg"], err["type"] == "missing")
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise DefinitionsInvalid(_problems(name, root, errors)) from None
    except DefinitionError as exc:
        problems = [(loc, message, False) for loc, message in exc.problems]
        raise DefinitionsInvalid(_problems(name, root, problems)) from None


def load_folder(folder: Path) -> list[ProviderPlugin]:
    """Every `*.yaml` of `folder` as a plugin (sorted by file name); all problems at once."""
    if not folder.is_dir():
        raise DefinitionsInvalid([f"{folder}: no such folder (POINTS_PROVIDERS_DIR)"])
    plugins: list[ProviderPlugin] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            plugin = read_definition(path)
        except DefinitionsInvalid as exc:
            problems.extend(exc.problems)
            continue
        if plugin.name in seen:
            problems.append(
                f"{path}:1: name: {plugin.name!r} is also defined in {seen[plugin.name]}"
            )
            continue
        seen[plugin.name] = path
        plugins.append(plugin)
    if problems:
        raise DefinitionsInvalid(problems)
    return plugins


def definition_schema() -> str:
    """The JSON Schema of the definition format (editors validate YAML with it)."""
    schema = Definition.model_json_schema(by_alias=True)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://points-gateway.example/schemas/provider-definition.schema.json",
        **schema,
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
