"""The alert rule engine: signals from the data, one alert per condition.

``sources/`` turn rows into signals, ``conditions`` and ``lifecycle`` decide
(pure functions), ``store`` writes transitions, ``engine`` runs it all every
interval under an advisory lock; docs/alerts.md describes the rules.
"""
