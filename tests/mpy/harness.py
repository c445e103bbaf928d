"""Run ``edge/`` code inside the real MicroPython interpreter and compare with CPython.

MicroPython's WebAssembly port runs in one long-lived Node.js process
(``runner.mjs``) that loads the interpreter once and copies the repository's
``edge/`` package into its virtual file system, so ``import edge.protocol``
works unchanged. Jobs and replies are JSON lines; values cross with the
convention of ``wire.py``, the same code on both interpreters.

    >>> mpy = MicroPythonProcess(ensure_micropython())
    >>> mpy.call("edge.protocol", "parse_topic", "lumeau/v1/dev/c-1/up/status")
    ('dev', 'c-1', 'up', 'status')
    >>> mpy.run("print(1 + 1)")
    '2\\n'
    >>> mpy.assert_same("edge.protocol", "encode", msg)  # same bytes on both
    >>> mpy.close()

A job that hangs is killed after ``timeout`` seconds (``MicroPythonTimeout``)
and the next job starts a fresh interpreter; a Python exception inside
MicroPython is a ``MicroPythonError`` and the process keeps serving.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import os
import queue
import struct
import subprocess
import threading
import time
import traceback as traceback_module
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import wire
from .install import REPO_ROOT, find_node

RUNNER = Path(__file__).resolve().with_name("runner.mjs")
_AGENT_FILES = (
    (Path(__file__).resolve().with_name("wire.py"), "/lib/_lumeau_wire.py"),
    (Path(__file__).resolve().with_name("agent.py"), "/lib/_lumeau_agent.py"),
)
DEFAULT_TREES: Mapping[str, Path] = {"/lib/edge": REPO_ROOT / "edge"}

# The port's first GC heap. Its heap grows on demand (split heap), so this is
# where a run starts, not a cap; 256 KiB is the order of an ESP32's free RAM.
DEFAULT_HEAPSIZE = 256 * 1024
DEFAULT_TIMEOUT = 30.0
STARTUP_TIMEOUT = 60.0


# ---------------------------------------------------------------- values


@dataclass(frozen=True, eq=False)
class RemoteException:
    """An exception as it crossed the wire: type name, args, public attributes."""

    type: str
    args: tuple[Any, ...]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteException) and same(self, other)

    def __hash__(self) -> int:
        return hash((self.type, len(self.args)))

    def __getattr__(self, name: str) -> Any:
        # e.code, e.field ... for the exception's own attributes
        attrs = self.__dict__.get("attrs", {})
        if name in attrs:
            return attrs[name]
        raise AttributeError(name)

    def __str__(self) -> str:
        return f"{self.type}{self.args!r} {self.attrs!r}"


def _make_exception(name: str, args: tuple[Any, ...], attrs: dict[str, Any]) -> RemoteException:
    return RemoteException(name, args, attrs)


def decode_wire(obj: Any) -> Any:
    """A wire value (after ``json.loads``) back as a Python value."""
    return wire.from_wire(obj, _make_exception)


def roundtrip(value: Any) -> Any:
    """value as it looks after crossing the wire (what the other side receives)."""
    return decode_wire(json.loads(json.dumps(wire.to_wire(value))))


def _float_bits(x: float) -> bytes:
    return struct.pack(">d", x)


def difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where a and b differ, strictly, or None when they are the same.

    Stricter than ``==``: ``1``, ``1.0`` and ``True`` differ, floats are
    compared bit for bit (``-0.0 != 0.0``, ``nan`` equals the same ``nan``),
    and tuples differ from lists.
    """
    where = path or "<top>"
    if type(a) is not type(b):
        ta, tb = type(a).__name__, type(b).__name__
        return f"at {where}: {_short(a, 200)} ({ta}) vs {_short(b, 200)} ({tb})"
    if isinstance(a, float):
        if _float_bits(a) != _float_bits(b):
            return f"at {where}: {a!r} vs {b!r}"
        return None
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"at {where}: length {len(a)} vs {len(b)}: {_short(a, 200)} vs {_short(b, 200)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(a, dict):
        if set(a) != set(b):
            only_a = sorted(map(repr, set(a) - set(b)))
            only_b = sorted(map(repr, set(b) - set(a)))
            return f"at {where}: keys only in the first {only_a}, only in the second {only_b}"
        keys_b = {k: k for k in b}  # b's own key objects (1, 1.0 and True hash alike)
        for k in a:
            kb = keys_b[k]
            found = difference(k, kb, f"{path}{{key {k!r}}}") or difference(
                a[k], b[k], f"{path}[{k!r}]"
            )
            if found:
                return found
        return None
    if isinstance(a, RemoteException):
        if a.type != b.type:
            return f"at {where}: exception {a.type} vs {b.type}"
        return difference(a.args, b.args, f"{path}.args") or difference(
            a.attrs, b.attrs, f"{path}.attrs"
        )
    if a != b:
        return f"at {where}: {_short(a, 200)} vs {_short(b, 200)}"
    return None


