"""main.py of a leak sensor: every wake from deep sleep starts here.

Provisioned files: ``/config.json``, ``/board.json``, ``/ca.pem`` (see
``docs/firmware_apps.md``).
"""

import json
import os


def main():
    with open("/config.json") as f:
        cfg = json.loads(f.read())
    with open("/board.json") as f:
        pins = json.loads(f.read())

    import machine
    import netup
    from leak_sensor.app import FW, LeakApp, restore_identity
    from leak_sensor.board import make_board
    from uplink import Uplink

    from edge.spool import Spool

    board = make_board(pins)
    ident = restore_identity(board, os.urandom(8))
    cold = machine.reset_cause() != machine.DEEPSLEEP_RESET
    if cfg.get("wifi"):
        netup.wifi(cfg["wifi"]["ssid"], cfg["wifi"]["key"])
    if cold and netup.sync_clock(cfg.get("ntp")):
        board.clock_synced()
    spool = Spool("/data/spool", max_bytes=64 * 1024, max_records=512)
    up = Uplink(cfg["dev"], "leak_sensor", FW, ident, spool, board.time_ms)
    LeakApp(board, cfg, up, netup.make_client_factory(cfg)).run()


main()
