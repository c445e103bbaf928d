"""The operator's web console: static files the API process serves at ``/console/``.

Plain HTML, CSS and JavaScript modules (``static/``), no build step and no
third-party code: the browser talks to API v1 on the same origin with the
operator's bearer token, like any other client. ``mount.mount_console`` adds
it to an application.
"""