def same(a: Any, b: Any) -> bool:
    """True when ``difference(a, b)`` finds nothing."""
    return difference(a, b) is None


# ---------------------------------------------------------------- errors


class HarnessError(Exception):
    """The MicroPython process could not answer."""


class MicroPythonTimeout(HarnessError):
    """A job ran past its timeout; the interpreter was killed (next job restarts it)."""


class MicroPythonCrashed(HarnessError):
    """Node.js or the WebAssembly machine died; the next job restarts it."""


class MicroPythonError(Exception):
    """Python code inside MicroPython raised.

    ``exception`` is the RemoteException (type name, args, attributes such as
    a ProtocolError's ``code``/``field``); ``traceback`` is MicroPython's text.
    """

    def __init__(self, exception: RemoteException, traceback: str, stdout: str = "") -> None:
        super().__init__(f"{exception.type} in MicroPython:\n{traceback.rstrip()}")
        self.exception = exception
        self.traceback = traceback
        self.stdout = stdout


@dataclass
class Outcome:
    """What a call did on one interpreter: a value, or a RemoteException."""

    ok: bool
    value: Any = None
    error: RemoteException | None = None
    detail: str = ""  # traceback text when it raised

    def describe(self) -> str:
        if self.ok:
            return f"returned {_short(self.value)}"
        return f"raised {self.error}"


# ---------------------------------------------------------------- CPython side


def _function(module: str, func: str) -> Any:
    return getattr(importlib.import_module(module), func)


def cpython_outcome(module: str, func: str, *args: Any, **kwargs: Any) -> Outcome:
    """Call module.func in this process, arguments and result through the wire."""
    fn = _function(module, func)
    args2, kwargs2 = roundtrip(list(args)), roundtrip(kwargs)
    try:
        result = fn(*args2, **kwargs2)
    except Exception as exc:
        detail = "".join(traceback_module.format_exception(exc))
        return Outcome(False, error=roundtrip(exc), detail=detail)
    return Outcome(True, roundtrip(result))


def cpython_outcomes(module: str, func: str, arglists: Iterable[Sequence[Any]]) -> list[Outcome]:
    """``cpython_outcome`` for each argument list."""
    return [cpython_outcome(module, func, *args) for args in arglists]


def outcome_difference(mpy: Outcome, cpy: Outcome, only: Iterable[str] | None = None) -> str | None:
    """How two outcomes differ, or None: the same value, or the same exception.

    Exceptions are the same when type, args and attributes are; with ``only``
    (attribute names), when the type and those attributes are.
    """
    if mpy.ok != cpy.ok:
        return f"MicroPython {mpy.describe()}, CPython {cpy.describe()}"
    if mpy.ok:
        return difference(mpy.value, cpy.value)
    assert mpy.error is not None and cpy.error is not None
    if only is None:
        return difference(mpy.error, cpy.error)
    names = list(only)
    return difference(
        (mpy.error.type, {n: mpy.error.attrs.get(n) for n in names}),
        (cpy.error.type, {n: cpy.error.attrs.get(n) for n in names}),
    )


def call_cpython(module: str, func: str, *args: Any, **kwargs: Any) -> Any:
    """``MicroPythonProcess.call``'s twin in CPython: same wire in and out.

    Exceptions propagate as themselves.
    """
    fn = _function(module, func)
    return roundtrip(fn(*roundtrip(list(args)), **roundtrip(kwargs)))


# ---------------------------------------------------------------- MicroPython side


