"""Which programs exist (built in or from entry points) and which are configured."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

from pydantic import BaseModel, ValidationError

from app.errors import UnknownProvider
from app.providers import benepia, gafapay
from app.providers.base import ConfigurationError, PointsProvider, ProviderDeps, ProviderPlugin
from app.security.secret_scrub import SecretScrubber, secret_values

ENTRY_POINT_GROUP = "points_gateway.providers"
_NAME = re.compile(r"[a-z0-9_-]{1,64}")
BUILTIN_PLUGINS: tuple[ProviderPlugin, ...] = (benepia.plugin, gafapay.plugin)


def discover_plugins() -> dict[str, ProviderPlugin]:
    """Built-in plugins plus those installed under the `points_gateway.providers` entry points."""
    plugins = {p.name: p for p in BUILTIN_PLUGINS}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        plugin = ep.load()
        if not isinstance(plugin, ProviderPlugin):
            raise ConfigurationError(f"entry point {ep.name!r} is not a ProviderPlugin")
        if plugin.name in plugins and plugins[plugin.name] is not plugin:
            raise ConfigurationError(f"two provider plugins are named {plugin.name!r}")
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


class Registry:
    """The providers this gateway instance serves, built once in the lifespan."""

    def __init__(
        self,
        providers: Mapping[str, tuple[ProviderPlugin, PointsProvider]],
        *,
        scrubber: SecretScrubber | None = None,
    ) -> None:
        self._entries = dict(sorted(providers.items()))
        # Every configured provider's settings secrets, masked in any provider's error text.
        self.scrubber = scrubber or SecretScrubber()

    @classmethod
    def build(
        cls, configured: Mapping[str, tuple[ProviderPlugin, BaseModel]], deps: ProviderDeps
    ) -> Registry:
        """Build each configured provider's adapter."""
        secrets = [value for _, s in configured.values() for value in secret_values(s)]
        return cls(
            {n: (p, p.build(s, deps)) for n, (p, s) in configured.items()},
            scrubber=SecretScrubber(secrets),
        )

    def names(self) -> list[str]:
        """Provider names in the stable answer order."""
        return list(self._entries)

    def require(self, name: str) -> tuple[ProviderPlugin, PointsProvider]:
        """The plugin and adapter for `name`, or UnknownProvider."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            # Only a well-formed name is echoed back: it is caller input.
            shown = repr(name) if _NAME.fullmatch(name) else "by that name"
            raise UnknownProvider(f"No provider {shown} (configured: {known}).")
        return entry

    async def aclose(self) -> None:
        """Close every adapter's connections."""
        for _, provider in reversed(self._entries.values()):
            await provider.aclose()
