"""Background upkeep of the database: dashboard rollups and retention.

``lumeau maintenance run`` refreshes the hourly and daily rollups (on the
Apache edition, where the backend maintains them), the per-device energy and
per-site daily rollups (both editions) and applies the retention
configured per table; see docs/storage.md, "Rollups and retention".
"""
