"""The technician's tools (``firmware.tools``) and the device's update checks (``edge.ota``).

Builds run the real mpy-cross; boards are not available here, so ``flash`` is
tested on its error paths and its pure parts (the same copy-and-verify path
runs against the real MicroPython in ``tests/mpy/test_ota_mpy.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import stat
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import ota
from firmware.roles import ROLES
from firmware.tools import build as b
from firmware.tools import cli as fw_cli
from firmware.tools import flash as fl
from firmware.tools import manifest as mf
from firmware.tools import provision as pv

REPO = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))

# --- bundles written by hand, and their tampered copies ------------------------------


def bundle_files(role: str = "cabinet") -> dict[str, bytes]:
    """A small valid bundle: {path: bytes}, manifest included (unsigned)."""
    files = {
        "boot.py": b"import gc\n",
        "main.py": b"import app\napp.run()\n",
        "lib/app.mpy": b"M\x06\x00\x1f" + bytes(range(200)),
        "lib/edge/__init__.mpy": b"M\x06\x00\x1f\x00",
        "lib/edge/protocol.mpy": b"M\x06\x00\x1f" + b"\x55" * 3000,
    }
    entries = [mf.entry_for(path, data) for path, data in files.items()]
    files[mf.MANIFEST] = mf.dump(mf.manifest_dict(role, "1.2.3", entries))
    return files


def signed(files: dict[str, bytes], key: bytes = KEY) -> dict[str, bytes]:
    out = dict(files)
    out[mf.SIGNATURE] = mf.sign(files[mf.MANIFEST], key)
    return out


def _edit_manifest(files: dict[str, bytes], change: Any) -> dict[str, bytes]:
    obj = json.loads(files[mf.MANIFEST])
    change(obj)
    out = dict(files)
    out[mf.MANIFEST] = mf.dump(obj)
    return out


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def tamper_cases() -> list[tuple[str, dict[str, bytes], dict[str, Any], tuple[str, str | None]]]:
    """(name, files, verify_bundle kwargs, expected (code, path)); used by tests/mpy too."""
    good = signed(bundle_files())
    key = {"key": KEY}

    def without(name: str) -> dict[str, bytes]:
        out = dict(good)
        del out[name]
        return out

    def resign(files: dict[str, bytes]) -> dict[str, bytes]:
        return signed({k: v for k, v in files.items() if k != mf.SIGNATURE})

    def set_path(o: dict[str, Any], path: str) -> None:
        o["files"][0]["path"] = path

    protocol = "lib/edge/protocol.mpy"
    manifest_edit = _edit_manifest(good, lambda o: o.update(version="6.6.6"))
    return [
        ("good", good, key, ("ok", None)),
        ("good_unsigned_no_key", bundle_files(), {}, ("ok", None)),
        ("byte_changed", {**good, protocol: _flip(good[protocol], 1000)}, key,
         ("hash_mismatch", protocol)),
        ("byte_changed_no_key", {**bundle_files(), "main.py": b"import evil\napp.run()\n"}, {},
         ("size_mismatch", "main.py")),
        ("same_size_no_key", {**bundle_files(), "main.py": b"import app\napp.ran()\n"}, {},
         ("hash_mismatch", "main.py")),
        ("manifest_changed", manifest_edit, key, ("bad_signature", mf.MANIFEST)),
        ("manifest_changed_resigned_other_key", signed(manifest_edit, b"other"), key,
         ("bad_signature", mf.MANIFEST)),
        ("file_added", {**good, "lib/extra.mpy": b"M\x06"}, key, ("extra_file", "lib/extra.mpy")),
        ("file_missing", without("lib/app.mpy"), key, ("missing_file", "lib/app.mpy")),
        ("no_manifest", without(mf.MANIFEST), key, ("bad_manifest", mf.MANIFEST)),
        ("no_signature", without(mf.SIGNATURE), key, ("unsigned", mf.SIGNATURE)),
        ("garbage_signature", {**good, mf.SIGNATURE: b"hmac-sha256:zz\n"}, key,
         ("bad_signature", mf.SIGNATURE)),
        ("not_json", resign({**good, mf.MANIFEST: b"{nope"}), key,
         ("bad_manifest", mf.MANIFEST)),
        ("wrong_format", resign(_edit_manifest(good, lambda o: o.update(format="x/9"))), key,
         ("bad_manifest", mf.MANIFEST)),
        ("size_is_bool", resign(_edit_manifest(good, lambda o: o["files"][0].update(size=True))),
         key, ("bad_manifest", "boot.py")),
        ("path_escape", resign(_edit_manifest(good, lambda o: set_path(o, "../boot.py"))), key,
         ("bad_path", "../boot.py")),
        ("path_absolute", resign(_edit_manifest(good, lambda o: set_path(o, "/boot.py"))), key,
         ("bad_path", "/boot.py")),
        ("unsorted", resign(_edit_manifest(good, lambda o: o["files"].reverse())), key,
         ("bad_manifest", "lib/edge/protocol.mpy")),
        ("wrong_role", good, {**key, "role": "leak-sensor"}, ("wrong_role", mf.MANIFEST)),
        ("wrong_abi", good, {**key, "mpy_version": 5}, ("wrong_abi", mf.MANIFEST)),
    ]  # fmt: skip


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def verdict(root: str, kwargs: dict[str, Any]) -> tuple[str, str | None]:
    try:
        ota.verify_bundle(root, **kwargs)
    except ota.OtaError as exc:
        return exc.code, exc.path
    return "ok", None


@pytest.mark.parametrize("case", tamper_cases(), ids=lambda c: c[0])
def test_tampered_bundle_is_refused_with_a_reason(
    case: tuple[str, dict[str, bytes], dict[str, Any], tuple[str, str | None]], tmp_path: Path
) -> None:
    _, files, kwargs, expected = case
    write_tree(tmp_path, files)
    assert verdict(str(tmp_path), kwargs) == expected


# --- HMAC -------------------------------------------------------------------------------

# RFC 4231, test cases 1-4, 6, 7 (5 is a truncated output).
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "msg", "expected"), RFC4231)
def test_hmac_matches_rfc4231_and_cpython(key: bytes, msg: bytes, expected: str) -> None:
    assert ota.hmac_sha256(key, msg).hex() == expected
    assert ota.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_signature_of_tools_and_device_agree() -> None:
    data = bundle_files()[mf.MANIFEST]
    assert mf.sign(data, KEY) == ota.sign(data, KEY)
    ota.check_signature(data, mf.sign(data, KEY), KEY)
    assert ota.same_bytes(b"abc", b"abc") and not ota.same_bytes(b"abc", b"abd")
    assert not ota.same_bytes(b"abc", b"ab")


# --- the update state machine ---------------------------------------------------------------


def test_decide_table() -> None:
    run_ok = ("run", {"state": "confirmed", "attempts": 0})
    assert ota.decide(None, 2) == run_ok
    assert ota.decide("garbage", 2) == run_ok
    state = {"state": "pending", "attempts": 0, "version": "2"}
    assert ota.decide(state, 2) == ("run", {**state, "attempts": 1})
    assert ota.decide({**state, "attempts": 1}, 2) == ("run", {**state, "attempts": 2})
    assert ota.decide({**state, "attempts": 2}, 2) == (
        "rollback",
        {**state, "attempts": 2, "state": "rolling_back"},
    )
    assert ota.decide({"state": "swapping"}, 2)[0] == "swap"
    assert ota.decide({"state": "rolling_back"}, 2)[0] == "rollback"
    assert ota.confirmed({**state, "attempts": 2}) == {**state, "state": "confirmed"}


def _updater(tmp_path: Path) -> tuple[ota.Updater, Path]:
    root = tmp_path / "board"
    root.mkdir()
    return ota.Updater(str(root), str(root / "ota"), max_attempts=2), root


def _install_first(up: ota.Updater, root: Path, files: dict[str, bytes]) -> None:
    """What ``lumeau firmware flash`` leaves: the bundle at the root, its manifest current."""
    write_tree(root, {k: v for k, v in files.items() if k not in (mf.MANIFEST, mf.SIGNATURE)})
    (root / "ota").mkdir()
    (root / "ota" / "current.json").write_bytes(files[mf.MANIFEST])


def _second_bundle() -> dict[str, bytes]:
    files = {"boot.py": b"import gc\n", "main.py": b"import app2\n", "lib/app2.mpy": b"M\x06v2"}
    entries = [mf.entry_for(p, d) for p, d in files.items()]
    files[mf.MANIFEST] = mf.dump(mf.manifest_dict("cabinet", "2.0.0", entries))
    return signed(files)


def _board_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "ota"
    }


def test_update_confirmed_stays(tmp_path: Path) -> None:
    up, root = _updater(tmp_path)
    _install_first(up, root, bundle_files())
    new = _second_bundle()
    write_tree(root / "ota" / "staging", new)
    manifest = up.apply_staged(KEY, "cabinet")
    assert manifest["version"] == "2.0.0"
    assert up.state() == {"state": "pending", "attempts": 0, "version": "2.0.0",
                          "had_current": True}  # fmt: skip
    assert (root / "main.py").read_bytes() == b"import app2\n"
    assert not (root / "lib" / "app.mpy").exists()  # the old bundle's own files went away
    assert up.boot_step() == "run"
    up.confirm()
    assert up.boot_step() == "run" and up.boot_step() == "run"
    assert up.state()["state"] == "confirmed"
    assert (root / "main.py").read_bytes() == b"import app2\n"


def test_update_never_confirmed_rolls_back(tmp_path: Path) -> None:
    up, root = _updater(tmp_path)
    old = bundle_files()
    _install_first(up, root, old)
    before = _board_files(root)
    write_tree(root / "ota" / "staging", _second_bundle())
    up.apply_staged(KEY)
    assert [up.boot_step() for _ in range(3)] == ["run", "run", "rollback"]
    assert _board_files(root) == before
    state = up.state()
    assert state is not None and state["state"] == "confirmed"
    assert state["rolled_back"] == "2.0.0"
    assert (root / "ota" / "current.json").read_bytes() == old[mf.MANIFEST]


def test_power_cut_in_the_middle_of_a_swap_is_finished_at_boot(tmp_path: Path) -> None:
    up, root = _updater(tmp_path)
    _install_first(up, root, bundle_files())
    write_tree(root / "ota" / "staging", _second_bundle())
    (root / "ota" / "state.json").write_text('{"state": "swapping", "attempts": 0}')
    # the cut came after main.py was moved aside and before the new one moved in
    (root / "ota" / "previous").mkdir()
    (root / "main.py").rename(root / "ota" / "previous" / "main.py")
    assert up.boot_step() == "swap"
    assert (root / "main.py").read_bytes() == b"import app2\n"
    assert up.state()["state"] == "pending"


def test_a_tampered_staging_is_not_swapped_in(tmp_path: Path) -> None:
    up, root = _updater(tmp_path)
    _install_first(up, root, bundle_files())
    before = _board_files(root)
    bad = _second_bundle()
    bad["lib/app2.mpy"] = b"M\x06v3"
    write_tree(root / "ota" / "staging", bad)
    with pytest.raises(ota.OtaError) as err:
        up.apply_staged(KEY)
    assert (err.value.code, err.value.path) == ("hash_mismatch", "lib/app2.mpy")
    assert _board_files(root) == before and up.state() is None


# --- build ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source tree with the real edge/ and firmware/lib and minimal role folders."""
    root = tmp_path_factory.mktemp("src")
    shutil.copytree(REPO / "edge", root / "edge", ignore=shutil.ignore_patterns("__pycache__"))
    lib = root / "firmware" / "lib"
    lib.mkdir(parents=True)
    (lib / "net.py").write_text("import json\n")
    for role in ROLES.values():
        folder = root / "firmware" / role.folder
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "boot.py").write_text("import gc\ngc.collect()\n")
        (folder / "main.py").write_text(f"from {role.folder} import app\napp.run()\n")
        (folder / "app.py").write_text(
            "import net\nfrom edge import protocol\n\ndef run():\n    return protocol.VERSION\n"
        )
    return root


