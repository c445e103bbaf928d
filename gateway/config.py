"""The gateway's one settings class: a TOML file, overridden by ``LUMEAU_GATEWAY_*``.

Read once by ``load_settings(path)`` (never at import). There are no secret
defaults: a broker without a password is reached anonymously (loopback test
brokers), and a placeholder password is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge import protocol

ENV_PREFIX = "LUMEAU_GATEWAY_"

# Values found in tutorials and leaked configs.
_PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "password", "secret", "admin", "lumeau", "test", "gateway"}
)


class GatewaySettings(BaseSettings):
    """Everything one gateway process needs; see docs/gateway.md for each field."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    gateway_id: str = Field(description="Gateway id: its MQTT user on the backend broker")
    fw: str = Field(default="0.1.0", description="Version reported in the gateway's status")

    # Site broker (devices publish here).
    site_host: str = "127.0.0.1"
    site_port: int = Field(default=1883, ge=1, le=65535)
    site_username: str | None = None
    site_password: SecretStr | None = None
    site_tls_ca: Path | None = Field(default=None, description="CA file; set = TLS, verified")
    site_client_id: str | None = Field(default=None, description="default lumeau-gw-<id>-site")
    site_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    site_receive_maximum: int = Field(default=1000, ge=1, le=65535)

    # Backend broker (batches go here).
    backend_host: str = "127.0.0.1"
    backend_port: int = Field(default=8883, ge=1, le=65535)
    backend_username: str | None = Field(default=None, description="default: gateway_id")
    backend_password: SecretStr | None = None
    backend_tls_ca: Path | None = Field(default=None, description="CA file; set = TLS, verified")
    backend_client_id: str | None = Field(default=None, description="default lumeau-gw-<id>")
    backend_session_expiry_s: int = Field(default=24 * 3600, ge=0)
    downlink_device_filter: str = Field(
        default="lumeau/v1/dev/+/down/cmd",
        description="Backend topic filter for device commands (per device when allowed_devices)",
    )

    # Durable queue.
    data_dir: Path = Field(default=Path("gateway-data"), description="SQLite queue lives here")
    sqlite_synchronous: Literal["full", "normal"] = "full"
    queue_max_rows: int = Field(default=1_000_000, ge=10)
    queue_max_bytes: int = Field(default=512 * 1024 * 1024, ge=64 * 1024)
    dead_letter_max_rows: int = Field(default=100_000, ge=10)

    # Batching and the in-flight window towards the backend.
    batch_max_msgs: int = Field(default=500, ge=1, le=protocol.MAX_BATCH_MSGS)
    batch_max_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=protocol.MAX_BATCH_PAYLOAD)
    batch_linger_ms: int = Field(default=50, ge=0, le=60_000)
    max_inflight_batches: int = Field(default=8, ge=1, le=1000)

    # Input policy.
    allowed_devices: list[str] | None = Field(
        default=None, description="Device allow-list; None accepts every device id"
    )

    # Reconnection.
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    keepalive_s: int = Field(default=30, ge=5)

    # Commands routed to devices.
    command_retry_s: float = Field(default=10.0, gt=0)

    # Operations.
    http_port: int | None = Field(default=9108, ge=0, le=65535, description="None: off")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("gateway_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        protocol.gateway_topic(value, "up", "status")  # raises on a bad id
        return value

    @field_validator("allowed_devices")
    @classmethod
    def _check_devices(cls, value: list[str] | None) -> list[str] | None:
        for dev in value or ():
            protocol.uplink_topic(dev, "status")
        return value

    @field_validator("site_password", "backend_password")
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in _PLACEHOLDER_SECRETS:
            raise ValueError("placeholder password refused: generate a real one")
        return value

    @model_validator(mode="after")
    def _check_backoff(self) -> GatewaySettings:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        return self

    @property
    def queue_path(self) -> Path:
        return self.data_dir / "queue.sqlite3"

    @property
    def site_id(self) -> str:
        return self.site_client_id or f"lumeau-gw-{self.gateway_id}-site"

    @property
    def backend_id(self) -> str:
        return self.backend_client_id or f"lumeau-gw-{self.gateway_id}"

    @property
    def backend_user(self) -> str:
        return self.backend_username or self.gateway_id


def load_settings(path: Path | None = None, **overrides: object) -> GatewaySettings:
    """Settings from the TOML file ``path`` (if any) under the environment.

    ``overrides`` (tests) win over both.
    """
    if path is None:
        return GatewaySettings(**overrides)  # type: ignore[arg-type]
    if not path.is_file():
        raise FileNotFoundError(f"gateway config file not found: {path}")

    class _FromFile(GatewaySettings):
        model_config = SettingsConfigDict(toml_file=path)

    return _FromFile(**overrides)  # type: ignore[arg-type]
