"""Lumeau's field gateway: a store-and-forward bridge from a site's broker to the
backend's, which loses nothing it has acknowledged (docs/gateway.md).

Modules, one job each:

    config    GatewaySettings: TOML file + LUMEAU_GATEWAY_* environment
    intake    one delivery -> queue entry or rejection (pure)
    batch     queue entries -> the protocol's batch payload (pure)
    commands  backend downlinks -> device commands; timeout acks (pure)
    dedup     recently queued (dev, boot, seq), to spot redeliveries
    store     SQLite (WAL): queue, dead letters, presence, commands
    link      one self-healing MQTT v5 connection (backoff with jitter)
    metrics   counters, gauges, Prometheus text
    http      /metrics and /health on loopback
    logs      JSON log lines
    service   the Gateway: wires the above into one core loop
    cli       ``lumeau gateway run --config FILE``
"""
