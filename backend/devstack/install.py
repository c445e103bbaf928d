"""Install Mosquitto, PostgreSQL 15 and TimescaleDB from Debian packages.

Only when something is missing, and only as root on Debian/Ubuntu; otherwise
``MissingDependency`` tells the user what to run. TimescaleDB has no Debian 12
package, so it is built from Debian 13's source package (Apache-licensed part)
fetched with ``apt-get source`` through a private apt configuration, and the
built files are cached so later installs are a copy.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ._util import is_root, log, run
from .errors import MissingDependency, ServiceError

PG_MAJOR = 15
PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
PG_SHARE = Path(f"/usr/share/postgresql/{PG_MAJOR}")
PG_LIB = Path(f"/usr/lib/postgresql/{PG_MAJOR}/lib")
TIMESCALEDB_CONTROL = PG_SHARE / "extension" / "timescaledb.control"
TIMESCALEDB_LOADER = PG_LIB / "timescaledb.so"

# The Debian release whose source package we build; overridable for when it
# moves on (or for an Ubuntu mirror, whose suites have other names).
SOURCE_SUITE = os.environ.get("LUMEAU_TIMESCALEDB_SUITE", "trixie")
_ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

_BUILD_PACKAGES = (
    f"postgresql-server-dev-{PG_MAJOR}",
    "build-essential",
    "cmake",
    "dpkg-dev",
    "libssl-dev",
    "xz-utils",
)

_SEARCH_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin")

_apt_updated = False


def find_program(name: str) -> Path | None:
    """Like ``which``, but also looks in sbin folders a non-root PATH leaves out."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for folder in _SEARCH_PATH:
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing_packages() -> list[str]:
    missing: list[str] = []
    if find_program("mosquitto") is None or find_program("mosquitto_passwd") is None:
        missing.append("mosquitto")
    if find_program("mosquitto_pub") is None:
        missing.append("mosquitto-clients")
    if not all((PG_BIN / tool).exists() for tool in ("postgres", "initdb", "pg_ctl")):
        missing.append(f"postgresql-{PG_MAJOR}")
    return missing


def timescaledb_installed() -> bool:
    return TIMESCALEDB_CONTROL.exists() and TIMESCALEDB_LOADER.exists()


def _can_install() -> bool:
    return (
        is_root() and Path("/etc/debian_version").exists() and find_program("apt-get") is not None
    )


def _instructions(packages: list[str], timescaledb: bool) -> str:
    lines = ["Missing system pieces for the Lumeau dev stack. As root, run:"]
    if packages:
        lines.append("  apt-get update")
        lines.append("  apt-get install -y " + " ".join(packages))
    if timescaledb:
        lines.append(
            f"  lumeau services install   # builds TimescaleDB for PostgreSQL {PG_MAJOR} "
            f"from Debian's '{SOURCE_SUITE}' source package"
        )
        lines.append(
            f"(or install a timescaledb package for PostgreSQL {PG_MAJOR}, e.g. from "
            "Timescale's apt repository: see docs/operations.md)"
        )
    return "\n".join(lines)


def ensure_installed(*, install: bool = True) -> None:
    """Make sure Mosquitto, PostgreSQL 15 and TimescaleDB are present.

    Cheap when everything is there (a few ``stat`` calls), so ``up`` calls it
    every time.
    """
    packages = _missing_packages()
    need_tsdb = not timescaledb_installed()
    if not packages and not need_tsdb:
        return
    if not install or not _can_install():
        # A cached build can only be copied into /usr as root, so even that
        # case ends up here when we are not root.
        raise MissingDependency(_instructions(packages, need_tsdb))
    if packages:
        apt_install(packages)
        still = _missing_packages()
        if still:
            raise MissingDependency(
                "installed but still not found: "
                + ", ".join(still)
                + "\n"
                + _instructions(still, False)
            )
    if need_tsdb:
        install_timescaledb()


def apt_install(packages: list[str]) -> None:
    global _apt_updated
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        log.info("apt-get update")
        run(["apt-get", "update"], env=env)
        _apt_updated = True
    log.info("apt-get install %s", " ".join(packages))
    run(["apt-get", "install", "-y", "--no-install-recommends", *packages], env=env)


def _dpkg_installed(package: str) -> bool:
    result = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return result.returncode == 0 and result.stdout.strip().endswith(" installed")


# --- TimescaleDB ---------------------------------------------------------------


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lumeau"


def _cached_stages() -> list[Path]:
    """Finished builds (``.../stage`` trees mirroring /), newest version first."""
    stages = [
        path / "stage"
        for path in cache_root().glob(f"timescaledb-*-pg{PG_MAJOR}")
        if (path / "stage").is_dir()
    ]

    def version_key(stage: Path) -> tuple[int, ...]:
        version = stage.parent.name.removeprefix("timescaledb-").removesuffix(f"-pg{PG_MAJOR}")
        return tuple(int(part) for part in re.findall(r"\d+", version))

    return sorted(stages, key=version_key, reverse=True)


def install_timescaledb() -> str:
    """Install TimescaleDB into PostgreSQL 15's folders; returns the version installed."""
    stages = _cached_stages()
    if stages:
        stage = stages[0]
        log.info("installing TimescaleDB from the build cache %s", stage.parent)
    else:
        stage = build_timescaledb()
    _copy_stage(stage)
    if not timescaledb_installed():
        raise ServiceError(f"TimescaleDB copied from {stage} but {TIMESCALEDB_CONTROL} is missing")
    return stage.parent.name.removeprefix("timescaledb-").removesuffix(f"-pg{PG_MAJOR}")


