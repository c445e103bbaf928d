"""Dimming schedules the municipal services store, check, preview and deploy.

    edge.py     the cabinet's own schedule code (``edge.schedule`` and its
                parts), loaded untyped behind a few typed functions.
    checks.py   ``check_program``: what the cabinet would refuse (its own
                compiler, the protocol's limits) and what it would accept
                but a planner did not mean (warnings); the program's time
                zone against a site's. Pure.
    nights.py   ``preview_night``: the levels of one night at one place and
                the energy they use against full power; ``sweep_year``: the
                same over a year of nights, folded into findings. Pure.

The tables (``dimming_schedule``, its versions, deployments and their
targets: migration 0016) and the routes are the API's
(``backend/api/queries/schedules.py``, ``backend/api/routes/schedules.py``).
"""
