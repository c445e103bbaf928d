"""Acoustic leak sensor application (MicroPython package ``leak_sensor`` on the board)."""