class MicroPythonProcess:
    """One Node.js process running MicroPython, serving jobs until ``close``.

    Parameters
    ----------
    package : Path
        The npm package folder (``ensure_micropython()``).
    trees : mapping of MicroPython folder -> host folder
        Copied into MicroPython's file system at start (default: ``edge/`` to
        ``/lib/edge``; ``/lib`` is on MicroPython's ``sys.path``).
    heapsize : int
        Initial GC heap in bytes (the port grows it on demand).
    timeout : float
        Seconds a job may take before the interpreter is killed.
    """

    def __init__(
        self,
        package: Path,
        *,
        trees: Mapping[str, Path] | None = None,
        heapsize: int = DEFAULT_HEAPSIZE,
        pystack: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        node: str | None = None,
    ) -> None:
        self.package = Path(package)
        self.trees = dict(DEFAULT_TREES if trees is None else trees)
        self.heapsize = heapsize
        self.pystack = pystack
        self.timeout = timeout
        self.node = node or find_node()
        self.startup_seconds: float | None = None  # last start, as seen from here
        self.ready_info: dict[str, Any] = {}
        self.starts = 0
        self.last_stdout = ""
        self.last_stderr = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue[bytes | None] = queue.Queue()
        self._log: collections.deque[str] = collections.deque(maxlen=200)
        self._threads: list[threading.Thread] = []
        self._next_id = 0
        self.start()

    # -- life cycle

    def start(self) -> None:
        """Start Node.js and MicroPython (closing a previous process first)."""
        self.close()
        config = {
            "package": str(self.package),
            "files": [[str(src), dst] for src, dst in _AGENT_FILES],
            "trees": [[str(src), dst] for dst, src in self.trees.items()],
            "heapsize": self.heapsize,
        }
        if self.pystack:
            config["pystack"] = self.pystack
        read_fd, write_fd = os.pipe()
        config["reply_fd"] = write_fd
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                [self.node, str(RUNNER), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                cwd=str(REPO_ROOT),
            )
        except OSError as exc:
            os.close(read_fd)
            raise HarnessError(f"cannot start {self.node}: {exc}") from exc
        finally:
            os.close(write_fd)
        self._proc = proc
        self._replies = queue.Queue()
        self._log = collections.deque(maxlen=200)
        replies = os.fdopen(read_fd, "rb")
        assert proc.stdout is not None
        self._threads = [
            threading.Thread(target=_pump, args=(replies, self._replies), daemon=True),
            threading.Thread(target=_drain, args=(proc.stdout, self._log), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.starts += 1
        try:
            ready = self._receive(STARTUP_TIMEOUT, None)
        except HarnessError:
            self.close()
            raise
        if not ready.get("ready"):
            self.close()
            raise MicroPythonCrashed(f"MicroPython did not start: {ready.get('error')}")
        self.ready_info = ready
        self.startup_seconds = time.perf_counter() - t0

    def close(self) -> None:
        """Stop the process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if proc.stdout is not None:
            proc.stdout.close()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self.close()

    def __enter__(self) -> MicroPythonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- transport

    def _receive(self, timeout: float, job_id: int | None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._replies.get(timeout=max(left, 0.0))
            except queue.Empty:
                self._kill()
                raise MicroPythonTimeout(
                    f"no answer from MicroPython within {timeout:g} s; interpreter killed"
                ) from None
            if line is None:  # the reply channel closed: Node.js is gone
                proc = self._proc
                self._kill()  # reaps it and joins the readers, so the log is complete
                code = proc.returncode if proc is not None else None
                log = "\n".join(self._log)
                raise MicroPythonCrashed(f"the MicroPython process ended (exit {code}):\n{log}")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("fatal"):
                self.close()
                raise MicroPythonCrashed(str(reply.get("error")))
            if job_id is None or reply.get("id") == job_id:
                return reply

    def _job(self, job: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        if not self.alive:
            self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next_id += 1
        job = {"id": self._next_id, **job}
        line = json.dumps(job, ensure_ascii=False) + "\n"
        try:
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
        except OSError as exc:
            self._kill()
            raise MicroPythonCrashed(f"cannot send a job to MicroPython: {exc}") from exc
        reply = self._receive(self.timeout if timeout is None else timeout, self._next_id)
        self.last_stdout = reply.get("stdout", "")
        self.last_stderr = reply.get("stderr", "")
        return reply

    def _outcome_of(self, reply: dict[str, Any]) -> Outcome:
        if reply["ok"]:
            return Outcome(True, decode_wire(reply["result"]))
        exc = decode_wire({"__exception__": reply["exception"]})
        return Outcome(False, error=exc, detail=reply.get("error", ""))

    def _raise(self, outcome: Outcome) -> Any:
        if outcome.ok:
            return outcome.value
        assert outcome.error is not None
        raise MicroPythonError(outcome.error, outcome.detail, self.last_stdout)

    # -- API

    def outcome(self, module: str, func: str, *args: Any, **kwargs: Any) -> Outcome:
        """Call module.func inside MicroPython; an exception is an Outcome, not raised."""
        job = {
            "module": module,
            "func": func,
            "args": wire.to_wire(list(args)),
            "kwargs": wire.to_wire(kwargs),
        }
        return self._outcome_of(self._job(job, None))

    def outcomes(self, module: str, func: str, arglists: Iterable[Sequence[Any]]) -> list[Outcome]:
        """One Outcome per argument list, all in one round trip."""
        job = {
            "module": module,
            "func": func,
            "many": [wire.to_wire(list(args)) for args in arglists],
        }
        values = self._raise(self._outcome_of(self._job(job, None)))
        out = []
        for ok, value in values:
            if ok:
                out.append(Outcome(True, value))
            else:
                out.append(Outcome(False, error=value))
        return out

    def call(self, module: str, func: str, *args: Any, **kwargs: Any) -> Any:
        """``module.func(*args, **kwargs)`` inside MicroPython; its result, decoded.

        Raises MicroPythonError when the function raises.
        """
        return self._raise(self.outcome(module, func, *args, **kwargs))

    def run(self, code: str, *, timeout: float | None = None) -> str:
        """Execute code (a fresh ``__main__`` namespace); return what it printed."""
        outcome = self._outcome_of(self._job({"code": code}, timeout))
        self._raise(outcome)
        return self.last_stdout

    def eval(self, expr: str, *, timeout: float | None = None) -> Any:
        """Evaluate one expression (``sys`` is pre-imported); return its value."""
        return self._raise(self._outcome_of(self._job({"expr": expr}, timeout)))

    def assert_same(self, module: str, func: str, *args: Any, **kwargs: Any) -> Any:
        """Both interpreters return, and the same value (``difference``); return it."""
        mpy = self.outcome(module, func, *args, **kwargs)
        cpy = cpython_outcome(module, func, *args, **kwargs)
        call = _call_text(module, func, args, kwargs)
        if not (mpy.ok and cpy.ok):
            raise AssertionError(
                f"{call}: expected a value from both interpreters\n"
                f"  MicroPython {mpy.describe()}\n{_indent(mpy.detail)}"
                f"  CPython     {cpy.describe()}\n{_indent(cpy.detail)}"
            )
        diff = difference(mpy.value, cpy.value)
        if diff is not None:
            raise AssertionError(
                f"{call}: MicroPython and CPython differ {diff}\n"
                f"  MicroPython returned {_short(mpy.value)}\n"
                f"  CPython     returned {_short(cpy.value)}"
            )
        return cpy.value

    def assert_same_error(
        self,
        module: str,
        func: str,
        *args: Any,
        only: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> tuple[RemoteException, RemoteException]:
        """Both interpreters raise the same exception; return (micropython, cpython).

        Same means the same type name and attributes, and the same args;
        with ``only`` (attribute names), the type and those attributes only.
        """
        mpy = self.outcome(module, func, *args, **kwargs)
        cpy = cpython_outcome(module, func, *args, **kwargs)
        call = _call_text(module, func, args, kwargs)
        if mpy.ok or cpy.ok:
            raise AssertionError(
                f"{call}: expected an exception from both interpreters\n"
                f"  MicroPython {mpy.describe()}\n  CPython     {cpy.describe()}"
            )
        assert mpy.error is not None and cpy.error is not None
        diff = outcome_difference(mpy, cpy, only)
        if diff is not None:
            raise AssertionError(
                f"{call}: the exceptions differ {diff}\n"
                f"  MicroPython raised {mpy.error}\n{_indent(mpy.detail)}"
                f"  CPython     raised {cpy.error}\n{_indent(cpy.detail)}"
            )
        return mpy.error, cpy.error

    def assert_same_many(
        self,
        module: str,
        func: str,
        arglists: Iterable[Sequence[Any]],
        *,
        only: Iterable[str] | None = None,
    ) -> list[Outcome]:
        """Each call has the same outcome on both interpreters; return CPython's.

        One round trip to MicroPython for all calls. An outcome is a value or
        an exception (compared as in ``outcome_difference``), so calls that are
        meant to fail can be mixed with ones that succeed.
        """
        lists = [list(args) for args in arglists]
        names = None if only is None else list(only)
        mpys = self.outcomes(module, func, lists)
        cpys = cpython_outcomes(module, func, lists)
        problems = []
        for args, mpy, cpy in zip(lists, mpys, cpys, strict=True):
            diff = outcome_difference(mpy, cpy, names)
            if diff is not None:
                problems.append(f"{_call_text(module, func, args, {})}: {diff}")
        if problems:
            shown = "\n  ".join(problems[:10])
            raise AssertionError(
                f"{len(problems)} of {len(lists)} calls differ between MicroPython and "
                f"CPython:\n  {shown}"
            )
        return cpys


def _short(value: Any, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _call_text(module: str, func: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{module}.{func}({text})"


def _indent(text: str) -> str:
    if not text:
        return ""
    return "".join("      " + line + "\n" for line in text.rstrip().splitlines())


def _pump(stream: IO[bytes], sink: queue.Queue[bytes | None]) -> None:
    """Reply lines into the queue; None at end of file."""
    with stream:
        for line in stream:
            sink.put(line)
    sink.put(None)


def _drain(stream: IO[bytes], log: collections.deque[str]) -> None:
    """Node's own stdout/stderr: kept (last lines) for crash reports only."""
    for raw in stream:
        log.append(raw.decode("utf-8", "replace").rstrip("\n"))
