"""What OpenTelemetry instrumentation costs on the scalar call ``plugin.call('add', 1, 2)``.

Usage: ``python benchmarks/bench_telemetry.py [--quick] [--json out.json]``.

Four plugins of the same tiny WAT component live in one process, each bound to a
different telemetry state at load, and are timed round-robin in batches (GC off):

- *baseline*: loaded while ``opentelemetry`` cannot be imported (as without the
  ``wasmplug[otel]`` extra);
- *API only*: ``opentelemetry-api`` imported, no SDK provider set;
- *SDK, sampled*: an SDK ``TracerProvider`` (``BatchSpanProcessor`` into an exporter
  that drops the spans) and ``MeterProvider`` (an in-memory reader): one span and one
  histogram record per call;
- *SDK, not sampled*: the same, with the ``ALWAYS_OFF`` sampler (spans are not
  recorded; the histogram still is).

Each row reports the median wall time per call over batches and the difference
to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from wasmplug import Manifest, Plugin, PluginHost

ADD_WAT = """
(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32)
      (i32.add (local.get 0) (local.get 1))))
  (core instance $i (instantiate $m))
  (func (export "add") (param "a" s32) (param "b" s32) (result s32)
    (canon lift (core func $i "add")))
)
"""

BASELINE = "baseline: no opentelemetry importable"
API_ONLY = "instrumentation overhead: API only (no SDK)"
SDK_ON = "instrumentation overhead: SDK, span sampled + histogram"
SDK_OFF = "instrumentation overhead: SDK, span not sampled + histogram"


def _load(host: PluginHost) -> Plugin:
    return host.load(ADD_WAT.encode(), allow_unsigned=True, manifest=Manifest(name="add"))


def _plugins(host: PluginHost) -> dict[str, Plugin]:
    from wasmplug import _telemetry

    plugins: dict[str, Plugin] = {}
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "opentelemetry"}
    for k in saved:
        del sys.modules[k]
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import now fails
    try:
        plugins[BASELINE] = _load(host)
        assert plugins[BASELINE]._tel is None
    finally:
        del sys.modules["opentelemetry"]
        sys.modules.update(saved)

    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    plugins[API_ONLY] = _load(host)
    assert plugins[API_ONLY]._tel is None

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    for name, sampler in ((SDK_ON, None), (SDK_OFF, ALWAYS_OFF)):
        tracers = TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
        tracers.add_span_processor(BatchSpanProcessor(Drop()))
        get_t, get_m = trace.get_tracer_provider, metrics.get_meter_provider
        trace.get_tracer_provider = lambda t=tracers: t  # type: ignore[misc]
        metrics.get_meter_provider = lambda: meters  # type: ignore[assignment]
        try:
            plugins[name] = _load(host)
        finally:
            trace.get_tracer_provider, metrics.get_meter_provider = get_t, get_m  # type: ignore[assignment,misc]
        assert plugins[name]._tel is not None
    _telemetry.refresh()
    return plugins


def _batch(call: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the rows to this file")
    opts = parser.parse_args()
    batches, per_batch = (15, 2_000) if opts.quick else (41, 5_000)
    with PluginHost(cache_dir=False) as host:
        plugins = _plugins(host)
        calls = {name: (lambda p=p: p.call("add", 1, 2)) for name, p in plugins.items()}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            _batch(call, per_batch)  # warm up
        gc.disable()
        try:
            for _ in range(batches):
                for name, call in calls.items():
                    times[name].append(_batch(call, per_batch))
        finally:
            gc.enable()
    base = statistics.median(times[BASELINE])
    rows = []
    print(f"{'row':<62} {'median':>9} {'vs baseline':>12}")
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"row": name, "median_us": med * 1e6, "delta_us": (med - base) * 1e6})
        delta = "" if name == BASELINE else f"{(med - base) * 1e6:+.2f} µs"
        print(f"{name:<62} {med * 1e6:7.2f} µs {delta:>12}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
