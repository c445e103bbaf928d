"""Assets with geometry: sites, lighting cabinets, circuits, luminaires, the pipe
network (nodes and pipes) and acoustic leak sensors.

Pure code only: GeoJSON (RFC 7946) features are validated and turned into the
rows of migration ``0013_assets.sql`` and back (``features``), with geometry
checks and great-circle lengths (``geo``) and the cross-feature checks that
need stored assets (``references``). The database and HTTP sides live in
``backend.api.queries.assets`` and ``backend.api.routes.assets``.
"""