def _paths(result: b.BuildResult) -> list[str]:
    return [f["path"] for f in result.manifest["files"]]


def test_build_fixture_roles(fixture_root: Path, tmp_path: Path) -> None:
    cab = b.build("cabinet", tmp_path, source_root=fixture_root)
    paths = _paths(cab)
    assert paths[0] == "boot.py" and "main.py" in paths
    needed = [
        "cabinet/app",
        "cabinet/__init__",
        "net",
        "edge/__init__",
        "edge/protocol",
        "edge/canonjson",
        "edge/strictjson",
        "edge/_protocol_spec",
        "edge/spool",
        "edge/_spool_fs",
        "edge/schedule",
        "edge/sun",
        "edge/calendar_days",
        "edge/ota",
    ]
    for name in needed:
        assert f"lib/{name}.mpy" in paths
    for absent in ("lib/edge/_json_cpython.mpy", "lib/edge/acoustic.mpy",
                   "lib/edge/acoustic_synth.mpy"):  # fmt: skip
        assert absent not in paths
    assert (cab.folder / "main.py").read_bytes() == b"from cabinet import app\napp.run()\n"
    assert (cab.folder / "lib/edge/protocol.mpy").read_bytes()[:2] == b"M\x06"
    assert cab.manifest["micropython"] == "1.27" and cab.manifest["mpy_version"] == 6
    assert cab.manifest["version"] == "0.0.0"  # no pyproject, no git in the fixture
    ota.verify_bundle(str(cab.folder), role="cabinet", mpy_version=6)

    leak = b.build("leak-sensor", tmp_path, source_root=fixture_root)
    paths = _paths(leak)
    assert {"lib/edge/acoustic.mpy", "lib/edge/acoustic_fft.mpy",
            "lib/edge/acoustic_stats.mpy", "lib/leak_sensor/app.mpy"} <= set(paths)  # fmt: skip
    assert "lib/edge/acoustic_synth.mpy" not in paths and "lib/edge/schedule.mpy" not in paths
    ota.verify_bundle(str(leak.folder), role="leak-sensor")


