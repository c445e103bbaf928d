"""The job server that runs *inside* MicroPython (copied to ``/lib/_lumeau_agent.py``).

``runner.mjs`` hands each job line to ``handle`` and writes the JSON text it
returns back to the harness. A job is one of::

    {"id": 1, "code": "print(1)"}                  exec in a fresh namespace
    {"id": 2, "expr": "sys.implementation.name"}   eval in a fresh namespace
    {"id": 3, "module": "edge.protocol", "func": "encode",
     "args": [...wire...], "kwargs": {...wire...}}
    {"id": 4, "module": "edge.protocol", "func": "encode",
     "many": [[...args...], ...]}                   one call per argument list

and the reply ``{"id", "ok": true, "result": <wire>}`` or
``{"id", "ok": false, "error": "<traceback>", "exception": {...}}``. For
``many`` the result is a list with, per call, ``[true, result]`` or
``[false, exception description]``, so one round trip carries thousands of calls.
``handle`` never raises: whatever the job does, the server keeps serving.
"""

import builtins
import io
import json
import sys

import _lumeau_wire as wire


def _no_input(*args):
    raise EOFError("no stdin under the test harness")


# The port's input() waits for a key forever; make it fail like a closed stdin.
builtins.input = _no_input


def _traceback(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    return buf.getvalue()


def _namespace():
    return {"__name__": "__main__", "sys": sys}


def _function(module, func):
    mod = __import__(module)
    for part in module.split(".")[1:]:
        mod = getattr(mod, part)
    return getattr(mod, func)


def _many(fn, arglists):
    out = []
    for wired in arglists:
        try:
            out.append([True, wire.to_wire(fn(*wire.from_wire(wired)))])
        except Exception as e:  # each call's outcome is data
            out.append([False, {"__exception__": wire.describe_exception(e)}])
    return _Wired(out)


class _Wired:
    """A result that is already in wire form."""

    def __init__(self, value):
        self.value = value


def _run(job):
    if "code" in job:
        exec(job["code"], _namespace())
        return None
    if "expr" in job:
        return eval(job["expr"], _namespace())
    fn = _function(job["module"], job["func"])
    if "many" in job:
        return _many(fn, job["many"])
    args = wire.from_wire(job.get("args", []))
    kwargs = wire.from_wire(job.get("kwargs", {}))
    return fn(*args, **kwargs)


def echo(value):
    """The value itself: lets the harness test the wire both ways."""
    return value


def handle(line):
    job_id = None
    try:
        job = json.loads(line)
        job_id = job.get("id")
        result = _run(job)
        result = result.value if isinstance(result, _Wired) else wire.to_wire(result)
        return json.dumps({"id": job_id, "ok": True, "result": result})
    except BaseException as e:  # report everything, keep serving
        try:
            exc = wire.describe_exception(e)
        except BaseException:
            exc = {"type": type(e).__name__, "args": [], "attrs": {}}
        reply = {"id": job_id, "ok": False, "error": _traceback(e), "exception": exc}
        return json.dumps(reply)
