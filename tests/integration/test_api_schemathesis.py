"""Property-based requests from the API's own OpenAPI schema: never a 5xx.

Schemathesis reads ``/api/v1/openapi.json`` from the application in process
(ASGI, no socket) and sends generated requests, valid and invalid, with an
admin token, against a migrated scratch database. The only check is
``not_a_server_error``: whatever comes in, the answer is a 2xx or a 4xx.
Examples are bounded so the module stays well under a minute.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from backend.api.app import create_app
from backend.api.permissions import Role
from tests.integration.api_kit import RecordingBroker, issue, migrated_database, settings_for

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 package and warns when it finds httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

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
    seed = "INSERT INTO device (device_id, role, site) VALUES ('cab-0001', 'cabinet', 'nord')"
    with migrated_database(stack, "t_fuzz", seed) as url:
        app = create_app(
            settings_for(url, "api-fuzz"),
            broker_admin=RecordingBroker(),
            command_publisher=RecordingPublisher(),
        )
        yield Fuzzed(url, schemathesis.openapi.from_asgi("/api/v1/openapi.json", app))


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) for every operation of the schema.

    Negative cases (inputs the schema forbids) only where there is an input.
    """
    app = create_app(settings_for("postgresql://nobody@127.0.0.1:1/none", "api-fuzz"))
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
    token = issue(fuzzed.url, "fuzz-admin", Role.ADMIN, label="schemathesis").token
    headers = {"Authorization": f"Bearer {token}"}
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
