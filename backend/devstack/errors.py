"""Errors raised by the dev stack."""

from __future__ import annotations


class MissingDependency(RuntimeError):
    """A system piece is missing and could not be installed from here.

    The message lists the exact commands that fix it, so callers (the CLI, the
    test fixture) can show it as it is.
    """


class ServiceError(RuntimeError):
    """A service was installed but did not start or answer as expected."""
