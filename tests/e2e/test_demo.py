"""The README's main job, run as a user runs it, on the real services."""

from __future__ import annotations

import re

import pytest

from backend import devstack
from backend.cli import main
from tests.conftest import services_run_dir


@pytest.mark.services
def test_demo_stores_good_messages_once_and_rejects_bad_ones(
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

    assert "seq 2 published twice, stored 1 time(s)" in out
    assert "leak-0001's topic stored: 0" in out
    # The three bad messages each land with their own reason, in the dead letters
    # and on the cabinet's own error topic.
    for code in ("bad_json", "out_of_range", "topic_mismatch"):
        assert re.search(rf"cab-0001\s+{code}\b", out), f"no dead letter {code}"
        assert f'"code":"{code}"' in out, f"no error reply {code}"
    # seq 4 never sent: reported as a gap of one.
    assert re.search(r"cab-0001\s+[0-9a-f]{8}\s+4\s+4\s+1\b", out)
    # Retained status messages of earlier runs come back as duplicates, so only
    # this run's new messages and rejections have fixed counts.
    assert re.search(r"Ingest counters: .*\bstored=7\b.*\bdead_lettered=3\b", out)
