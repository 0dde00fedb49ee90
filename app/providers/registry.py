"""Which providers exist (built in or from entry points) and which this gateway serves."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import BaseModel, ValidationError

from app.definitions.loader import DefinitionsInvalid, load_folder
from app.errors import ConfigurationError, UnknownProvider
from app.outbound.upstream import Upstream
from app.providers import benepia, gafapay
from app.providers.base import PointsProvider, ProviderDeps, ProviderPlugin
from app.security.secret_scrub import SecretScrubber, secret_values

ENTRY_POINT_GROUP = "points_gateway.providers"
_NAME = re.compile(r"[a-z0-9_-]{1,64}")
BUILTIN_PLUGINS: tuple[ProviderPlugin, ...] = (benepia.plugin, gafapay.plugin)


def discover_plugins(definitions: Path | None = None) -> dict[str, ProviderPlugin]:
    """Built-in plugins, those installed under the `points_gateway.providers` entry points, and
    the definitions (`*.yaml`) of the folder `definitions` (POINTS_PROVIDERS_DIR)."""
    plugins = {p.name: p for p in BUILTIN_PLUGINS}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        plugin = ep.load()
        if not isinstance(plugin, ProviderPlugin):
            raise ConfigurationError(f"entry point {ep.name!r} is not a ProviderPlugin")
        if plugin.name in plugins and plugins[plugin.name] is not plugin:
            raise ConfigurationError(f"two provider plugins are named {plugin.name!r}")
        plugins[plugin.name] = plugin
    if definitions is not None:
        try:
            declared = load_folder(definitions)
        except DefinitionsInvalid as exc:
            raise ConfigurationError(str(exc)) from None
        for plugin in declared:
            if plugin.name in plugins:
                raise ConfigurationError(
                    f"provider definitions: {plugin.name!r} clashes with a built-in or installed "
                    "provider of that name"
                )
            plugins[plugin.name] = plugin
    return plugins


def _explain(name: str, error: ValidationError) -> list[str]:
    lines = []
    for err in error.errors(include_input=False, include_url=False):
        field = "__".join(str(p) for p in err["loc"]).upper()
        lines.append(f"  POINTS_PROVIDERS__{name.upper()}__{field}: {err['msg']}")
    return lines


def configure(
    enabled: Iterable[str],
    raw_settings: Mapping[str, Mapping[str, object]],
    plugins: Mapping[str, ProviderPlugin],
    *,
    allow_http: bool = False,
) -> dict[str, tuple[ProviderPlugin, BaseModel]]:
    """Validate every enabled provider's settings, reporting all problems at once."""
    problems: list[str] = []
    configured: dict[str, tuple[ProviderPlugin, BaseModel]] = {}
    for name in enabled:
        plugin = plugins.get(name)
        if plugin is None:
            known = ", ".join(sorted(plugins))
            problems.append(
                f"  POINTS_ENABLED_PROVIDERS: unknown provider {name!r} (known: {known})"
            )
            continue
        try:
            configured[name] = (
                plugin,
                plugin.settings_model.model_validate(
                    raw_settings.get(name, {}), context={"allow_http": allow_http}
                ),
            )
        except ValidationError as exc:
            problems.extend(_explain(name, exc))
    for name in raw_settings:
        if name not in configured and name not in plugins:
            problems.append(f"  POINTS_PROVIDERS__{name.upper()}: settings for an unknown provider")
    if problems:
        raise ConfigurationError("invalid provider settings:\n" + "\n".join(problems))
    return configured


UpstreamFactory = Callable[[str, str, float], Upstream]
"""Builds a provider's upstream from (provider name, base_url, timeout)."""


@dataclass(frozen=True, slots=True)
class Served:
    """One provider this gateway serves: how it plugs in, and its adapter."""

    plugin: ProviderPlugin
    adapter: PointsProvider


def _build(
    name: str, plugin: ProviderPlugin, settings: BaseModel, upstream: UpstreamFactory
) -> Served:
    return Served(plugin, plugin.build(settings, ProviderDeps(upstream=partial(upstream, name))))


class Registry:
    """The providers this gateway instance serves, built once in the lifespan."""

    def __init__(
        self, providers: Mapping[str, Served], *, scrubber: SecretScrubber | None = None
    ) -> None:
        self._served = dict(sorted(providers.items()))
        # Every configured provider's settings secrets, masked in any provider's error text.
        self.scrubber = scrubber or SecretScrubber()

    @classmethod
    def build(
        cls, configured: Mapping[str, tuple[ProviderPlugin, BaseModel]], upstream: UpstreamFactory
    ) -> Registry:
        """Build each configured provider's adapter, handing it its own upstream factory."""
        secrets = [value for _, s in configured.values() for value in secret_values(s)]
        served = {
            name: Served(
                plugin, plugin.build(settings, ProviderDeps(upstream=partial(upstream, name)))
            )
            for name, (plugin, settings) in configured.items()
        }
        return cls(served, scrubber=SecretScrubber(secrets))

    def names(self) -> list[str]:
        """Provider names in the stable answer order."""
        return list(self._served)

    def plugin(self, name: str) -> ProviderPlugin:
        """The plugin of a served provider, or UnknownProvider."""
        return self._get(name).plugin

    def adapter(self, name: str) -> PointsProvider:
        """The adapter of a served provider, or UnknownProvider."""
        return self._get(name).adapter

    def _get(self, name: str) -> Served:
        served = self._served.get(name)
        if served is None:
            known = ", ".join(self._served) or "none"
            # Only a well-formed name is echoed back: it is caller input.
            shown = repr(name) if _NAME.fullmatch(name) else "by that name"
            raise UnknownProvider(f"No provider {shown} (configured: {known}).")
        return served

    async def aclose(self) -> None:
        """Close every adapter's connections."""
        for served in reversed(self._served.values()):
            await served.adapter.aclose()
