"""Settings from the environment: prefix POINTS_, nested sections joined with "__"."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.security.principal import Scope


class OutboundSettings(BaseModel):
    """The outbound HTTP clients (POINTS_OUTBOUND__*)."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout: float = Field(default=2.0, gt=0, le=60)
    max_connections: int = Field(default=100, ge=1, le=10_000)
    keepalive_expiry: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)


class ResilienceSettings(BaseModel):
    """Retries, circuit breakers, bulkheads and load shedding (POINTS_RESILIENCE__*)."""

    model_config = ConfigDict(extra="forbid")

    retry_attempts: int = Field(
        default=2, ge=1, le=5, description="Attempts per call (2 = 1 retry)."
    )
    retry_wait_initial: float = Field(default=0.05, ge=0, le=10)
    retry_wait_max: float = Field(default=0.5, ge=0, le=30)
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    breaker_consecutive_failures: int = Field(default=5, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_window: float = Field(default=30.0, gt=0)
    breaker_min_calls: int = Field(default=10, ge=1)
    breaker_open_seconds: float = Field(default=10.0, gt=0)
    provider_max_in_flight: int = Field(default=200, ge=1)
    max_in_flight_requests: int = Field(default=1000, ge=1)


class CacheSettings(BaseModel):
    """The balance cache (POINTS_CACHE__*)."""

    model_config = ConfigDict(extra="forbid")

    ttl: float = Field(default=30.0, ge=0, le=86_400, description="Seconds a balance is fresh.")
    provider_ttl: dict[str, float] = Field(default={}, description="Per-provider TTL overrides.")
    stale_if_error: float = Field(default=600.0, ge=0, le=86_400)
    max_entries: int = Field(default=100_000, ge=1)

    def ttl_for(self, provider: str, default: float | None = None) -> float:
        """The TTL of one provider's balances (`default`: the provider's own, if it has one)."""
        return self.provider_ttl.get(provider, self.ttl if default is None else default)


class AccountCacheSettings(BaseModel):
    """Linked accounts held in each process (POINTS_ACCOUNT_CACHE__*), PostgreSQL only."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Hold users' linked accounts in process, dropped on every change any replica "
        "makes (PostgreSQL notifications); SQLite never holds them.",
    )
    max_entries: int = Field(default=20_000, ge=1, le=10_000_000)
    ttl: float = Field(
        default=300.0, gt=0, le=86_400, description="Seconds an entry is held at most."
    )


class ApiKeySetting(BaseModel):
    """One service API key, held only as the SHA-256 of its value."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    scopes: list[Scope]


class AuthSettings(BaseModel):
    """Caller authentication (POINTS_AUTH__*): on unless mode is `disabled`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["required", "disabled"] = "required"
    jwt_secret: SecretStr | None = Field(default=None, description="HS256 shared secret.")
    jwt_public_key: str | None = Field(default=None, description="PEM key for RS256/ES256.")
    jwks_url: str | None = None
    jwt_algorithms: list[Literal["HS256", "RS256", "ES256"]] | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = Field(default=30.0, ge=0, le=300)
    service_claim: str = "gateway_service"
    api_keys: list[ApiKeySetting] = []

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("an HS256 secret must be at least 32 bytes")
        return value

    def algorithms(self) -> frozenset[str]:
        """The accepted algorithms: asked for, and each backed by a configured key."""
        possible = set()
        if self.jwt_secret is not None:
            possible.add("HS256")
        if self.jwt_public_key or self.jwks_url:
            possible |= {"RS256", "ES256"}
        asked = set(self.jwt_algorithms) if self.jwt_algorithms is not None else possible
        return frozenset(asked & possible)


class LimitSettings(BaseModel):
    """Rate limits and request caps (POINTS_LIMITS__*)."""

    model_config = ConfigDict(extra="forbid")

    rate: str | None = Field(
        default="600/minute", description="Per principal (per client address when anonymous)."
    )
    failed_auth_rate: str | None = Field(
        default="30/minute",
        description="Failed authentications per client address; beyond it 429, nothing checked.",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default=[], description="Peers (IPs or CIDRs) whose X-Forwarded-For names the client."
    )
    max_body_bytes: int = Field(default=65_536, ge=1024)
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    header_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds a request's headers may take to arrive."
    )
    cors_origins: list[str] = Field(
        default=[], description="Browser origins allowed; none by default."
    )


class Settings(BaseSettings):
    """Everything the gateway reads at start; invalid values stop it with a clear message."""

    model_config = SettingsConfigDict(
        env_prefix="POINTS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    enabled_providers: Annotated[list[str], NoDecode] = ["benepia", "gafapay"]
    providers_dir: Path | None = Field(
        default=None,
        description="A folder of provider definitions (*.yaml); each is served when its name "
        "is in POINTS_ENABLED_PROVIDERS.",
    )
    # Raw until each provider validates its own section (secrets become SecretStr there).
    providers: dict[str, dict[str, object]] = Field(default={}, repr=False)
    request_deadline: float = Field(default=5.0, gt=0, le=120)
    request_deadline_max: float = Field(
        default=30.0, gt=0, le=300, description="Cap on a client's Request-Timeout header."
    )
    redis_url: SecretStr | None = None
    resilience: ResilienceSettings = ResilienceSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    cache: CacheSettings = CacheSettings()
    account_cache: AccountCacheSettings = AccountCacheSettings()
    data_dir: Path = Path("data")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite in data_dir."
    )
    database_timeout: float = Field(default=3.0, gt=0, le=60)
    secret_keys: SecretStr | None = None
    sandbox: bool = False
    outbound: OutboundSettings = OutboundSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = Field(
        default="json", description="`serve` log lines: JSON (one object a line) or console text."
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="When set, /metrics needs `Authorization: Bearer <token>`."
    )
    docs_enabled: bool = Field(
        default=True,
        description="Serve /docs (Swagger UI) and /redoc (ReDoc) with their assets; "
        "/openapi.json is served either way.",
    )
    shutdown_drain: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Seconds `serve` keeps serving after SIGTERM, /readyz failing, then closes.",
    )
    shutdown_grace: int = Field(
        default=20, ge=1, le=3600, description="Seconds in-flight requests get after SIGTERM."
    )

    @field_validator("enabled_providers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the metrics token must be at least 16 characters")
        return value

    def database_url_value(self) -> str:
        """The database URL to connect to (it may hold a password: never log it)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.data_dir / 'points-gateway.db'}"


def explain(exc: ValidationError) -> list[str]:
    """Each failed setting as `POINTS_NAME: rule`, never with the value (it may be a secret)."""
    return [
        f"POINTS_{'__'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    ]


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
