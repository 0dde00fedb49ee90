"""Settings from the environment: prefix POINTS_, nested sections joined with "__"."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OutboundSettings(BaseModel):
    """The outbound HTTP clients (POINTS_OUTBOUND__*)."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout: float = Field(default=2.0, gt=0, le=60)
    max_connections: int = Field(default=100, ge=1, le=10_000)
    keepalive_expiry: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)


class Settings(BaseSettings):
    """Everything the gateway reads at start; invalid values stop it with a clear message."""

    model_config = SettingsConfigDict(
        env_prefix="POINTS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    enabled_providers: Annotated[list[str], NoDecode] = ["benepia", "gafapay"]
    # Raw until each provider validates its own section (secrets become SecretStr there).
    providers: dict[str, dict[str, object]] = Field(default={}, repr=False)
    request_deadline: float = Field(default=5.0, gt=0, le=120)
    data_dir: Path = Path("data")
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite in data_dir."
    )
    database_timeout: float = Field(default=3.0, gt=0, le=60)
    secret_keys: SecretStr | None = None
    sandbox: bool = False
    outbound: OutboundSettings = OutboundSettings()
    log_level: str = Field(default="info", pattern="^(debug|info|warning|error)$")

    @field_validator("enabled_providers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    def database_url_value(self) -> str:
        """The database URL to connect to (it may hold a password: never log it)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.data_dir / 'points-gateway.db'}"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
