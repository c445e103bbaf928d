"""The registry of benchmarks and the data they hand back.

A benchmark is one decorated function in its own module under ``bench/``::

    from bench import Context, Result, benchmark

    @benchmark("gateway.forward", "messages/s the gateway relays site -> backend")
    def forward(ctx: Context) -> list[Result]:
        ...
        return [Result("forward rate", rate, "msg/s", "median of 3")]

The runner imports every public module of the ``bench`` package
(:func:`discover`), so nothing else has to be edited to add one.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.harness.context import Context

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*(\.[a-z0-9][a-z0-9_]*)*$")


@dataclass(frozen=True)
class Result:
    """One measured figure: ``value`` in ``unit``, with free-text ``notes``."""

    metric: str
    value: float
    unit: str
    notes: str = ""


@dataclass(frozen=True)
class Row:
    """A :class:`Result` labelled with the benchmark that produced it."""

    benchmark: str
    metric: str
    value: float | None
    unit: str
    notes: str = ""

    @classmethod
    def of(cls, benchmark: str, result: Result) -> Row:
        return cls(benchmark, result.metric, result.value, result.unit, result.notes)

    def as_dict(self) -> dict[str, object]:
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "notes": self.notes,
        }


BenchFunction = Callable[["Context"], list[Result]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    function: BenchFunction
    order: int = 100
    needs_services: bool = True


class DuplicateBenchmark(ValueError):
    pass


class UnknownBenchmark(KeyError):
    pass


class Registry:
    """Benchmarks by name, listed by ``(order, name)``."""

    def __init__(self) -> None:
        self._by_name: dict[str, Benchmark] = {}
        # module -> error, for benchmark modules that failed to import
        self.broken: dict[str, str] = {}

    def add(self, bench: Benchmark) -> Benchmark:
        if not _NAME.match(bench.name):
            raise ValueError(
                f"benchmark name {bench.name!r}: use lower-case words joined by '.' or '_'"
            )
        existing = self._by_name.get(bench.name)
        if existing is not None and existing.function is not bench.function:
            raise DuplicateBenchmark(f"benchmark {bench.name!r} is registered twice")
        self._by_name[bench.name] = bench
        return bench

    def all(self) -> list[Benchmark]:
        return sorted(self._by_name.values(), key=lambda b: (b.order, b.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def select(self, patterns: Iterable[str] | None) -> list[Benchmark]:
        """The benchmarks that ``patterns`` name, in run order.

        A pattern matches a benchmark with exactly that name or any benchmark in
        the group it prefixes (``raw`` matches ``raw.mosquitto`` and
        ``raw.copy``). No pattern at all selects everything.
        """
        every = self.all()
        wanted = [p.strip() for p in patterns or () if p.strip()]
        if not wanted:
            return every
        chosen: list[Benchmark] = []
        for pattern in wanted:
            hits = [b for b in every if b.name == pattern or b.name.startswith(pattern + ".")]
            if not hits:
                known = ", ".join(b.name for b in every) or "none"
                raise UnknownBenchmark(f"no benchmark named {pattern!r} (known: {known})")
            chosen.extend(h for h in hits if h not in chosen)
        return sorted(chosen, key=lambda b: (b.order, b.name))


REGISTRY = Registry()


def benchmark(
    name: str,
    description: str,
    *,
    order: int = 100,
    needs_services: bool = True,
    registry: Registry | None = None,
) -> Callable[[BenchFunction], BenchFunction]:
    """Register the decorated function as the benchmark ``name``.

    ``order`` sorts the run (smaller first, then by name); ``needs_services``
    tells the runner whether Mosquitto and TimescaleDB must be up.
    """

    def decorate(function: BenchFunction) -> BenchFunction:
        target = REGISTRY if registry is None else registry
        target.add(Benchmark(name, description, function, order, needs_services))
        return function

    return decorate


def benchmark_modules(package: ModuleType) -> list[str]:
    """Names of the modules under ``package`` that hold benchmarks.

    Every plain module whose name does not start with ``_``; sub-packages (such
    as ``bench.harness``) are the harness's own code and are skipped.
    """
    return sorted(
        f"{package.__name__}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if not info.ispkg and not info.name.startswith("_")
    )


def discover(package_name: str = "bench", registry: Registry | None = None) -> Registry:
    """Import every benchmark module so that its decorators fill the registry.

    A module that fails to import is recorded in ``registry.broken`` instead
    of stopping the others.
    """
    target = REGISTRY if registry is None else registry
    package = importlib.import_module(package_name)
    for module in benchmark_modules(package):
        try:
            importlib.import_module(module)
        except Exception as exc:
            target.broken[module] = f"{type(exc).__name__}: {exc}"
    return target