def test_build_is_reproducible(fixture_root: Path, tmp_path: Path) -> None:
    one = b.build("cabinet", tmp_path / "one", source_root=fixture_root)
    two = b.build("cabinet", tmp_path / "two", source_root=fixture_root)
    assert (one.folder / mf.MANIFEST).read_bytes() == (two.folder / mf.MANIFEST).read_bytes()
    assert one.archive.read_bytes() == two.archive.read_bytes()
    with tarfile.open(one.archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and mf.MANIFEST in names
    assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}


def test_source_date_epoch_goes_into_manifest_and_archive(
    fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    result = b.build("leak-sensor", tmp_path, source_root=fixture_root)
    assert result.manifest["source_date_epoch"] == 1700000000
    with tarfile.open(result.archive) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_build_real_roles(role: str, tmp_path: Path) -> None:
    if not (REPO / "firmware" / ROLES[role].folder / "main.py").is_file():
        pytest.skip(f"firmware/{ROLES[role].folder}/main.py is not written yet")
    result = b.build(role, tmp_path)
    ota.verify_bundle(str(result.folder), role=role, mpy_version=6)
    paths = set(_paths(result))
    assert {"boot.py", "main.py", "lib/edge/protocol.mpy", "lib/edge/spool.mpy"} <= paths
    assert "lib/edge/acoustic_synth.mpy" not in paths
    # the edge modules the role declares must be in its bundle, whatever the app imports
    for name in ROLES[role].edge_entries:
        assert "lib/" + name.replace(".", "/") + ".mpy" in paths


def test_compile_error_names_file_and_line(fixture_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "src"
    shutil.copytree(fixture_root, root)
    (root / "firmware" / "lib" / "net.py").write_text("x = 1\ndef f(:\n    pass\n")
    with pytest.raises(b.BuildError, match=r"net\.py:2"):
        b.build("cabinet", tmp_path / "out", source_root=root)
    (root / "firmware" / "lib" / "net.py").write_text("x = 1\nreturn 2\n")
    with pytest.raises(b.BuildError, match=r"mpy-cross failed on .*net\.py:2: SyntaxError"):
        b.compile_file(root / "firmware" / "lib" / "net.py", "lib/net.py", tmp_path / "n.mpy")


def test_wrong_mpy_cross_version_is_refused(fixture_root: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake_mpy_cross.py"
    fake.write_text("print('MicroPython v1.19 on 2022; mpy-cross emitting mpy v5.2')\n")
    with pytest.raises(b.BuildError, match=r"emits \.mpy v5\.2.*loads v6\.3"):
        b.build(
            "cabinet", tmp_path, source_root=fixture_root, mpy_cross=[sys.executable, str(fake)]
        )
    with pytest.raises(b.BuildError, match="unknown role"):
        b.build("street-lamp", tmp_path, source_root=fixture_root)


def _board_sources() -> list[Path]:
    """edge/ and firmware/, less the CPython-only tools (they run on the technician's PC)."""
    files = sorted((REPO / "edge").glob("*.py")) + sorted((REPO / "firmware").rglob("*.py"))
    cpython_only = {REPO / "firmware" / "tools", REPO / "firmware" / "roles.py"}
    return [p for p in files if "__pycache__" not in p.parts and not cpython_only & {p, *p.parents}]


@pytest.mark.parametrize("source", _board_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_edge_and_firmware_file_compiles(source: Path, tmp_path: Path) -> None:
    data = b.compile_file(source, source.name, tmp_path / "out.mpy")
    assert b.mpy_header(data)[0] == 6


# --- provision ------------------------------------------------------------------------------


def _spec(device: str = "cab-0042", **kw: Any) -> pv.DeviceSpec:
    args: dict[str, Any] = {"role": "cabinet", "host": "10.0.0.2", "port": 8883,
                            "site": "lyon-3", "lat": 45.75, "lon": 4.85}  # fmt: skip
    args.update(kw)
    return pv.DeviceSpec(device=device, **args)


def test_provision_writes_a_private_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    result = pv.provision(_spec(ca=ca), tmp_path / "run")
    assert result.folder == tmp_path / "run" / "devices" / "cab-0042"
    assert stat.S_IMODE(result.folder.stat().st_mode) == 0o700
    for name in ("config.json", "ca.pem"):
        assert stat.S_IMODE((result.folder / name).stat().st_mode) == 0o600
    config = pv.load_config(result.folder)
    assert config["device"] == config["mqtt"]["username"] == "cab-0042"
    assert config["mqtt"]["password"] == result.password and len(result.password) >= 24
    assert config["mqtt"]["tls"] is True and config["mqtt"]["ca"] == "ca.pem"
    assert config["location"] == {"lat": 45.75, "lon": 4.85}
    assert len(pv.ota_key_of(config)) == 32
    assert result.password not in repr(result)
    with pytest.raises(pv.ProvisionError, match="already provisioned"):
        pv.provision(_spec(), tmp_path / "run")
    again = pv.provision(_spec(), tmp_path / "run", force=True)
    assert again.password != result.password


@pytest.mark.parametrize(
    "device", ["", "Cab-1", "cab/1", "cab 1", "a" * 65, "cab#", "cab+1", "câb"]
)
def test_provision_refuses_bad_ids(device: str, tmp_path: Path) -> None:
    with pytest.raises(pv.ProvisionError, match="invalid device id"):
        pv.provision(_spec(device), tmp_path)
    assert not (tmp_path / "devices").exists()


def test_provision_refuses_bad_input(tmp_path: Path) -> None:
    for spec, message in [
        (_spec(lat=91.0), "latitude"),
        (_spec(lon=float("nan")), "longitude"),
        (_spec(site="Lyon 3"), "invalid site id"),
        (_spec(role="lamp"), "unknown role"),
        (_spec(ca=tmp_path / "none.pem"), "cannot read"),
    ]:
        with pytest.raises(pv.ProvisionError, match=message):
            pv.provision(spec, tmp_path)
    assert pv.parse_broker("broker.example:8883") == ("broker.example", 8883)
    assert pv.parse_broker("[::1]:1883") == ("::1", 1883)
    for bad in ("broker", "broker:0", "broker:99999", ":1883", "::1:1883", "[zz]:1883"):
        with pytest.raises(pv.ProvisionError):
            pv.parse_broker(bad)


def test_provision_cli_hides_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["firmware", "provision", "leak-7", "--role", "leak-sensor", "--broker",
            "127.0.0.1:1883", "--site", "s1", "--lat", "1", "--lon", "2",
            "--run-dir", str(tmp_path)]  # fmt: skip
    assert _main(argv) == 0
    out = capsys.readouterr().out
    password = pv.load_config(tmp_path / "devices" / "leak-7")["mqtt"]["password"]
    assert password not in out and "mode 0600" in out
    assert _main([*argv, "--force", "--show-password"]) == 0
    password = pv.load_config(tmp_path / "devices" / "leak-7")["mqtt"]["password"]
    assert password in capsys.readouterr().out
    assert _main([*argv[:2], "BAD", *argv[3:]]) == 2
    assert "invalid device id" in capsys.readouterr().err


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="lumeau")
    fw_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


# --- flash ----------------------------------------------------------------------------------


@pytest.fixture
def built(fixture_root: Path, tmp_path: Path) -> Iterator[Path]:
    yield b.build("cabinet", tmp_path / "build", source_root=fixture_root).folder


def test_flash_nonexistent_port(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(fl.FlashError, match="does not exist") as err:
        fl.flash("/dev/ttyLUMEAU-NONE", built)
    assert err.value.code == "no_such_port"
    with pytest.raises(fl.FlashError) as err:
        fl.flash("u97", built)
    assert err.value.code == "no_such_port" and "/dev/ttyUSB97" in str(err.value)
    argv = ["firmware", "flash", "--port", "/dev/ttyLUMEAU-NONE", "--role", "cabinet",
            "--bundle", str(built)]  # fmt: skip
    assert _main(argv) == 2
    assert "[no_such_port]" in capsys.readouterr().err


def test_flash_refuses_a_bundle_that_does_not_match(built: Path) -> None:
    with (built / "lib" / "edge" / "protocol.mpy").open("ab") as f:
        f.write(b"\x00")
    with pytest.raises(fl.FlashError, match=r"protocol\.mpy") as err:
        fl.flash("/dev/null", built)
    assert err.value.code == "bad_bundle"


def test_flash_refuses_a_bundle_of_another_role(built: Path) -> None:
    with pytest.raises(fl.FlashError) as err:
        fl.flash("/dev/null", built, role="leak-sensor")
    assert err.value.code == "wrong_role"


def test_flash_on_a_port_that_is_not_micropython(built: Path) -> None:
    # /dev/null exists but is no serial port: mpremote cannot open it
    with pytest.raises(fl.FlashError, match="cannot open /dev/null as a serial port") as err:
        fl.flash("/dev/null", built)
    assert err.value.code == "cannot_open"


def test_check_board_versions() -> None:
    manifest = mf.load(bundle_files()[mf.MANIFEST])
    fl.check_board(fl.BoardInfo("micropython", "1.27.0", 6 | (3 << 8) | (10 << 10)), manifest)
    for info, message in [
        (fl.BoardInfo("micropython", "1.22.2", 6 | (2 << 8)), "runs MicroPython 1.22.2"),
        (fl.BoardInfo("micropython", "1.27.0", 5), "loads .mpy v5"),
        (fl.BoardInfo("cpython", "3.11.2", -1), "not MicroPython"),
    ]:
        with pytest.raises(fl.FlashError, match=message) as err:
            fl.check_board(info, manifest)
        assert err.value.code == "wrong_micropython"
    assert fl.parse_probe("noise\nLUMEAU-PROBE micropython 1.27.0 1542\n") == fl.BoardInfo(
        "micropython", "1.27.0", 1542
    )
    with pytest.raises(fl.FlashError) as err:
        fl.parse_probe(">>> ")
    assert err.value.code == "not_micropython"


def test_verify_report_is_pure_and_specific() -> None:
    entries = [mf.entry_for("main.py", b"x"), mf.entry_for("lib/a.mpy", b"yy")]
    good = {e.path: (e.size, e.sha256) for e in entries}
    fl.verify_report(entries, {**good, "spool/0001.seg": (3, "0" * 64)})  # extras are fine
    text = "\n".join(f"LUMEAU-HASH {p} {s} {h}" for p, (s, h) in good.items())
    assert fl.parse_hash_report(text + "\nLUMEAU-HASH gone.py - -\n") == good
    for report, message in [
        ({"main.py": good["main.py"]}, "lib/a.mpy: listed in the manifest, absent"),
        ({**good, "lib/a.mpy": (3, good["lib/a.mpy"][1])}, "lib/a.mpy: 3 bytes"),
        ({**good, "main.py": (1, "0" * 64)}, "main.py: SHA-256 differs"),
    ]:
        with pytest.raises(fl.FlashError, match=message) as err:
            fl.verify_report(entries, report)
        assert err.value.code == "verify_failed"
