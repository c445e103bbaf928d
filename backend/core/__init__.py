"""Numerical cores of the backend: pure NumPy functions, no I/O.

Callers (the alert engine, later the API and simulators) read the database
and hand these functions plain arrays; everything here can be tested on
synthetic data alone.
"""
