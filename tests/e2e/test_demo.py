"""The README's main job, run as a user runs it, on the real services.

Devices -> site Mosquitto -> ``lumeau gateway run`` -> backend Mosquitto ->
ingest -> TimescaleDB. The assertions read the demo's own output, as a person
would: where each message of the script ended up.
"""

from __future__ import annotations

import re

import pytest

from backend import devstack
from backend.cli import main
from tests.conftest import services_run_dir


def _section(out: str, title: str) -> str:
    """The table printed under the line starting with ``title`` (up to a blank line)."""
    start = out.find("\n" + title)
    assert start >= 0, f"no section {title!r} in the demo's output"
    end = out.find("\n\n", start + 1)
    return out[start : end if end >= 0 else len(out)]


def _counter(counters: str, name: str) -> int:
    match = re.search(rf"^\s+{re.escape(name)}\s+(\d+)\s", counters, re.MULTILINE)
    assert match, f"gateway counter {name} not shown"
    return int(match.group(1))


@pytest.mark.services
def test_demo_goes_through_the_gateway_stores_once_and_stops_bad_input_at_the_site(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Its own stack: the demo leaves retained status messages behind, as real
    # devices do, and other tests count what their broker delivers.
    run_dir = services_run_dir().with_name(services_run_dir().name + "-demo")
    try:
        assert main(["demo", "--run-dir", str(run_dir)]) == 0
    finally:
        devstack.down(run_dir)
    out = capsys.readouterr().out

    # The 7 distinct good messages are stored, every one of them via the gateway.
    assert "Good messages: 7 distinct sent, 7 stored, 7 of them via gw-demo-1." in out
    stored = _section(out, "Stored device messages")
    assert len(re.findall(r"^\s+(?:cab|leak)-0001\s", stored, re.MULTILINE)) == 7
    assert len(re.findall(r"\sgw-demo-1\s*$", stored, re.MULTILINE)) == 7

    # The duplicate: recognised at the gateway, stored once in TimescaleDB.
    assert "seq 2 published twice, stored 1 time(s) (gateway duplicates=1)" in out
    # The publish on another device's topic: refused by the site broker's ACL.
    assert "leak-0001's topic stored: 0" in out

    # Bad input stops at the gateway: its SQLite dead letters and the cabinet's
    # error replies on the site broker, one per bad message, none at the backend.
    letters = _section(out, "Gateway dead letters")
    replies = _section(out, "Error replies cab-0001 read on its own down/error topic of the SITE")
    for code in ("bad_json", "out_of_range", "topic_mismatch"):
        assert len(re.findall(rf"^\s+cab-0001\s+{code}\b", letters, re.MULTILINE)) == 1, code
        assert replies.count(f'"code":"{code}"') == 1, f"no error reply {code}"
    assert len(re.findall(r"^\s+cab-0001\s+\w+", letters, re.MULTILINE)) == 3
    assert "backend dead letters this run: 0." in out
    assert re.search(r"Ingest counters: .*\bdead_lettered=0\b", out)

    # seq 4 never sent: reported as a gap of one, and the only gap (the
    # gateway's own sequence has none).
    gaps = _section(out, "Sequence gaps")
    assert re.search(r"^\s+cab-0001\s+[0-9a-f]{8}\s+4\s+4\s+1\s*$", gaps, re.MULTILINE)
    assert len(re.findall(r"^\s+\S+\s+[0-9a-f]{8,16}\s+\d+", gaps, re.MULTILINE)) == 1

    # The gateway's counters, read from its /metrics.
    counters = _section(out, "Gateway counters")
    assert _counter(counters, "received_total") == 11  # 12 published, 1 refused by the ACL
    assert _counter(counters, "accepted_total") == 7
    assert _counter(counters, "duplicates_total") == 1
    assert _counter(counters, "rejected_total") == 3
    assert _counter(counters, "error_replies_total") == 3
    assert _counter(counters, "forwarded_total") == 7
    assert _counter(counters, "batch_failures_total") == 0
    assert _counter(counters, "queue_rows") == 0

    # Its batches are messages of its own sequence in uplink_message.
    own = _section(out, "The gateway's own messages")
    batches = re.findall(r"^\s+gw-demo-1\s+[0-9a-f]{16}\s+\d+\s+batch\s", own, re.MULTILINE)
    assert batches, "no gateway batch stored"
    assert f"Gateway batches stored: {len(batches)} (kind batch); gateway exit code 0." in out
    assert _counter(counters, "batches_total") == len(batches)

    # Presence: online while it ran; its clean stop published the offline status.
    devices = _section(out, "Devices and gateway while the gateway ran")
    assert re.search(r"^\s+gw-demo-1\s+gateway\s+online\s", devices, re.MULTILINE)
    for dev, role in (("cab-0001", "cabinet"), ("leak-0001", "leak_sensor")):
        assert re.search(rf"^\s+{dev}\s+{role}\s+online\s+\S+\s+gw-demo-1", devices, re.MULTILINE)
    presence = _section(out, "Gateway presence")
    states = re.findall(r"^\s+gw-demo-1\s+\d+\s+(online|offline)\s", presence, re.MULTILINE)
    assert states == ["online", "offline"]
