"""The benchmark harness's own pure parts: statistics, tables, registry, runner.

Nothing here measures time or starts a service.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend import bench_cli

bench_cli.import_bench_runner()  # puts the repository root (with bench/) on sys.path

import bench  # noqa: E402
from bench import _messages  # noqa: E402
from bench._mqtt import Flow, LineCounter  # noqa: E402
from bench.harness import machine, runner  # noqa: E402
from bench.harness.context import Context  # noqa: E402
from bench.harness.registry import (  # noqa: E402
    Benchmark,
    DuplicateBenchmark,
    Registry,
    Result,
    Row,
    UnknownBenchmark,
    benchmark,
    benchmark_modules,
    discover,
)
from bench.harness.stats import median, percentile, rate, summarize  # noqa: E402
from bench.harness.table import (  # noqa: E402
    format_markdown,
    format_table,
    format_value,
    summary_note,
)

# --- statistics ----------------------------------------------------------------


def test_percentile_interpolates_like_numpy_linear() -> None:
    samples = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(samples, 0) == 15.0
    assert percentile(samples, 100) == 50.0
    assert percentile(samples, 50) == 35.0
    assert percentile(samples, 40) == pytest.approx(29.0)  # numpy.percentile(..., 40)
    assert percentile(samples, 90) == pytest.approx(46.0)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


def test_median_of_even_count_is_the_mean_of_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([7.0]) == 7.0


@pytest.mark.parametrize("q", [-1.0, 100.5, math.nan])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], q)


def test_statistics_of_nothing_are_errors() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        summarize([])


@given(
    st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentile_is_bounded_and_monotonic(samples: list[float], q1: float, q2: float) -> None:
    low, high = sorted((q1, q2))
    p_low, p_high = percentile(samples, low), percentile(samples, high)
    assert min(samples) <= p_low <= max(samples)
    assert p_low <= p_high + 1e-6 * max(1.0, abs(p_high))


def test_summary_and_spread() -> None:
    summary = summarize([100.0, 90.0, 120.0])
    assert (summary.median, summary.minimum, summary.maximum, summary.count) == (
        100.0,
        90.0,
        120.0,
        3,
    )
    assert summary.spread == pytest.approx(0.3)
    assert summarize([0.0]).spread == 0.0


def test_rate() -> None:
    assert rate(1000, 0.5) == 2000.0
    with pytest.raises(ValueError):
        rate(10, 0.0)


# --- table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (48213.7, "48,214"),
        (1234567, "1,234,567"),
        (512.4, "512"),
        (12.345, "12.3"),
        (1.5, "1.50"),
        (0.012345, "0.0123"),
        (0.0, "0"),
        (None, "-"),
        (math.inf, "inf"),
        (-2500.0, "-2,500"),
    ],
)
def test_format_value(value: float | None, text: str) -> None:
    assert format_value(value) == text


def test_summary_note() -> None:
    note = summary_note(summarize([48000.0, 50000.0, 51000.0]), "none lost")
    assert note == "median of 3 (min 48,000, max 51,000); none lost"
    assert summary_note(summarize([5.0])) == "1 run"


def _rows() -> list[Row]:
    return [
        Row("raw.mosquitto", "QoS 0 throughput", 171507.2, "msg/s", "median of 3"),
        Row("raw.copy", "COPY text", 412391.0, "rows/s", ""),
        Row("x", "failed", None, "", "FAILED: boom"),
    ]


def test_table_columns_are_aligned() -> None:
    lines = format_table(_rows()).splitlines()
    assert lines[0].split() == ["benchmark", "metric", "value", "unit", "notes"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + 3
    assert all(line == line.rstrip() for line in lines)
    # Every row starts its columns where the header does; values end together.
    unit_at = lines[0].index("unit")
    value_end = lines[0].index("value") + len("value")
    for line in lines[2:]:
        assert line[unit_at - 2 : unit_at] == "  "
        assert line[value_end - 1] != " "
    assert "171,507" in lines[2]
    assert lines[4].split()[2] == "-"


def test_table_of_no_rows_is_just_the_header() -> None:
    assert len(format_table([]).splitlines()) == 2


def test_markdown_table_escapes_pipes() -> None:
    text = format_markdown([Row("a", "b|c", 1.0, "u", "n")])
    lines = text.splitlines()
    assert lines[0] == "| benchmark | metric | value | unit | notes |"
    assert lines[1] == "| --- | --- | ---: | --- | --- |"
    assert lines[2] == "| a | b\\|c | 1.00 | u | n |"


# --- registry ------------------------------------------------------------------


def _noop(ctx: Context) -> list[Result]:
    return [Result("m", 1.0, "u")]


def test_decorator_registers_in_the_given_registry() -> None:
    registry = Registry()

    @benchmark("group.second", "second", order=2, registry=registry)
    def second(ctx: Context) -> list[Result]:
        return []

    @benchmark("group.first", "first", order=1, registry=registry)
    def first(ctx: Context) -> list[Result]:
        return []

    @benchmark("other", "other", needs_services=False, registry=registry)
    def other(ctx: Context) -> list[Result]:
        return []

    assert [b.name for b in registry.all()] == ["group.first", "group.second", "other"]
    assert registry.all()[0].function is first
    assert not registry.all()[2].needs_services
    assert "other" in registry
    assert len(registry) == 3


def test_registry_select_by_name_or_group() -> None:
    registry = Registry()
    for name, order in (("raw.copy", 12), ("raw.mosquitto", 10), ("gateway.forward", 20)):
        registry.add(Benchmark(name, name, _noop, order))
    assert [b.name for b in registry.select(None)] == [
        "raw.mosquitto",
        "raw.copy",
        "gateway.forward",
    ]
    assert [b.name for b in registry.select(["raw"])] == ["raw.mosquitto", "raw.copy"]
    assert [b.name for b in registry.select(["gateway.forward", "raw.copy", "raw"])] == [
        "raw.mosquitto",
        "raw.copy",
        "gateway.forward",
    ]
    with pytest.raises(UnknownBenchmark, match=r"no benchmark named 'ra'.*raw\.copy"):
        registry.select(["ra"])  # a prefix of a word is not a group


def test_registry_refuses_duplicates_and_bad_names() -> None:
    registry = Registry()
    registry.add(Benchmark("a.b", "", _noop))
    registry.add(Benchmark("a.b", "", _noop))  # the same function again: harmless

    def other(ctx: Context) -> list[Result]:
        return []

    with pytest.raises(DuplicateBenchmark):
        registry.add(Benchmark("a.b", "", other))
    for bad in ("", "A.b", "a..b", "a b", ".a"):
        with pytest.raises(ValueError):
            registry.add(Benchmark(bad, "", _noop))


def test_benchmark_modules_are_the_public_plain_modules() -> None:
    modules = benchmark_modules(bench)
    assert "bench.raw_limits" in modules
    assert not any(m.rsplit(".", 1)[1].startswith("_") for m in modules)
    assert not any(m.startswith("bench.harness") for m in modules)


def test_discovered_raw_limits() -> None:
    names = [b.name for b in discover().all()]
    assert [n for n in names if n.startswith("raw.")] == ["raw.mosquitto", "raw.paho", "raw.copy"]


def test_a_module_that_does_not_import_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text("VALUE = 1\n")
    (package / "bad.py").write_text("raise ImportError('no such engine')\n")
    registry = Registry()
    sys.path.insert(0, str(tmp_path))
    try:
        discover("fakebench", registry)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("fakebench")]:
            del sys.modules[name]
    assert registry.broken == {"fakebench.bad": "ImportError: no such engine"}
    rows, ok = runner.run_benchmarks(_context(tmp_path), registry)
    assert not ok and rows[0].benchmark == "fakebench.bad" and rows[0].value is None


# --- context and runner --------------------------------------------------------


def _context(tmp_path: Path, stopped: list[bool] | None = None) -> Context:
    def factory(run_dir: Path) -> tuple[bench.Services, None]:
        raise RuntimeError("no services in unit tests")

    return Context(
        run_dir=tmp_path, quick=True, repeats=1, services_factory=factory, log_stream=io.StringIO()
    )


def test_context_sizes_and_lazy_services(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    assert ctx.size(1_000_000, 100_000) == 100_000
    assert ctx.services_started is None
    with pytest.raises(RuntimeError, match="no services"):
        _ = ctx.services
    with pytest.raises(RuntimeError, match="unavailable"):  # remembered, not retried
        _ = ctx.services
    assert ctx.scratch_dir.is_dir()


def test_context_stops_only_services_it_started(tmp_path: Path) -> None:
    calls: list[str] = []

    class FakeServices:
        database_url = admin_database_url = "postgresql://x"
        mqtt_host, mqtt_port, mqtt_username, mqtt_password = "127.0.0.1", 1, "u", "p"
        run_dir = tmp_path
        timescaledb_version = "2.19.3"

    def factory(run_dir: Path) -> tuple[bench.Services, object]:
        return FakeServices(), lambda: calls.append("stopped")

    ctx = Context(run_dir=tmp_path, services_factory=factory, log_stream=io.StringIO())  # type: ignore[arg-type]
    assert ctx.services.mqtt_username == "u"
    ctx.close(keep_services=True)
    ctx.close()
    assert calls == []
    ctx2 = Context(run_dir=tmp_path, services_factory=factory, log_stream=io.StringIO())  # type: ignore[arg-type]
    _ = ctx2.services
    ctx2.close()
    ctx2.close()
    assert calls == ["stopped"]


def test_a_failing_benchmark_becomes_a_row(tmp_path: Path) -> None:
    registry = Registry()

    @benchmark("t.ok", "fine", order=1, registry=registry)
    def fine(ctx: Context) -> list[Result]:
        return [Result("speed", 10.0, "x/s", "n")]

    @benchmark("t.bad", "broken", order=2, registry=registry)
    def broken(ctx: Context) -> list[Result]:
        raise ValueError("boom")

    rows, ok = runner.run_benchmarks(_context(tmp_path), registry)
    assert not ok
    assert rows[0] == Row("t.ok", "speed", 10.0, "x/s", "n")
    assert rows[1].benchmark == "t.bad" and rows[1].value is None
    assert "ValueError: boom" in rows[1].notes


def test_results_document_is_json(tmp_path: Path) -> None:
    doc = runner.results_document(_rows(), {"cores": 2}, quick=True, repeats=2)
    again = json.loads(json.dumps(doc))
    assert again["machine"] == {"cores": 2}
    assert again["settings"] == {"quick": True, "repeats": 2}
    assert again["results"][0]["benchmark"] == "raw.mosquitto"
    assert again["results"][2]["value"] is None


def test_run_lists_and_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    parser = runner.build_parser()
    out = io.StringIO()
    assert runner.run(parser.parse_args(["--list"]), out=out) == 0
    assert "raw.copy" in out.getvalue()
    assert runner.run(parser.parse_args(["--only", "nope"]), out=io.StringIO()) == 2
    assert "no benchmark named 'nope'" in capsys.readouterr().err


def test_lumeau_bench_parses_the_same_options(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="lumeau")
    subparsers = parser.add_subparsers(dest="command", required=True)
    bench_cli.register(subparsers)
    args = parser.parse_args(
        ["bench", "--only", "raw.copy", "--only", "raw.paho", "--quick", "--json", "r.json"]
    )
    assert args.only == ["raw.copy", "raw.paho"]
    assert args.quick and args.json == Path("r.json") and callable(args.func)


def test_repo_root_search(tmp_path: Path) -> None:
    (tmp_path / "repo" / "bench" / "harness").mkdir(parents=True)
    (tmp_path / "repo" / "bench" / "__init__.py").write_text("")
    (tmp_path / "repo" / "bench" / "harness" / "runner.py").write_text("")
    (tmp_path / "repo" / "sub").mkdir()
    assert bench_cli.find_repo_root([tmp_path / "elsewhere", tmp_path / "repo"]) == (
        tmp_path / "repo"
    )
    assert bench_cli.find_repo_root([tmp_path]) is None
    roots = bench_cli.candidate_roots(tmp_path / "repo" / "sub")
    assert roots[:2] == [(tmp_path / "repo" / "sub").resolve(), (tmp_path / "repo").resolve()]


# --- machine info --------------------------------------------------------------


def test_machine_parsers() -> None:
    cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n"
    assert machine.parse_cpu_model(cpuinfo) == "Intel(R) Xeon(R) Processor"
    assert machine.parse_cpu_model("nothing") is None
    help_text = "mosquitto version 2.0.11\n\nmosquitto is an MQTT v5.0/v3.1.1/v3.1 broker.\n"
    assert machine.parse_mosquitto_version(help_text) == "2.0.11"
    assert machine.parse_mosquitto_version("") is None


def test_describe_tolerates_missing_versions() -> None:
    line = machine.describe({"date": "2026-11-23", "cores": 2, "load_average_before": 0.5})
    assert "2 cores" in line and "PostgreSQL ?" in line and "load average 0.5" in line


# --- helpers of the raw-limits benchmarks ----------------------------------------


def test_stream_payloads_are_about_150_bytes_of_json() -> None:
    payloads = list(_messages.telemetry_stream(400))
    sizes = [len(p) for p in payloads]
    assert 140 <= sum(sizes) / len(sizes) <= 165
    first = json.loads(payloads[0])
    assert first["kind"] == "telemetry" and first["v"] == 1
    assert payloads == list(_messages.telemetry_stream(400))  # deterministic


def test_write_lines_reuses_an_identical_file(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    mean = _messages.write_lines(path, 50)
    assert len(path.read_bytes().splitlines()) == 50
    stamp = path.stat().st_mtime_ns
    assert _messages.write_lines(path, 50) == pytest.approx(mean, abs=0.1)
    assert path.stat().st_mtime_ns == stamp


def test_flow_rate_counts_intervals() -> None:
    flow = Flow(sent=101, received=101, first=10.0, last=11.0)
    assert flow.rate == 100.0 and flow.lost == 0
    assert Flow(sent=5, received=1, first=1.0, last=1.0).rate == 0.0


def test_line_counter_counts_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "out"
    counter = LineCounter(path)
    assert counter.poll() == 0
    path.write_bytes(b"1\n2\n3")
    assert counter.poll() == 2
    with path.open("ab") as handle:
        handle.write(b"\n4\n")
    assert counter.poll() == 4
