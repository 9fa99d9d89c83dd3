"""`steplog bench`: what a `log()` call costs on this machine, next to the floor of a bare call.

Each measure times steplog and its floor with the same loop (the same function, closed over a
different callee), in alternating blocks so that a noisy machine disturbs both alike, and
reports medians of the per-call times. The floors are a C builtin (`len`) called with the same
freshly built dict, a C builtin called with one float (for the pre-bound handle), and
`numpy.histogram` for the histogram.

Next to each call measure it also times an empty method of the extension with `log()`'s
signature (`steplog._core._EmptyCall`), in the same alternation: what calling into the binding
costs before steplog does any work, the part of a ratio that nothing inside steplog can remove.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import tempfile
import time
import types
from typing import Any, Callable

import numpy as np

from steplog._core import _EmptyCall

Loop = Callable[[int], int]

# Targets from the design (section 4): steplog / floor.
TARGETS = {"one": 2.0, "ten": 1.8, "handle": 1.5, "hist": 0.2}


def loop_one(f: Callable[[dict[str, float]], Any]) -> Loop:
    """`f({"loss": x})` n times; returns the ns it took."""

    def loop(n: int) -> int:
        x = 0.5
        t0 = time.perf_counter_ns()
        for _ in range(n):
            f({"loss": x})
        return time.perf_counter_ns() - t0

    return loop


def loop_ten(f: Callable[[dict[str, float]], Any]) -> Loop:
    """`f(<a fresh 10-key dict>)` n times; returns the ns it took."""

    def loop(n: int) -> int:
        x = 0.5
        t0 = time.perf_counter_ns()
        for _ in range(n):
            f(
                {
                    "m0": x,
                    "m1": x,
                    "m2": x,
                    "m3": x,
                    "m4": x,
                    "m5": x,
                    "m6": x,
                    "m7": x,
                    "m8": x,
                    "m9": x,
                }
            )
        return time.perf_counter_ns() - t0

    return loop


def loop_handle(h: Any) -> Loop:
    """`h.log(x)` n times; returns the ns it took."""

    def loop(n: int) -> int:
        x = 0.5
        t0 = time.perf_counter_ns()
        for _ in range(n):
            h.log(x)
        return time.perf_counter_ns() - t0

    return loop


def _calibrate(loop: Loop, block_ns: float) -> int:
    loop(1)
    n = 1
    while True:
        t = loop(n)
        if t >= block_ns / 4 or n >= 1 << 24:
            break
        n *= 4
    return max(1, round(n * block_ns / max(t, 1)))


def measure_alternating(
    loops: list[Loop],
    budget_s: float,
    settle: Callable[[], Any] = lambda: None,
    block_ms: float = 5.0,
    min_blocks: int = 5,
) -> tuple[list[float], int]:
    """Median ns per call of each loop, timed in alternating blocks; and the block count.

    `settle()` runs untimed after each block of the first loop (steplog's flush, so that its
    writer thread is idle while the others are timed).
    """
    block_ns = block_ms * 1e6
    counts = []
    for i, loop in enumerate(loops):
        counts.append(_calibrate(loop, block_ns))
        if i == 0:
            settle()
    times: list[list[float]] = [[] for _ in loops]
    deadline = time.perf_counter_ns() + budget_s * 1e9
    while len(times[0]) < min_blocks or time.perf_counter_ns() < deadline:
        for i, (loop, n) in enumerate(zip(loops, counts)):
            times[i].append(loop(n) / n)
            if i == 0:
                settle()
    return [statistics.median(t) for t in times], len(times[0])


def median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6


def run_bench(quick: bool = False, out: Callable[[str], Any] = print) -> dict[str, Any]:
    """Measures, prints the table through `out`, and returns the numbers."""
    import steplog

    budget = 0.25 if quick else 2.5
    reps = 5 if quick else 25
    started = time.perf_counter()
    rows: dict[str, Any] = {}
    tmp = tempfile.mkdtemp(prefix="steplog-bench-")
    try:
        run = steplog.init(project="steplog-bench", dir=tmp)
        empty = _EmptyCall()
        try:
            handle = run.metric("loss")
            floor = types.SimpleNamespace(log=math.isfinite)
            for key, make, target, callee in (
                ("one", loop_one, run.log, len),
                ("ten", loop_ten, run.log, len),
                ("handle", loop_handle, handle, floor),
            ):
                arg = empty if key == "handle" else empty.log
                (s, e, f), blocks = measure_alternating(
                    [make(target), make(arg), make(callee)], budget, run.flush
                )
                rows[key] = (s, f, e)
        finally:
            stats = run.finish()
        data = np.random.default_rng(0).standard_normal(1_000_000).astype(np.float32)
        h = steplog.Histogram(data, num_bins=64)
        same = bool(np.array_equal(h.counts, np.histogram(data, bins=64)[0]))
        s = median_ms(lambda: steplog.Histogram(data, num_bins=64), reps)
        f = median_ms(lambda: np.histogram(data, bins=64), reps)
        rows["hist"] = (s, f, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.perf_counter() - started
    out(
        f"steplog bench: steplog {steplog.__version__}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {elapsed:.1f} s"
    )
    out("")
    labels = {
        "one": '1 scalar    run.log({"loss": x})',
        "ten": "10 scalars  run.log({10 keys})",
        "handle": 'handle      loss = run.metric("loss"); loss.log(x)',
        "hist": "histogram   Histogram(1M float32, num_bins=64)",
    }
    out(f"{'measure':<50} {'steplog':>12} {'floor':>12} {'ratio':>8} {'binding':>8}  target")
    for key, label in labels.items():
        s, f, e = rows[key]
        if key == "hist":
            sv, fv, ev = f"{s:.2f} ms", f"{f:.2f} ms", ""
        else:
            sv, fv, ev = f"{s:,.0f} ns", f"{f:,.0f} ns", f"{e / f:.2f}x"
        out(f"{label:<50} {sv:>12} {fv:>12} {s / f:>7.2f}x {ev:>8}  <= {TARGETS[key]}x")
    out("")
    out(
        "floors: len() of the same fresh dict; a C builtin called with one float (handle); "
        "numpy.histogram(data, bins=64)"
    )
    out(
        "binding: an empty method of the extension with log()'s signature, over the same "
        "floor (the part of the ratio that is the binding's own call)"
    )
    out(
        f"medians of alternating blocks ({blocks} per measure), histogram of {reps} calls; "
        f"histogram counts identical to numpy: {'yes' if same else 'NO'}; "
        f"rows dropped: {stats['rows_dropped']}"
    )
    return {
        "rows": rows,
        "counts_identical": same,
        "rows_dropped": stats["rows_dropped"],
        "seconds": elapsed,
    }
