"""The API's SQL, one module per resource; handlers call these and nothing else.

Every function takes an open connection (autocommit; writes open their own
transaction) and returns plain rows or models. Parameters are always bound,
never formatted into the text; optional filters are composed with
``psycopg.sql``.
"""
