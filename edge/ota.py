"""Over-the-air update integrity on the device: verify, swap in, confirm or roll back.

Runs unchanged on MicroPython 1.27 (the boards) and CPython 3.11 (the tools
and the tests), using only ``hashlib.sha256``, ``binascii``, ``json`` and
``os``. The bundle format and the update procedure are in ``docs/firmware.md``.

A bundle is a folder: the files of the role (``boot.py``, ``main.py``,
``lib/...mpy``), ``manifest.json`` (format, role, version, target .mpy ABI,
and the path, size and SHA-256 of every file) and, when signed,
``manifest.sig`` (``hmac-sha256:<64 hex>``: HMAC-SHA256 of the manifest's
exact bytes under the device's OTA key). MicroPython has no Ed25519 or RSA, so
authenticity comes from a symmetric key provisioned to each device; the
manifest's hashes then pin every file.

    >>> manifest = verify_bundle("/ota/staging", key=ota_key, role="cabinet")
    >>> check_files(manifest["files"], listing)      # the pure part, no I/O

Every refusal is an ``OtaError`` naming what is wrong (``.code``, ``.path``,
``.reason``); codes: ``bad_manifest``, ``bad_signature``, ``unsigned``,
``wrong_role``, ``wrong_abi``, ``bad_path``, ``missing_file``,
``extra_file``, ``size_mismatch``, ``hash_mismatch``.

Staging, swap and rollback (``boot_step``, ``confirm``, ``apply_staged``,
``rollback``) keep a small state file; the decision itself is the pure
function ``decide(state, max_attempts)``:

    none/confirmed  -> run
    swapping        -> finish the swap (a power cut in the middle is resumed)
    pending, attempts <  max  -> count this boot, run the new bundle
    pending, attempts >= max  -> roll back (the app never confirmed health)
    rolling_back    -> finish the rollback
"""

import binascii
import hashlib
import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from typing import Any  # noqa: F401  (used in type comments)

FORMAT = "lumeau-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIG_PREFIX = "hmac-sha256:"
STATE = "state.json"
MAX_FILES = 512
MAX_MANIFEST = 64 * 1024
MAX_PATH = 128
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./"
_HEX = "0123456789abcdef"
_CHUNK = 1024
_BLOCK = 64  # SHA-256 block size, for HMAC


class OtaError(ValueError):
    """A bundle or an update state refused: ``code``, ``path`` (or None), ``reason``."""

    def __init__(self, code, path, reason):
        # type: (str, Any, str) -> None
        super().__init__(code + ": " + reason)
        self.code = code
        self.path = path
        self.reason = reason


# --- hashing -------------------------------------------------------------------


def _hex(data):
    # type: (bytes) -> str
    return binascii.hexlify(data).decode()


def sha256_hex(data):
    # type: (bytes) -> str
    return _hex(hashlib.sha256(data).digest())


def hmac_sha256(key, msg):
    # type: (bytes, bytes) -> bytes
    """HMAC-SHA256 (RFC 2104) over ``hashlib.sha256``: MicroPython has no ``hmac``."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_BLOCK - len(key))
    inner = hashlib.sha256(bytes([b ^ 0x36 for b in key]))
    inner.update(msg)
    outer = hashlib.sha256(bytes([b ^ 0x5C for b in key]))
    outer.update(inner.digest())
    return outer.digest()


def same_bytes(a, b):
    # type: (bytes, bytes) -> bool
    """Compare in time independent of where the first difference is."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def sign(manifest_bytes, key):
    # type: (bytes, bytes) -> bytes
    """The text of ``manifest.sig`` for these manifest bytes."""
    return (SIG_PREFIX + _hex(hmac_sha256(key, manifest_bytes)) + "\n").encode()


def check_signature(manifest_bytes, sig_text, key):
    # type: (bytes, Any, bytes) -> None
    """Raise ``unsigned`` or ``bad_signature`` unless sig_text signs the bytes."""
    if sig_text is None:
        raise OtaError("unsigned", SIGNATURE, "the bundle has no signature and a key is set")
    try:
        text = sig_text.decode().strip()
    except (UnicodeError, AttributeError):
        text = ""
    if not text.startswith(SIG_PREFIX) or not _is_hex(text[len(SIG_PREFIX) :], 64):
        raise OtaError("bad_signature", SIGNATURE, "not hmac-sha256:<64 hex digits>")
    given = binascii.unhexlify(text[len(SIG_PREFIX) :])
    if not same_bytes(given, hmac_sha256(key, manifest_bytes)):
        raise OtaError("bad_signature", MANIFEST, "the signature does not match the manifest")


