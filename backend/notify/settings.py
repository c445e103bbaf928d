"""SMTP settings of the notifier: ``LUMEAU_SMTP_*`` variables.

Read like ``backend.settings``: the environment over ``<run dir>/stack.env``.
Without ``LUMEAU_SMTP_HOST`` e-mail channels cannot send (their deliveries
wait and retry, so configuring SMTP within the retry window still delivers).
There is no default password, and a login is refused without STARTTLS: it
would send the password in clear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.settings import run_dir_from_env


class SmtpSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LUMEAU_SMTP_", extra="ignore", populate_by_name=True
    )

    host: str | None = Field(None, description="SMTP server; unset: no e-mail")
    port: int = Field(587, ge=1, le=65535, description="SMTP port (587: submission)")
    sender: str | None = Field(
        None,
        validation_alias="LUMEAU_SMTP_FROM",
        description="From address, e.g. lumeau@city.example",
        pattern=r"^[^\s@<>,;\"]+@[^\s@<>,;\"]+$",
    )
    username: str | None = Field(None, description="login name; unset: no login")
    password: SecretStr | None = Field(None, description="login password (no default)")
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS")
    timeout_s: float = Field(30.0, gt=0, le=300, description="per network operation")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.host is not None and self.sender is None:
            raise ValueError("LUMEAU_SMTP_FROM is required when LUMEAU_SMTP_HOST is set")
        if self.username is not None:
            if self.password is None or not self.password.get_secret_value():
                raise ValueError("LUMEAU_SMTP_PASSWORD is required with LUMEAU_SMTP_USERNAME")
            if not self.starttls:
                raise ValueError(
                    "LUMEAU_SMTP_USERNAME without LUMEAU_SMTP_STARTTLS would send the"
                    " password in clear"
                )
        return self

    @property
    def configured(self) -> bool:
        return self.host is not None


def load_smtp_settings(run_dir: Path | None = None) -> SmtpSettings:
    folder = run_dir if run_dir is not None else run_dir_from_env()
    env_file = folder / "stack.env"
    return SmtpSettings(_env_file=env_file if env_file.exists() else None)  # type: ignore[call-arg]
