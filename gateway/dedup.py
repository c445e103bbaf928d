"""Recently queued uplink identities, to recognise QoS 1 redeliveries.

The site broker redelivers what the gateway had not acknowledged when a
connection dropped; some of it was already committed. Those repeats are
acknowledged and counted, not queued twice. Memory is bounded per device;
an older repeat slips through and the backend's idempotent store absorbs it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class RecentIds:
    def __init__(self, per_device: int = 512) -> None:
        self._per_device = per_device
        self._seen: dict[str, tuple[str, set[int], deque[int]]] = {}

    def __contains__(self, key: tuple[str, str, int]) -> bool:
        dev, boot, seq = key
        entry = self._seen.get(dev)
        return entry is not None and entry[0] == boot and seq in entry[1]

    def add_all(self, keys: Iterable[tuple[str, str, int]]) -> None:
        for dev, boot, seq in keys:
            entry = self._seen.get(dev)
            if entry is None or entry[0] != boot:
                entry = (boot, set(), deque())  # a new boot: older ones cannot repeat now
                self._seen[dev] = entry
            _, seqs, order = entry
            if seq in seqs:
                continue
            seqs.add(seq)
            order.append(seq)
            if len(order) > self._per_device:
                seqs.discard(order.popleft())