# --- the manifest --------------------------------------------------------------


def _is_hex(s, n):
    # type: (str, int) -> bool
    return len(s) == n and all(c in _HEX for c in s)


def _is_count(v):
    # type: (Any) -> bool
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check_path(path):
    # type: (Any) -> str
    """A relative bundle path: ``[A-Za-z0-9-_.]`` parts joined by "/", no "..", no metadata."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise OtaError("bad_path", None, "a file path must be a string of 1.." + str(MAX_PATH))
    if not all(c in _PATH_CHARS for c in path):
        raise OtaError("bad_path", path, "characters outside [A-Za-z0-9-_./]")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise OtaError("bad_path", path, "empty, '.' or '..' path component")
    if path in (MANIFEST, SIGNATURE):
        raise OtaError("bad_path", path, "the bundle's metadata cannot be one of its files")
    return path


def parse_manifest(data):
    # type: (bytes) -> dict[str, Any]
    """The manifest's fields, checked; raise ``bad_manifest`` (or ``bad_path``)."""
    if len(data) > MAX_MANIFEST:
        raise OtaError("bad_manifest", MANIFEST, "larger than " + str(MAX_MANIFEST) + " bytes")
    try:
        obj = json.loads(data.decode())
    except (UnicodeError, ValueError):
        raise OtaError("bad_manifest", MANIFEST, "not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise OtaError("bad_manifest", MANIFEST, "not a JSON object")
    if obj.get("format") != FORMAT:
        raise OtaError("bad_manifest", MANIFEST, "format is not " + FORMAT)
    for name in ("role", "version", "micropython"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise OtaError("bad_manifest", MANIFEST, name + " must be a non-empty string")
    for name in ("mpy_version", "mpy_sub_version"):
        if not _is_count(obj.get(name)):
            raise OtaError("bad_manifest", MANIFEST, name + " must be a count")
    files = obj.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise OtaError("bad_manifest", MANIFEST, "files must list 1.." + str(MAX_FILES))
    seen = {}  # type: dict[str, bool]
    last = ""
    for entry in files:
        if not isinstance(entry, dict) or sorted(entry.keys()) != ["path", "sha256", "size"]:
            raise OtaError("bad_manifest", MANIFEST, "a file entry is not {path, size, sha256}")
        path = check_path(entry["path"])
        if path in seen or path < last:
            raise OtaError("bad_manifest", path, "files must be sorted and unique")
        seen[path] = True
        last = path
        if not _is_count(entry["size"]):
            raise OtaError("bad_manifest", path, "size must be a count")
        if not isinstance(entry["sha256"], str) or not _is_hex(entry["sha256"], 64):
            raise OtaError("bad_manifest", path, "sha256 must be 64 lowercase hex digits")
    return obj


def check_target(manifest, role=None, mpy_version=None):
    # type: (dict[str, Any], Any, Any) -> None
    """Refuse a bundle for another role or another .mpy ABI than this interpreter's."""
    if role is not None and manifest["role"] != role:
        raise OtaError("wrong_role", MANIFEST, "for " + manifest["role"] + ", not " + role)
    if mpy_version is not None and manifest["mpy_version"] != mpy_version:
        raise OtaError(
            "wrong_abi",
            MANIFEST,
            ".mpy v" + str(manifest["mpy_version"]) + " but this board runs v" + str(mpy_version),
        )


def check_files(entries, listing):
    # type: (list[dict[str, Any]], dict[str, Any]) -> None
    """Compare manifest entries with ``listing``: {path: (size, sha256 hex or None)}.

    Pure: the first problem in a fixed order (missing, extra, size, hash, each
    in path order) is raised, so every interpreter gives the same verdict. A
    None hash means "not hashed yet" and is skipped.
    """
    wanted = {}  # type: dict[str, dict[str, Any]]
    for entry in entries:
        wanted[entry["path"]] = entry
    for path in sorted(wanted):
        if path not in listing:
            raise OtaError("missing_file", path, "listed in the manifest, absent")
    for path in sorted(listing):
        if path not in wanted:
            raise OtaError("extra_file", path, "present, not in the manifest")
    for path in sorted(wanted):
        size = listing[path][0]
        if size != wanted[path]["size"]:
            raise OtaError(
                "size_mismatch",
                path,
                str(size) + " bytes, the manifest says " + str(wanted[path]["size"]),
            )
    for path in sorted(wanted):
        digest = listing[path][1]
        if digest is not None and digest != wanted[path]["sha256"]:
            raise OtaError("hash_mismatch", path, "SHA-256 differs from the manifest")


# --- the file system -----------------------------------------------------------


def _join(a, b):
    # type: (str, str) -> str
    if not a or a.endswith("/"):
        return a + b
    return a + "/" + b


def _is_dir(path):
    # type: (str) -> bool
    return (os.stat(path)[0] & 0x4000) != 0


def _exists(path):
    # type: (str) -> bool
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _read(path):
    # type: (str) -> Any
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _write(path, data):
    # type: (str, bytes) -> None
    """Write through a temporary file and rename: a power cut leaves old or new."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
    _delete(path)  # MicroPython's rename does not replace on every file system
    os.rename(tmp, path)


def file_sha256(path):
    # type: (str) -> str
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return _hex(h.digest())


def list_files(root, skip=(MANIFEST, SIGNATURE)):
    # type: (str, Any) -> dict[str, Any]
    """{relative path: (size, None)} of every file under root, except ``skip`` at the top."""
    out = {}  # type: dict[str, Any]
    todo = [""]
    while todo:
        rel = todo.pop()
        for name in os.listdir(_join(root, rel) if rel else root):
            sub = _join(rel, name) if rel else name
            full = _join(root, sub)
            if _is_dir(full):
                todo.append(sub)
            elif not (rel == "" and name in skip):
                out[sub] = (os.stat(full)[6], None)
    return out


def verify_bundle(root, key=None, role=None, mpy_version=None):
    # type: (str, Any, Any, Any) -> dict[str, Any]
    """Verify the bundle folder ``root``; return its manifest or raise ``OtaError``.

    With ``key`` (the device's OTA key) the signature is required and checked
    on the manifest's bytes before anything in it is trusted.
    """
    data = _read(_join(root, MANIFEST))
    if data is None:
        raise OtaError("bad_manifest", MANIFEST, "no manifest.json in the bundle")
    if key is not None:
        check_signature(data, _read(_join(root, SIGNATURE)), key)
    manifest = parse_manifest(data)
    check_target(manifest, role, mpy_version)
    listing = list_files(root)
    check_files(manifest["files"], listing)  # missing, extra, sizes: before hashing
    for entry in manifest["files"]:
        path = entry["path"]
        listing[path] = (listing[path][0], file_sha256(_join(root, path)))
    check_files(manifest["files"], listing)
    return manifest


def board_mpy_version():
    # type: () -> Any
    """This interpreter's .mpy version (``sys.implementation._mpy & 0xff``), or None."""
    import sys

    mpy = getattr(sys.implementation, "_mpy", None)
    return None if mpy is None else mpy & 0xFF


# --- staging, swap, rollback ----------------------------------------------------


def decide(state, max_attempts):
    # type: (Any, int) -> tuple[str, dict[str, Any]]
    """(action, next state) for this boot; pure. Actions: run, swap, rollback.

    ``state`` is the parsed state file or None. The next state is what to
    write before acting; for ``run`` of a pending bundle it counts the boot.
    """
    if not isinstance(state, dict):
        return "run", {"state": "confirmed", "attempts": 0}
    phase = state.get("state")
    attempts = state.get("attempts", 0)  # type: Any
    if not _is_count(attempts):
        attempts = 0
    if phase == "swapping":
        return "swap", state
    if phase == "rolling_back":
        return "rollback", state
    if phase == "pending":
        if attempts >= max_attempts:
            nxt = dict(state)
            nxt["state"] = "rolling_back"
            return "rollback", nxt
        nxt = dict(state)
        nxt["attempts"] = attempts + 1
        return "run", nxt
    return "run", state


def confirmed(state):
    # type: (Any) -> dict[str, Any]
    """The state once the running bundle has proved healthy (e.g. broker connected)."""
    nxt = dict(state) if isinstance(state, dict) else {}
    nxt["state"] = "confirmed"
    nxt["attempts"] = 0
    return nxt


class Updater:
    """The update folders of one board.

    ``root`` is where the running bundle lives (``/`` on a board); ``ota_dir``
    holds ``state.json``, ``staging/`` (the bundle being installed),
    ``previous/`` (the files it replaced), ``current.json`` and
    ``previous.json`` (their manifests).
    """

    def __init__(self, root="/", ota_dir="/ota", max_attempts=2):
        # type: (str, str, int) -> None
        self.root = root
        self.ota = ota_dir
        self.staging = _join(ota_dir, "staging")
        self.previous = _join(ota_dir, "previous")
        self.max_attempts = max_attempts

    def state(self):
        # type: () -> Any
        data = _read(_join(self.ota, STATE))
        if data is None:
            return None
        try:
            obj = json.loads(data.decode())
        except (UnicodeError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def _save(self, state):
        # type: (dict[str, Any]) -> None
        _makedirs(self.ota)
        _write(_join(self.ota, STATE), json.dumps(state).encode())

    def boot_step(self):
        # type: () -> str
        """Call first thing in ``main.py``: finishes a swap or rolls back; returns the action."""
        action, nxt = decide(self.state(), self.max_attempts)
        if action == "swap":
            self._swap(nxt)
        elif action == "rollback":
            self._save(nxt)
            self._rollback(nxt)
        elif nxt != self.state():
            self._save(nxt)
        return action

    def confirm(self):
        # type: () -> None
        """Call when healthy: the running bundle becomes the one to keep."""
        state = self.state()
        if state is not None and state.get("state") != "confirmed":
            self._save(confirmed(state))

    def apply_staged(self, key=None, role=None):
        # type: (Any, Any) -> dict[str, Any]
        """Verify ``staging/`` and swap it in; the caller then resets the board."""
        manifest = verify_bundle(self.staging, key, role, board_mpy_version())
        current = _read(_join(self.ota, "current.json"))
        state = {
            "state": "swapping",
            "attempts": 0,
            "version": manifest["version"],
            "had_current": current is not None,
        }
        self._save(state)
        self._swap(state)
        return manifest

    def _swap(self, state):
        # type: (dict[str, Any]) -> None
        # Idempotent: every step checks what is already done, so a power cut
        # anywhere is finished by the next boot.
        new = parse_manifest(_read(_join(self.staging, MANIFEST)) or b"")
        old_data = _read(_join(self.ota, "current.json"))
        if old_data is not None:
            for entry in parse_manifest(old_data)["files"]:
                _move(_join(self.root, entry["path"]), _join(self.previous, entry["path"]))
            _write(_join(self.ota, "previous.json"), old_data)
        for entry in new["files"]:
            _move(_join(self.staging, entry["path"]), _join(self.root, entry["path"]))
        _write(_join(self.ota, "current.json"), _read(_join(self.staging, MANIFEST)) or b"")
        _remove_tree(self.staging)
        nxt = dict(state)
        nxt["state"] = "pending"
        nxt["attempts"] = 0
        self._save(nxt)

    def _rollback(self, state):
        # type: (dict[str, Any]) -> None
        cur = _read(_join(self.ota, "current.json"))
        if cur is not None:
            for entry in parse_manifest(cur)["files"]:
                _delete(_join(self.root, entry["path"]))
        prev = _read(_join(self.ota, "previous.json"))
        if prev is not None:
            for entry in parse_manifest(prev)["files"]:
                _move(_join(self.previous, entry["path"]), _join(self.root, entry["path"]))
            _write(_join(self.ota, "current.json"), prev)
        _remove_tree(self.previous)
        nxt = confirmed(state)
        nxt["rolled_back"] = state.get("version")
        self._save(nxt)


def _makedirs(path):
    # type: (str) -> None
    parts = path.split("/")
    cur = "/" if path.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        cur = _join(cur, part)
        if not _exists(cur):
            os.mkdir(cur)


def _move(src, dst):
    # type: (str, str) -> None
    if not _exists(src):
        return  # already moved (a resumed swap), or never there
    parent = dst.rsplit("/", 1)[0]
    if parent and parent != dst:
        _makedirs(parent)
    _delete(dst)
    os.rename(src, dst)


def _delete(path):
    # type: (str) -> None
    try:  # noqa: SIM105  (MicroPython has no contextlib)
        os.remove(path)
    except OSError:
        pass


def _remove_tree(path):
    # type: (str) -> None
    if not _exists(path):
        return
    if not _is_dir(path):
        os.remove(path)
        return
    for name in os.listdir(path):
        _remove_tree(_join(path, name))
    os.rmdir(path)
