"""The one settings class of the Lumeau services, read from the environment.

Every variable is ``LUMEAU_<FIELD>``. ``lumeau services up`` writes the
development values (with generated credentials) to ``<run dir>/stack.env``;
``get_settings`` reads that file under the real environment, which wins.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LUMEAU_"
DEFAULT_RUN_DIR = Path(".run")

# Values that show up in tutorials and leaked configs; a service refuses them.
_PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "password", "secret", "postgres", "admin", "lumeau", "test"}
)


def run_dir_from_env() -> Path:
    """The run folder: ``LUMEAU_RUN_DIR`` or ``.run`` in the working directory."""
    return Path(os.environ.get(ENV_PREFIX + "RUN_DIR", str(DEFAULT_RUN_DIR))).resolve()


class Settings(BaseSettings):
    """Configuration shared by ingest, the gateway, the API and the simulators."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    run_dir: Path = Field(default=DEFAULT_RUN_DIR, description="Run folder (data, logs, secrets)")
    database_url: SecretStr = Field(description="libpq connection URI of the TimescaleDB database")
    mqtt_host: str = Field(default="127.0.0.1", description="Backend broker host")
    mqtt_port: int = Field(default=1883, ge=1, le=65535, description="Backend broker port")
    mqtt_username: str = Field(description="Backend broker user of this service")
    mqtt_password: SecretStr = Field(description="Backend broker password of this service")
    mqtt_tls_ca: Path | None = Field(
        default=None, description="CA certificate; when set, the broker is reached over TLS"
    )
    log_level: str = Field(default="INFO", description="Python logging level")

    @field_validator("mqtt_password")
    @classmethod
    def _refuse_placeholder_password(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value().strip().lower() in _PLACEHOLDER_SECRETS:
            raise ValueError("placeholder password refused: generate one (lumeau services up does)")
        return value

    @field_validator("database_url")
    @classmethod
    def _refuse_placeholder_db_password(cls, value: SecretStr) -> SecretStr:
        from urllib.parse import urlsplit

        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("database_url must be a postgresql:// URI")
        if parts.password is not None and parts.password.lower() in _PLACEHOLDER_SECRETS:
            raise ValueError("placeholder database password refused")
        return value


def load_settings(run_dir: Path | None = None) -> Settings:
    """Read settings from the environment over ``<run dir>/stack.env``."""
    folder = run_dir if run_dir is not None else run_dir_from_env()
    env_file = folder / "stack.env"
    return Settings(_env_file=env_file if env_file.exists() else None)  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (never at import)."""
    return load_settings()
