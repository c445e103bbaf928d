"""``lumeau api run`` and ``lumeau api token create``.

FastAPI, uvicorn and the driver are imported only when a command runs, so
``lumeau --help`` stays cheap and works without the ``api`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.api.permissions import Role
from backend.settings import Settings, get_settings, load_settings

if TYPE_CHECKING:
    from backend.api.queries.auth import IssuedToken


def register(subparsers: Any) -> None:
    """Add ``api run`` and ``api token create`` to the ``lumeau`` parser."""
    api = subparsers.add_parser("api", help="HTTP API: run the service, issue tokens")
    actions = api.add_subparsers(dest="api_command", metavar="ACTION", required=True)

    run = actions.add_parser(
        "run",
        help="serve the API with uvicorn",
        description="Serve API v1 (/api/v1, docs at /api/v1/docs) until SIGTERM/SIGINT.",
    )
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    run.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    run.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    run.set_defaults(func=_run)

    token = actions.add_parser("token", help="API tokens")
    token_actions = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = token_actions.add_parser(
        "create",
        help="issue a token (printed once; only its SHA-256 is stored)",
        description="Issue an API token for USER, creating the user with ROLE if new. The"
        " token is printed once on stdout; the database keeps only its SHA-256."
        " The issue is written to the audit log as 'cli:<your login>'.",
    )
    create.add_argument("--user", required=True, help="user name ([A-Za-z0-9._@-], 1..64)")
    create.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
        help="the user's role (must match an existing user's role)",
    )
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-in-days", type=int, default=90, help="validity in days (default: 90)"
    )
    expiry.add_argument("--no-expiry", action="store_true", help="a token that never expires")
    create.add_argument("--label", default=None, help="what the token is for")
    create.add_argument("--run-dir", type=Path, default=None, help="run folder holding stack.env")
    create.set_defaults(func=_token_create)


def _settings(args: argparse.Namespace) -> Settings:
    run_dir: Path | None = args.run_dir
    return load_settings(run_dir) if run_dir is not None else get_settings()


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.api.app import create_app

    settings = _settings(args)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    return 0


def _token_create(args: argparse.Namespace) -> int:
    import psycopg

    from backend.api.queries.auth import UserProblem

    expires: int | None = None if args.no_expiry else args.expires_in_days
    if expires is not None and not 1 <= expires <= 3650:
        print("error: --expires-in-days must be between 1 and 3650", file=sys.stderr)
        return 2
    conninfo = _settings(args).database_url.get_secret_value()
    try:
        issued = asyncio.run(_issue(conninfo, args.user, Role(args.role), expires, args.label))
    except UserProblem as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    until = issued.expires_at.isoformat() if issued.expires_at else "never"
    print(
        f"token {issued.token_id} for {issued.user} ({issued.role.value}), expires {until}."
        " It is shown once: store it now.",
        file=sys.stderr,
    )
    print(issued.token)
    return 0


async def _issue(
    conninfo: str, user: str, role: Role, expires_in_days: int | None, label: str | None
) -> IssuedToken:
    import psycopg
    from psycopg.rows import dict_row

    from backend.api.queries.auth import issue_token

    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, row_factory=dict_row
    ) as conn:
        return await issue_token(
            conn,
            user=user,
            role=role,
            expires_in_days=expires_in_days,
            label=label,
            actor=f"cli:{getpass.getuser()}",
            actor_token_id=None,
        )
