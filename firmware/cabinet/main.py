"""main.py of a cabinet controller: make the hardware, then run the app.

Provisioned files (written by the technician's tooling): ``/config.json``
(device id, credentials, broker, position, circuits), ``/board.json``
(pins), ``/ca.pem`` (the site broker's CA).
"""

import asyncio
import json
import os


def main():
    with open("/config.json") as f:
        cfg = json.loads(f.read())
    with open("/board.json") as f:
        pins = json.loads(f.read())

    import netup
    from cabinet.app import FW, CabinetApp
    from cabinet.board import make_board
    from uplink import Identity, Uplink

    from edge.spool import Spool

    board = make_board(pins)
    if cfg.get("wifi"):
        netup.wifi(cfg["wifi"]["ssid"], cfg["wifi"]["key"])
    netup.sync_clock(cfg.get("ntp"))
    spool = Spool("/data/spool", max_bytes=256 * 1024, max_records=2048)
    ident = Identity.new(os.urandom(8))  # a reset is a new boot
    up = Uplink(cfg["dev"], "cabinet", FW, ident, spool, board.time_ms)
    app = CabinetApp(board, cfg, up, netup.make_client_factory(cfg))
    asyncio.run(app.run())


main()
