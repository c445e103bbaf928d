"""Property-based requests from the API's own OpenAPI schema: never a 5xx.

Schemathesis reads ``/api/v1/openapi.json`` from the application in process
(ASGI, no socket) and sends generated requests, valid and invalid, with an
admin token, against a migrated scratch database. The only check is
``not_a_server_error``: whatever comes in, the answer is a 2xx or a 4xx.
Examples are bounded so the module stays well under a minute.
"""

from __future__ import annotations

import asyncio
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from psycopg.rows import dict_row

from backend.api.app import create_app
from backend.api.permissions import Role
from backend.api.queries.auth import issue_token
from backend.settings import Settings
from backend.storage import migrate
from backend.storage.scratch import scratch_database

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package and warns when it finds httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

if TYPE_CHECKING:
    from backend.devstack import Stack

pytestmark = [
    pytest.mark.services,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"),
    # schemathesis' own negative-mode strategies call `random` inside Hypothesis
    # strategies, which Hypothesis deprecates; it is theirs, not this code's,
    # and appears only on some draws.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

MAX_EXAMPLES = 20  # requests per operation and mode


async def _admin_token(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        issued = await issue_token(
            conn,
            user="fuzz-admin",
            role=Role.ADMIN,
            expires_in_days=1,
            label="schemathesis",
            actor="test-suite",
            actor_token_id=None,
        )
    return issued.token


class RecordingBroker:
    """A ``BrokerAdmin`` that only records: generated devices never reach a broker."""

    def set_password(self, username: str, password: str) -> None:
        pass


class RecordingPublisher:
    """A ``CommandPublisher`` that only records: fuzzed commands never reach a device.

    The real publisher is tested against Mosquitto in test_api_commands.py;
    here the API's answers to generated requests are what is under test.
    """

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, expiry_s: int) -> None:
        self.published.append((topic, payload, expiry_s))


@dataclass(frozen=True)
class Fuzzed:
    url: str = field(repr=False)  # holds a password
    schema: Any = field(repr=False)


@pytest.fixture(scope="module")
def fuzzed(stack: object) -> Iterator[Fuzzed]:
    services = cast("Stack", stack)
    with scratch_database(services.admin_database_url, services.database_url, "t_fuzz") as url:
        migrate(url)
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO device (device_id, role, site) VALUES ('cab-0001', 'cabinet', 'nord')"
            )
        app = create_app(
            Settings(
                database_url=url,  # type: ignore[arg-type]
                mqtt_username="api-fuzz",
                mqtt_password=secrets.token_hex(12),  # type: ignore[arg-type]
            ),
            broker_admin=RecordingBroker(),
            command_publisher=RecordingPublisher(),
        )
        yield Fuzzed(url, schemathesis.openapi.from_asgi("/api/v1/openapi.json", app))


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every operation of the schema.

    Negative cases (inputs the schema forbids) only where there is an input.
    """
    app = create_app(
        Settings(
            database_url="postgresql://nobody@127.0.0.1:1/none",  # type: ignore[arg-type]
            mqtt_username="api-fuzz",
            mqtt_password="not-used-here",  # type: ignore[arg-type]
        )
    )
    cases = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            cases.append((method.upper(), path, GenerationMode.POSITIVE))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(("method", "path", "mode"), _cases(), ids=str)
def test_no_server_errors(fuzzed: Fuzzed, method: str, path: str, mode: GenerationMode) -> None:
    # A fresh admin token per operation: a generated DELETE may revoke it.
    headers = {"Authorization": f"Bearer {asyncio.run(_admin_token(fuzzed.url))}"}
    operation = fuzzed.schema[path][method]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    check()
