"""The API part: a person's queries of the stored data, with their own tokens."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from .api_process import ApiProcess
from .children import lumeau_command
from .script import CABINET, SLOT_MS, utc
from .tables import table

# The API part: two users the demo issues tokens for, and the metric it queries.
_OPERATOR = "demo-operator"
_TECHNICIAN = "demo-technician"
_METRIC = "level_pct"


def _issue_token(run_dir: Path, user: str, role: str) -> tuple[str | None, str]:
    """``lumeau api token create``, as a person runs it: (the token or None, its message).

    The token is read from the command's stdout and kept in memory only.
    """
    from backend.api.tokens import well_formed

    cmd = [*lumeau_command(), "api", "token", "create", "--user", user, "--role", role]
    cmd += ["--expires-in-days", "1", "--label", "lumeau demo", "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    token = done.stdout.strip()
    message = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
    if done.returncode != 0 or not well_formed(token):
        return None, message[0]
    return token, message[0]


def _iso(ms: int) -> str:
    return utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(value: Any, fmt: str = "%H:%M:%S") -> str:
    """An API timestamp (ISO 8601) shown in UTC."""
    if not value:
        return ""
    return datetime.fromisoformat(str(value)).astimezone(UTC).strftime(fmt)


def _path(path: str, params: dict[str, str] | None = None) -> str:
    """``path?query``, readable (``:`` left as is) and the same for httpx and curl."""
    return path + ("?" + urllib.parse.urlencode(params, safe=":") if params else "")


def _curl(base_url: str, target: str) -> str:
    return f"curl -s -H \"Authorization: Bearer $TOKEN\" '{base_url}{target}'"


def _problem(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))
    except ValueError:
        return response.text[:200]


USERS: dict[str, str] = {
    "operator": _OPERATOR,
    "technician": _TECHNICIAN,
    "planner": "demo-planner",
    "admin": "demo-admin",
}


def api_header(api: ApiProcess, health: dict[str, Any]) -> None:
    base = api.base_url
    print(f"\nThe API: `lumeau api run` (pid {api.proc and api.proc.pid}) at {base}/api/v1")
    print(f"  OpenAPI page {base}/api/v1/docs (the schema: {base}/api/v1/openapi.json)")
    print(f"  console      {base}/console/ (sign in with a token)")
    print(f"  log          {api.log}")
    print(f"  health       {json.dumps(health, separators=(',', ':'))}  (no token needed)")
    print(f"  $ curl -s {base}/api/v1/health")


def issue_tokens(run_dir: Path) -> dict[str, str] | None:
    """One token per role, from ``lumeau api token create``, kept in memory only."""
    tokens: dict[str, str] = {}
    for role, user in USERS.items():
        token, message = _issue_token(run_dir, user, role)
        print(f"  token        `lumeau api token create --user {user} --role {role}`: {message}")
        if token is None:
            return None
        tokens[role] = token
    print("               (the demo keeps the tokens in memory; the database has their SHA-256)")
    print(f"  In a shell:  TOKEN=$({shlex.join(lumeau_command())} api token create"
          f" --user $USER --role operator --run-dir {shlex.quote(str(run_dir))})")  # fmt: skip
    return tokens


def queries(
    api: ApiProcess,
    client: httpx.Client,
    start_ms: int,
    tokens: dict[str, str],
) -> int:
    """The queries a person makes on what the bench devices' script stored."""
    base = api.base_url

    def get(role: str, target: str) -> httpx.Response:
        return client.get(target, headers={"Authorization": f"Bearer {tokens[role]}"})

    failures = 0

    target = _path("/api/v1/devices")
    response = get("operator", target)
    devices = response.json().get("items", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    table(
        f"API GET {target} as {_OPERATOR}: {response.status_code},"
        f" {len(devices)} devices (presence: their last status message)",
        ("device", "role", "presence", "since UTC", "last seen UTC", "last gateway", "fw"),
        [
            (
                d["device_id"],
                d["role"],
                d["presence"],
                _clock(d["presence_since"]),
                _clock(d["last_seen"]),
                d["last_gateway_id"],
                d["fw"],
            )
            for d in devices
        ],
        _curl(base, target),
    )

    window = {"from": _iso(start_ms), "to": _iso(start_ms + SLOT_MS)}
    target = _path(
        f"/api/v1/devices/{CABINET}/telemetry", {"metric": _METRIC, "bucket": "15m"} | window
    )
    response = get("operator", target)
    points = response.json().get("points", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    table(
        f"API GET {CABINET} telemetry as {_OPERATOR}: {response.status_code}, {_METRIC} per"
        " 15-minute bucket and circuit, over this run's device times",
        ("bucket UTC", "ch", "count", "avg", "min", "max"),
        [
            (
                _clock(p["time"], "%Y-%m-%d %H:%M"),
                p["channel"],
                p["count"],
                f"{p['avg']:.2f}",
                f"{p['min']:.2f}",
                f"{p['max']:.2f}",
            )
            for p in points
        ],
        _curl(base, target),
    )

    target = _path("/api/v1/events", {"device_id": CABINET} | window)
    response = get("operator", target)
    events = response.json().get("items", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    table(
        f"API GET /api/v1/events as {_OPERATOR}: {response.status_code}, events: {len(events)}",
        ("time UTC", "device", "boot", "seq", "code", "severity", "active"),
        [
            (
                _clock(e["time"]),
                e["device_id"],
                e["boot_id"],
                e["seq"],
                e["code"],
                e["severity"],
                e["active"],
            )
            for e in events
        ],
        _curl(base, target),
    )

    target = _path("/api/v1/dead-letters", {"limit": "5"})
    refused = get("operator", target)
    failures += refused.status_code != 403
    print(f"\nAPI GET {target} as {_OPERATOR}: {refused.status_code} {refused.reason_phrase}")
    print(f"  {_problem(refused)}")
    response = get("technician", target)
    letters = response.json().get("items", []) if response.status_code == 200 else []
    failures += response.status_code != 200
    table(
        f"API GET {target} as {_TECHNICIAN}: {response.status_code}, {len(letters)} rows"
        " (the backend's dead_letter table, newest first; this run's bad input stopped"
        " at the gateway)",
        ("id", "received UTC", "source", "device", "code", "reason"),
        [
            (
                x["id"],
                _clock(x["received_at"], "%Y-%m-%d %H:%M:%S"),
                x["source"],
                x["device_id"],
                x["code"],
                str(x["reason"])[:60],
            )
            for x in letters
        ],
        _curl(base, target),
    )
    if failures:
        print(f"\n{failures} API answer(s) not as expected; its log ({api.log}):\n{api.log_tail()}")
        return 1
    return 0


def serve(api: ApiProcess, run_dir: Path) -> int:
    """``--serve``: the API stays up in the foreground until Ctrl-C (or SIGTERM)."""
    print(f"\nThe API keeps running at {api.base_url}/api/v1; open {api.base_url}/api/v1/docs")
    print(f"(or the console, {api.base_url}/console/) with a token of your own, made with:")
    print(f"  {shlex.join(lumeau_command())} api token create --user NAME --role operator"
          f" --run-dir {shlex.quote(str(run_dir))}")  # fmt: skip
    print("Roles: operator, planner, technician, admin (docs/api.md). The alert engine and")
    print("the notifier keep running too; Ctrl-C stops all three.")
    sys.stdout.flush()

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        while api.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"The API exited by itself; its log ({api.log}):\n{api.log_tail()}")
    return 1
