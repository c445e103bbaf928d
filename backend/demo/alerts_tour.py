"""The town's alerts, as the night shift meets them: through the API, and by webhook.

The alert engine (``lumeau alerts run``) and the notifier (``lumeau notify
run``) run as the demo's children from the start. Here the demo waits until
the engine has raised an alert for each fault the town's scenario injected
(``town.TROUBLE``), shows them as the operator's API answers them,
acknowledges and assigns one, shows its history, and lists the webhook
notifications the notifier delivered, each checked against its signature.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from .tables import table
from .town import TROUBLE, Trouble
from .webhook_sink import WebhookSink

ALERT_WAIT_S = 120.0
ALL_ALERTS = "/api/v1/alerts?state=open&state=acknowledged&state=resolved&limit=200"


def _found(trouble: Trouble, alerts: list[dict[str, Any]]) -> dict[str, Any] | None:
    for alert in alerts:
        if (
            alert["rule"] == trouble.rule
            and alert["device_id"] == trouble.device
            and alert["channel"] == trouble.channel
        ):
            return alert
    return None


def wait_for_alerts(
    get: Callable[[str, str], httpx.Response], on_wait: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """The live alerts once every expected one is there (or the wait is over)."""
    deadline = time.monotonic() + ALERT_WAIT_S
    alerts: list[dict[str, Any]] = []
    while True:
        # resolved ones too: the stuck contactor's day burning clears every evening
        response = get("operator", ALL_ALERTS)
        if response.status_code == 200:
            alerts = response.json()["items"]
            if all(_found(t, alerts) for t in TROUBLE):
                return alerts
        if time.monotonic() > deadline:
            return alerts
        if on_wait is not None:
            on_wait()
        time.sleep(1.0)


def show_alerts(
    client: httpx.Client,
    tokens: dict[str, str],
    users: dict[str, str],
    sink: WebhookSink,
) -> int:
    def get(role: str, target: str) -> httpx.Response:
        return client.get(target, headers={"Authorization": f"Bearer {tokens[role]}"})

    def post(role: str, target: str, body: dict[str, Any]) -> httpx.Response:
        return client.post(target, json=body, headers={"Authorization": f"Bearer {tokens[role]}"})

    started = time.monotonic()
    alerts = wait_for_alerts(get)
    waited = time.monotonic() - started
    table(
        f"Alerts (API GET {ALL_ALERTS} as {users['operator']}, after {waited:.0f} s of"
        " `lumeau alerts run`)",
        ("id", "rule", "device", "ch", "site", "severity", "state", "since UTC", "title"),
        [
            (
                a["alert_id"],
                a["rule"],
                a["device_id"],
                a["channel"],
                a["site"],
                a["severity"],
                a["state"],
                str(a["started_at"])[:16].replace("T", " "),
                str(a["title"])[:60],
            )
            for a in alerts
        ],
    )
    rows, missing = [], 0
    for trouble in TROUBLE:
        alert = _found(trouble, alerts)
        missing += alert is None
        rows.append(
            (
                trouble.device,
                trouble.what,
                f"{trouble.rule}" + (f" ch {trouble.channel}" if trouble.channel else ""),
                f"alert {alert['alert_id']}" if alert else "MISSING",
            )
        )
    table(
        "The scenario's faults (ground truth) and the alert raised for each",
        ("device", "what happened", "expected", "raised"),
        rows,
    )
    if missing:
        print(f"\n{missing} expected alert(s) not raised; see {ALERT_WAIT_S:.0f} s wait above.")
        return 1

    door = _found(TROUBLE[0], alerts)
    assert door is not None
    target = f"/api/v1/alerts/{door['alert_id']}"
    if door["state"] == "open":
        ack = post("operator", f"{target}/acknowledge", {"note": "calling the on-duty crew"})
        print(f"\nAPI POST {target}/acknowledge as {users['operator']}: {ack.status_code}")
        assigned = post(
            "operator",
            f"{target}/assign",
            {"assignee": users["technician"], "note": "nearest technician tonight"},
        )
        print(f"API POST {target}/assign as {users['operator']}: {assigned.status_code}")
        if ack.status_code != 200 or assigned.status_code != 200:
            return 1
    detail = get("operator", target)
    history = detail.json().get("history", []) if detail.status_code == 200 else []
    table(
        f"API GET {target}: the door alert's history (append-only)",
        ("at UTC", "action", "actor", "from", "to", "note"),
        [
            (
                str(h["at"])[11:19],
                h["action"],
                h["actor"],
                h["from_state"],
                h["to_state"],
                h["note"],
            )
            for h in history
        ],
    )

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(sink.snapshot()) < 1:
        time.sleep(0.5)
    time.sleep(2.0)  # the acknowledgement's notification, if the channel wants it
    received = sink.snapshot()
    table(
        f"Webhook notifications received at {sink.url} (from `lumeau notify run`)",
        ("event", "alert", "rule", "device", "severity", "signature"),
        [
            (
                r.event,
                r.body.get("alert", {}).get("alert_id"),
                r.body.get("alert", {}).get("rule"),
                r.body.get("alert", {}).get("device_id"),
                r.body.get("alert", {}).get("severity"),
                "valid" if r.signed else "INVALID",
            )
            for r in received
        ],
    )
    if not received:
        print(
            "  (alerts still live from an earlier run are not notified again: one alert per"
            " condition, and the channel hears only what happens after it was set up)"
        )
    return 0 if all(r.signed for r in received) else 1
