"""The two small languages of definitions: paths into an answer, templates for requests."""

from __future__ import annotations

import pytest

from app.definitions.paths import MISSING, Path, PathError
from app.definitions.templates import Template, TemplateError

ANSWER = {"data": {"points": 7, "items": [{"v": 1}, {"v": 2}], "odd-key_1": True}, "list": [[3]]}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("data.points", 7),
        ("data.items[1].v", 2),
        ("data.odd-key_1", True),
        ("list[0][0]", 3),
        ("data.items[2]", MISSING),
        ("data.points.more", MISSING),
        ("data.items.v", MISSING),
        ("nothing", MISSING),
        ("list[0][0][0]", MISSING),
    ],
)
def test_paths_find_a_value_or_nothing(text: str, found: object) -> None:
    assert Path.parse(text).find(ANSWER) == found


@pytest.mark.parametrize("text", ["", ".a", "a.", "a..b", "a[x]", "a b", "[0]x", "a.[0]", "a[-1]"])
def test_malformed_paths_are_refused(text: str) -> None:
    with pytest.raises(PathError):
        Path.parse(text)


KNOWN = {"account.member_id", "account.nickname", "settings.key", "request_id", "token"}


def test_templates_render_names_escapes_and_fallbacks() -> None:
    template = Template.parse(
        "{{literal}} /m/{account.member_id}?k={account.nickname|settings.key}", KNOWN
    )
    values = {"account.member_id": "a/b c", "settings.key": "K"}
    assert template.render(values) == "{literal} /m/a/b c?k=K"
    assert template.render(values, lambda v: v.replace("/", "%2F")) == "{literal} /m/a%2Fb c?k=K"
    assert template.names == {"account.member_id", "account.nickname", "settings.key"}


def test_an_empty_first_name_falls_through_and_no_value_renders_empty() -> None:
    template = Template.parse("[{account.nickname|settings.key}]", KNOWN)
    assert template.render({"account.nickname": "", "settings.key": "K"}) == "[K]"
    assert template.render({}) == "[]"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{account.pin}", "names nothing"),
        ("{secrets.key}", "is not a template name"),
        ("{ }", "is not a template name"),
        ("a { b", "unmatched"),
        ("a } b", "unmatched"),
    ],
)
def test_templates_naming_nothing_are_refused(text: str, why: str) -> None:
    with pytest.raises(TemplateError, match=why):
        Template.parse(text, KNOWN)
