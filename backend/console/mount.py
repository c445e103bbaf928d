"""``mount_console(app)``: serve ``static/`` at ``/console/``, outside the API.

The console is public static content: it holds no data and no secret, and
every answer it shows comes from API v1 with the user's own token. It is a
Starlette ``Mount``, not an ``APIRoute``, so the permission matrix (which
covers the routes under ``/api/v1``) neither sees nor needs it; the mount
point is checked to stay out of the API's prefix so the matrix keeps
covering every API route.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from backend.api.permissions import API_PREFIX

CONSOLE_PATH: Final = "/console"
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

# Only this origin's own files and API: no CDN, no inline script, no framing.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load (ETag): a new release is picked up at once.
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """``StaticFiles`` whose answers carry the console's security headers."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_console(app: FastAPI, path: str = CONSOLE_PATH) -> None:
    """Serve the console at ``path + "/"`` (``path`` itself redirects there)."""
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        raise ValueError(f"the console cannot live under the API prefix {API_PREFIX}")
    app.mount(path, ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
