"""Gateway parts that need no broker: codec glue, the queue's policy, config, metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge import protocol
from gateway import batch, commands
from gateway.backoff import Backoff
from gateway.config import load_settings
from gateway.dedup import RecentIds
from gateway.intake import PRIORITY, TELEMETRY, Accepted, Rejected, classify
from gateway.metrics import Metrics
from gateway.store import QueuedRow, Store

NOW = 1_795_392_000_000
TOPIC = "lumeau/v1/dev/cab-0042/up/telemetry"


def _telemetry(seq: int, dev: str = "cab-0042") -> bytes:
    return protocol.encode(
        {
            "v": 1,
            "kind": "telemetry",
            "dev": dev,
            "boot": "5f3a9c1e",
            "seq": seq,
            "ts": NOW,
            "readings": [{"ts": NOW, "ch": 0, "values": {"power_w": 12.5}}],
        }
    )


def test_batch_is_canonical_and_decodes() -> None:
    out = classify(TOPIC, _telemetry(1), NOW)
    assert isinstance(out, Accepted)
    payload = batch.build("gw-1", "0c9d8e7f", 88, NOW, [out.entry, out.entry])
    envelope, good, bad = protocol.decode_batch(payload, "lumeau/v1/gw/gw-1/up/batch")
    assert bad == [] and len(good) == 2 and envelope["seq"] == 88
    assert payload == protocol.encode(json.loads(payload))
    overhead = batch.envelope_overhead("gw-1", "0c9d8e7f")
    assert len(payload) <= batch.batch_size(overhead, 2 * len(out.entry), 2)


def test_classify_rejections_name_the_device() -> None:
    out = classify(TOPIC, b"{nope", NOW)
    assert isinstance(out, Rejected) and out.code == "bad_json" and out.dev == "cab-0042"
    assert out.reply is not None and out.reply_topic == "lumeau/v1/dev/cab-0042/down/error"
    assert protocol.decode(out.reply, out.reply_topic)["code"] == "bad_json"
    unknown = classify(TOPIC, _telemetry(1), NOW, allowed=frozenset({"cab-0001"}))
    assert isinstance(unknown, Rejected) and unknown.code == "unknown_device"
    weird = classify("lumeau/v1/gw/x/up/batch", b"{}", NOW)
    assert isinstance(weird, Rejected) and weird.code == "bad_topic" and weird.reply is None


def _row(prio: int, n: int = 0) -> QueuedRow:
    return QueuedRow(prio, "cab-1", NOW + n, b'{"n":%d}' % n)


def test_full_queue_drops_oldest_unsent_telemetry_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.sqlite3", max_rows=5)
    with store.transaction():
        store.enqueue([_row(TELEMETRY, i) for i in range(4)])
    taken = store.take(2, 10_000)  # two in flight: not droppable
    assert taken is not None and taken.count == 2
    with store.transaction():
        result = store.enqueue([_row(PRIORITY, 10), _row(PRIORITY, 11), _row(TELEMETRY, 12)])
    assert result.dropped == 2 and store.rows == 5 and not result.over_bound
    with store.transaction():
        result = store.enqueue([_row(PRIORITY, 13)])
    assert result.dropped == 1  # the new telemetry row 12, the only droppable one
    with store.transaction():
        result = store.enqueue([_row(PRIORITY, 14)])
    assert result.dropped == 0 and result.over_bound  # priority is never dropped
    store.delete(taken)
    store.rewind()
    rest = store.take(100, 100_000)
    assert rest is not None and rest.counts == {PRIORITY: 4}
    store.close()
    reopened = Store(tmp_path / "q.sqlite3", max_rows=5)
    assert reopened.rows == 4 and reopened.unsent == 4
    reopened.close()


def test_take_respects_bytes_and_priority_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.sqlite3")
    with store.transaction():
        store.enqueue([_row(TELEMETRY, i) for i in range(10)] + [_row(PRIORITY, 99)])
    first = store.take(100, 3 * (len(b'{"n":99}') + 1))
    assert first is not None and first.counts == {PRIORITY: 1, TELEMETRY: 2}
    assert first.entries[0] == b'{"n":99}'
    store.close()


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, rand=lambda: 1.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    low = Backoff(0.5, 4.0, rand=lambda: 0.0)
    assert all(low.next() == 0.5 for _ in range(5))


def test_recent_ids_forget_old_boots() -> None:
    recent = RecentIds(per_device=2)
    recent.add_all([("d", "b1", 1), ("d", "b1", 2), ("d", "b1", 3)])
    assert ("d", "b1", 3) in recent and ("d", "b1", 1) not in recent
    recent.add_all([("d", "b2", 0)])
    assert ("d", "b1", 3) not in recent


def test_settings_file_env_and_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('gateway_id = "gw-nord-1"\nbackend_port = 1884\nbatch_max_msgs = 100\n')
    monkeypatch.setenv("LUMEAU_GATEWAY_BATCH_MAX_MSGS", "200")
    settings = load_settings(path)
    assert settings.gateway_id == "gw-nord-1" and settings.backend_port == 1884
    assert settings.batch_max_msgs == 200  # the environment wins over the file
    monkeypatch.setenv("LUMEAU_GATEWAY_BACKEND_PASSWORD", "changeme")
    with pytest.raises(ValidationError, match="placeholder"):
        load_settings(path)
    monkeypatch.delenv("LUMEAU_GATEWAY_BACKEND_PASSWORD")
    with pytest.raises(ValidationError):
        load_settings(path, gateway_id="Bad/Id")
    with pytest.raises(ValidationError):
        load_settings(path, batch_max_msgs=5000)  # protocol: at most 1000 per batch


def test_relay_command_and_timeout_ack() -> None:
    relay = protocol.encode(
        {
            "v": 1,
            "kind": "cmd",
            "gw": "gw-1",
            "id": "c-9",
            "name": "relay",
            "args": {"dev": "cab-0042", "name": "set_level", "args": {"level_pct": 40}},
            "ts": NOW,
            "exp": NOW + 1000,
        }
    )
    cmd = commands.from_backend("lumeau/v1/gw/gw-1/down/cmd", relay, "gw-1")
    decoded = protocol.decode(cmd.payload, "lumeau/v1/dev/cab-0042/down/cmd")
    assert decoded["id"] == "c-9" and decoded["args"] == {"level_pct": 40}
    with pytest.raises(protocol.ProtocolError) as err:
        commands.from_backend("lumeau/v1/gw/gw-2/down/cmd", relay, "gw-1")
    assert err.value.code == "topic_mismatch"
    ack = commands.timeout_ack("cab-0042", "c-9", "0c9d8e7f", 0, NOW, 3)
    assert ack["ok"] is False and ack["err"]["code"] == "timeout"


def test_metrics_exposition() -> None:
    metrics = Metrics()
    metrics.add(forwarded=3)
    metrics.reject("bad_json")
    text = metrics.render()
    assert "lumeau_gateway_forwarded_total 3\n" in text
    assert 'lumeau_gateway_rejected_total{code="bad_json"} 1\n' in text
    assert "# TYPE lumeau_gateway_queue_rows gauge" in text


def test_cli_registers_gateway_run() -> None:
    from gateway.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gateway", "run", "--config", "gw.toml"])
    assert args.config == Path("gw.toml") and callable(args.func)
