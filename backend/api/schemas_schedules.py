"""Request and response models of the schedules routes (docs/api.md, "Schedules").

Bodies are strict (no ``"50"`` for 50, no unknown key), like the commands'.
The program itself is free JSON here: the cabinet's own compiler checks it
(``backend.schedules.checks``), so that its reasons, not pydantic's, come back.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.api.schemas import DEVICE_ID_PATTERN, TEXT_PATTERN, Limit, Offset
from backend.api.schemas_commands import CommandState
from backend.commands.build import (
    MAX_SCHEDULE_DELIVERY_S,
    MIN_SCHEDULE_DELIVERY_S,
    SCHEDULE_DELIVERY_S,
)

SITE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # the CHECK of site.site_id
MAX_DEPLOY_CABINETS: Final = 500

EXAMPLE_PROGRAM: Final[dict[str, Any]] = {
    "v": 1,
    "id": "ville-2026-03",
    "tz": {"std": 60, "dst": "eu"},
    "plans": {
        "std": ["dusk", 100, "22:30", 50, "vmid", 30, "dawn-30", 50, "dawn", 0],
        "full": ["dusk", 100, "dawn", 0],
    },
    "holidays": ["01-01", "05-01", "07-14", "12-25"],
    "circuits": {"1": {"week": "std", "holiday": "full"}, "2": {"week": "std"}},
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ScheduleWrite(_Body):
    """A schedule as the planner writes it (POST creates, PUT replaces)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Ville - standard 2026",
                    "description": "50 % from 22:30, 30 % around virtual midnight",
                    "program": EXAMPLE_PROGRAM,
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=100, pattern=TEXT_PATTERN)
    description: str | None = Field(None, max_length=2000, pattern=TEXT_PATTERN)
    program: dict[str, Any] = Field(
        description="the cabinet's program (docs/schedule.md): the args of set_schedule"
    )


class Finding(BaseModel):
    code: str = Field(examples=["dark_every_night"])
    field: str | None = Field(description="where in the program, e.g. circuits.3.week")
    message: str


class ScheduleSummary(BaseModel):
    schedule_id: int
    name: str
    description: str | None
    version: int = Field(description="the current version; every program change adds one")
    updated_by: str
    updated_at: datetime
    cabinets: int = Field(description="cabinets whose last acked set_schedule is this schedule")


class RunningCabinet(BaseModel):
    device_id: str
    version: int = Field(description="the version it runs (may be older than the current)")
    since: datetime = Field(description="its ack of the set_schedule (device clock)")
    deployment_id: int


class SchedulePublic(ScheduleSummary):
    program: dict[str, Any]
    created_by: str
    created_at: datetime
    warnings: list[Finding] = Field(
        description="what the cabinet would run but a planner may not mean (never refused)"
    )
    running_on: list[RunningCabinet]


class SchedulesPublic(BaseModel):
    items: list[ScheduleSummary]
    total: int
    limit: int
    offset: int


class SchedulesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Limit = 50
    offset: Offset = 0


class PreviewQuery(BaseModel):
    """A night (its evening's date) at a place: ``site`` or ``lat`` and ``lon``."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date = Field(description="the night's evening date (YYYY-MM-DD), 2020-2098")
    lat: float | None = Field(None, ge=-90, le=90, description="degrees north")
    lon: float | None = Field(None, ge=-180, le=180, description="degrees east")
    site: str | None = Field(
        None, pattern=SITE_ID_PATTERN, description="a site of the asset register: its centre"
    )
    version: int | None = Field(None, ge=1, le=2_147_483_647, description="default: current")

    @model_validator(mode="after")
    def _place(self) -> Self:
        if not dt.date(2020, 1, 1) <= self.date <= dt.date(2098, 12, 31):
            raise ValueError("date must be within 2020-01-01 .. 2098-12-31 (the cabinet's clock)")
        has_point = self.lat is not None or self.lon is not None
        if self.site is not None and has_point:
            raise ValueError("give either site or lat and lon, not both")
        if self.site is None and (self.lat is None or self.lon is None):
            raise ValueError("give site, or both lat and lon")
        return self


class PreviewStep(BaseModel):
    at: datetime
    local: str = Field(description="HH:MM in the program's local time (its tz)")
    circuit: int
    level: int = Field(description="percent, from this time on")
    source: str = Field(description="'step': the circuit's plan for the night")


class PreviewCircuit(BaseModel):
    circuit: int
    plans: list[str] = Field(description="the plan it runs that night")
    lit_s: int = Field(description="seconds at a level above 0")
    dark_s: int = Field(description="seconds between sunset and sunrise at level 0")
    energy_fraction: float | None = Field(
        description="sum of level x duration / (100 % x sunset-to-sunrise); null: no night"
    )


class PreviewPublic(BaseModel):
    schedule_id: int
    version: int
    date: dt.date
    lat: float
    lon: float
    site_id: str | None
    sunset: datetime
    sunrise: datetime
    dusk: datetime = Field(description="the program's dusk (its alt); dusk steps anchor here")
    dawn: datetime
    night_s: int = Field(description="sunset to sunrise, seconds")
    steps: list[PreviewStep] = Field(description="every level change of the night, in time order")
    circuits: list[PreviewCircuit]
    energy_fraction: float | None = Field(
        description="mean of the circuits' energy fractions (1.0 = full power all night)"
    )
    warnings: list[Finding]


class DeploymentCreate(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"cabinets": ["cab-0042", "cab-0043"]}, {"site": "lyon-7e"}]
        }
    )

    cabinets: (
        Annotated[
            list[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]],
            Field(min_length=1, max_length=MAX_DEPLOY_CABINETS),
        ]
        | None
    ) = Field(None, description="the cabinets' device ids")
    site: str | None = Field(
        None, pattern=SITE_ID_PATTERN, description="every cabinet of this site with a controller"
    )
    expires_in_s: int = Field(
        SCHEDULE_DELIVERY_S,
        ge=MIN_SCHEDULE_DELIVERY_S,
        le=MAX_SCHEDULE_DELIVERY_S,
        description="how long each command may wait for its cabinet (offline, asleep)",
    )

    @model_validator(mode="after")
    def _target(self) -> Self:
        if (self.cabinets is None) == (self.site is None):
            raise ValueError("give exactly one of cabinets (device ids) or site")
        if self.cabinets is not None:
            seen: set[str] = set()
            for device_id in self.cabinets:
                if device_id in seen:
                    raise ValueError(f"cabinet {device_id!r} is listed twice")
                seen.add(device_id)
        return self


class TargetAck(BaseModel):
    at: datetime
    ok: bool
    err_code: str | None
    err_reason: str | None = Field(description="the cabinet's reason (its compiler's, if any)")


class DeploymentTarget(BaseModel):
    device_id: str
    command_id: str
    state: CommandState
    via_gateway: str | None
    published_at: datetime | None
    publish_error: str | None
    ack: TargetAck | None


class DeploymentPublic(BaseModel):
    deployment_id: int
    schedule_id: int
    version: int
    target: str = Field(description="'cabinets' (listed) or 'site'")
    site_id: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    states: dict[str, int] = Field(description="how many cabinets are in each state")
    cabinets: list[DeploymentTarget]


class Skipped(BaseModel):
    cabinet_id: str
    device_id: str | None
    reason: str


class DeploymentIssued(DeploymentPublic):
    skipped: list[Skipped] = Field(description="cabinets of the site that were not sent to")
    warnings: list[Finding] = Field(
        description="what the program does at the cabinets' places over the next year"
    )


class DeploymentsPublic(BaseModel):
    items: list[DeploymentPublic]
    total: int
    limit: int
    offset: int
