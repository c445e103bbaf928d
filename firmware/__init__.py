"""Lumeau's board applications (MicroPython) and the technician's tooling (``firmware.tools``).

This file makes ``firmware`` importable on CPython for the tools; the boards
never import it (their bundle puts ``firmware/lib`` and each role's modules
on the board's ``/lib``, see ``docs/firmware.md``).
"""