def _copy_stage(stage: Path) -> None:
    for source in sorted(stage.rglob("*")):
        if source.is_dir():
            continue
        target = Path("/") / source.relative_to(stage)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def debian_mirror() -> str:
    """The first non-security archive URI in the machine's own apt sources.

    Read at run time so the repository never names a registry host, and so a
    machine behind its own mirror or proxy keeps using it.
    """
    candidates: list[str] = []
    parts = Path("/etc/apt/sources.list.d")
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "security" in fields.get("suites", "") or "uris" not in fields:
                continue
            candidates.extend(fields["uris"].split())
    one_line = [Path("/etc/apt/sources.list"), *sorted(parts.glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] in ("deb", "deb-src") and "security" not in words[2]:
                candidates.append(words[1])
    for uri in candidates:
        if uri.startswith(("http://", "https://", "file:", "mirror+")):
            return uri.rstrip("/")
    raise MissingDependency(
        "no Debian archive found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources; "
        "cannot fetch the timescaledb source package. Install TimescaleDB for PostgreSQL "
        f"{PG_MAJOR} another way (see docs/operations.md)."
    )


def build_timescaledb() -> Path:
    """Fetch Debian's timescaledb source package and build it; returns the cached stage."""
    missing = [pkg for pkg in _BUILD_PACKAGES if not _dpkg_installed(pkg)]
    if missing:
        apt_install(missing)
    work = Path(tempfile.mkdtemp(prefix="lumeau-timescaledb-"))
    try:
        source = _fetch_source(work)
        version = _source_version(source)
        log.info("building TimescaleDB %s (Apache part) for PostgreSQL %d", version, PG_MAJOR)
        build = work / "build"
        run(
            [
                "cmake",
                "-S",
                str(source),
                "-B",
                str(build),
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                f"-DPG_CONFIG={PG_BIN / 'pg_config'}",
                "-DAPACHE_ONLY=1",
                "-DREGRESS_CHECKS=OFF",
                "-DTAP_CHECKS=OFF",
                "-DWARNINGS_AS_ERRORS=OFF",
                "-DENABLE_DEBUG_UTILS=OFF",
                # A dev stack must not phone home; Debian's own build does the same.
                "-DUSE_TELEMETRY=OFF",
                "-DSEND_TELEMETRY_DEFAULT=OFF",
            ]
        )
        run(["make", "-C", str(build), f"-j{os.cpu_count() or 1}"])
        staging = work / "stage"
        run(["make", "-C", str(build), "install", f"DESTDIR={staging}"])
        target = cache_root() / f"timescaledb-{version}-pg{PG_MAJOR}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "stage", ignore_errors=True)
        # Moved in only once complete, so an interrupted build never looks cached.
        shutil.move(str(staging), str(target / "stage"))
        return target / "stage"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch_source(work: Path) -> Path:
    """``apt-get source timescaledb`` with a private source list and state folder.

    The system's sources, lists and caches are left untouched; the rest of its apt
    configuration (proxies, keyrings) still applies.
    """
    apt = work / "apt"
    parts = apt / "sources.list.d"
    for folder in (parts, apt / "lists" / "partial", apt / "cache" / "archives" / "partial"):
        folder.mkdir(parents=True)
    stanza = [
        "Types: deb-src",
        f"URIs: {debian_mirror()}",
        f"Suites: {SOURCE_SUITE}",
        "Components: main",
    ]
    if _ARCHIVE_KEYRING.exists():
        stanza.append(f"Signed-By: {_ARCHIVE_KEYRING}")
    (parts / "lumeau-timescaledb.sources").write_text("\n".join(stanza) + "\n")
    options = [
        "-o",
        "Dir::Etc::sourcelist=/dev/null",
        "-o",
        f"Dir::Etc::sourceparts={parts}",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
        "-o",
        f"Dir::Cache={apt / 'cache'}",
        "-o",
        "Acquire::Languages=none",
        # The download folder is ours and root-owned; _apt could not write it.
        "-o",
        "APT::Sandbox::User=root",
    ]
    log.info("fetching the timescaledb source package (%s, deb-src)", SOURCE_SUITE)
    try:
        run(["apt-get", *options, "update"])
        src = work / "src"
        src.mkdir()
        run(["apt-get", *options, "source", "--only-source", "timescaledb"], cwd=src)
    except ServiceError as exc:
        raise MissingDependency(
            f"could not fetch the timescaledb source package from the '{SOURCE_SUITE}' "
            f"suite of the configured Debian mirror:\n{exc}\n"
            "Set LUMEAU_TIMESCALEDB_SUITE to a suite that has it, or install TimescaleDB "
            f"for PostgreSQL {PG_MAJOR} another way (see docs/operations.md)."
        ) from exc
    trees = [
        path for path in src.iterdir() if path.is_dir() and path.name.startswith("timescaledb-")
    ]
    if len(trees) != 1:
        raise ServiceError(f"unexpected apt-get source result in {src}: {sorted(src.iterdir())}")
    return trees[0]


def _source_version(source: Path) -> str:
    config = (source / "version.config").read_text()
    match = re.search(r"^version\s*=\s*([0-9][0-9A-Za-z.\-]*)", config, re.MULTILINE)
    if match is None:
        raise ServiceError(f"no version in {source / 'version.config'}")
    return match.group(1)
