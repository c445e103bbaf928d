"""What the city's staff set up before the night: the asset register and an alert channel.

A planner uploads the sample town (``PUT /api/v1/assets``, GeoJSON), which
also places its devices on their site; an admin points a webhook channel at
the on-call receiver (``POST /api/v1/notification-channels``; on a later run
the same channel gets the receiver's new address and a new secret).
"""

from __future__ import annotations

from typing import Any

import httpx

from backend.assets.sample import sample_town

from .webhook_sink import WebhookSink

CHANNEL = "demo-night-shift"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def load_town(client: httpx.Client, tokens: dict[str, str], users: dict[str, str]) -> bool:
    town = sample_town()
    response = client.put("/api/v1/assets", json=town, headers=_auth(tokens["planner"]))
    if response.status_code != 200:
        print(f"  assets       PUT /api/v1/assets: {response.status_code} {response.text[:300]}")
        return False
    answer: dict[str, Any] = response.json()
    print(
        f"  assets       PUT /api/v1/assets as {users['planner']}: {response.status_code},"
        f" {len(town['features'])} GeoJSON features of the sample town"
        f" (inserted {answer.get('inserted')}, updated {answer.get('updated')})"
    )
    return True


def webhook_channel(
    client: httpx.Client, tokens: dict[str, str], users: dict[str, str], sink: WebhookSink
) -> bool:
    headers = _auth(tokens["admin"])
    body = {
        "name": CHANNEL,
        "kind": "webhook",
        "url": sink.url,
        "audience_role": "operator",
        "min_severity": "warning",
    }
    response = client.post("/api/v1/notification-channels", json=body, headers=headers)
    how = "POST /api/v1/notification-channels"
    if response.status_code == 409:
        listed = client.get("/api/v1/notification-channels?limit=200", headers=headers)
        found = [c for c in listed.json().get("items", []) if c.get("name") == CHANNEL]
        if not found:
            print(f"  channel      {how}: 409, and no channel {CHANNEL} listed")
            return False
        target = f"/api/v1/notification-channels/{found[0]['channel_id']}"
        response = client.patch(
            f"{target}?rotate_secret=true",
            json={"url": sink.url, "enabled": True},
            headers=headers,
        )
        how = f"PATCH {target}?rotate_secret=true"
    if response.status_code not in (200, 201):
        print(f"  channel      {how}: {response.status_code} {response.text[:300]}")
        return False
    sink.secret = str(response.json()["secret"])
    print(
        f"  channel      {how} as {users['admin']}: {response.status_code}, webhook"
        f" {CHANNEL} -> {sink.url} (operators, warning and above; secret kept in memory)"
    )
    return True
