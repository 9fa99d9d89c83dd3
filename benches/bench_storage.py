"""pytest-benchmark: storage costs on training-curve data.

- bytes on disk per scalar of a realistic 1M-scalar run (target <= 5, every value bit-exact);
- `steplog.open(run) + scalars(key)` on a 10M-scalar run (target >= 50 M scalars/s);
- `finish()` right after logging 1M scalars (target <= 50 ms).

Run: pytest benches/bench_storage.py --benchmark-only --benchmark-columns=median,iqr,rounds
The numbers to quote are in each benchmark's extra_info (bytes_per_scalar, scalars_per_s).
With --benchmark-disable (CI) the runs are smaller and each is timed once.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import steplog


def realistic_mix(steps: int, seed: int = 0) -> dict[str, list]:
    """What a training loop logs each step: a float32 loss, accuracy and gradient norm (as
    Python floats from `.item()`), a float64 warmup+cosine learning rate computed in Python,
    and two integer counters."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float64)
    loss = 2.3 * np.exp(-t / (steps / 4)) + 0.3 + 0.05 * rng.standard_normal(steps)
    p_correct = np.clip(0.95 - 0.85 * np.exp(-t / (steps / 6)), 0, 1)
    warmup = min(2000, max(steps // 10, 1))
    lr = [
        3e-4 * (i + 1) / warmup
        if i < warmup
        else 3e-4 * 0.5 * (1 + math.cos(math.pi * (i - warmup) / max(steps - warmup, 1)))
        for i in range(steps)
    ]
    per_epoch = max(steps // 20, 1)
    return {
        "train/loss": loss.astype(np.float32).tolist(),
        "train/acc": (rng.binomial(256, p_correct) / 256).astype(np.float32).tolist(),
        "lr": lr,
        "grad_norm": rng.lognormal(0.0, 0.5, steps).astype(np.float32).tolist(),
        "epoch": (np.arange(steps) // per_epoch).tolist(),
        "tokens": (np.arange(steps) * 256 * 1024).tolist(),
    }


def log_mix(run: steplog.Run, mix: dict[str, list]) -> None:
    keys = list(mix)
    columns = [mix[k] for k in keys]
    log = run.log
    for row in zip(*columns):
        log(dict(zip(keys, row)))


def shard_bytes(run_dir: str) -> int:
    return sum(
        os.path.getsize(os.path.join(run_dir, f))
        for f in os.listdir(run_dir)
        if f.endswith(".steplog")
    )


def median_s(benchmark) -> float | None:
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats else None


def test_bytes_per_scalar_realistic_1m(benchmark, tmp_path):
    """Logs 1M scalars of the realistic mix and finishes; bytes per scalar as extra_info."""
    mix = realistic_mix(1_000_000 // 6)
    runs = []

    def log_run():
        run = steplog.init(dir=tmp_path, project="bench-bytes")
        log_mix(run, mix)
        runs.append((run, run.finish()))

    benchmark.pedantic(log_run, rounds=3, iterations=1)
    run, stats = runs[-1]
    size = shard_bytes(run.dir)
    per_scalar = size / stats["scalars_written"]
    benchmark.extra_info["scalars"] = stats["scalars_written"]
    benchmark.extra_info["bytes"] = size
    benchmark.extra_info["bytes_per_scalar"] = round(per_scalar, 3)
    r = steplog.open(run.dir)
    for key, values in mix.items():
        got = r.scalars(key)[1]
        want = np.asarray(values, dtype=np.float64)
        assert np.array_equal(got.view(np.int64), want.view(np.int64)), key
    assert per_scalar <= 5.0


@pytest.fixture(scope="module")
def big_run(request, tmp_path_factory):
    """A run of 10M scalars (1M with --benchmark-disable): five keys per step."""
    scalars = 1_000_000 if request.config.getoption("benchmark_disable") else 10_000_000
    mix = realistic_mix(scalars // 5)
    del mix["tokens"]
    run = steplog.init(dir=tmp_path_factory.mktemp("big"), project="bench-read")
    log_mix(run, mix)
    stats = run.finish()
    return run.dir, stats["scalars_written"], mix


def test_read_back_10m(benchmark, big_run):
    """`steplog.open` (which decodes the whole run) plus `scalars` of one key."""
    run_dir, scalars, mix = big_run

    def read():
        r = steplog.open(run_dir)
        return r.scalars("train/loss")

    steps, values = benchmark.pedantic(read, rounds=5, iterations=1, warmup_rounds=1)
    assert np.array_equal(values, np.asarray(mix["train/loss"]))
    assert np.array_equal(steps, np.arange(len(steps)))
    benchmark.extra_info["scalars"] = scalars
    seconds = median_s(benchmark)
    if seconds:
        benchmark.extra_info["scalars_per_s"] = round(scalars / seconds)


def test_finish_after_1m_scalars(benchmark, tmp_path):
    """`finish()` right after the last of 1M scalars was logged: what is left to write, the
    close frame, fsync and run.json."""
    mix = realistic_mix(1_000_000 // 5)
    del mix["tokens"]

    def setup():
        run = steplog.init(dir=tmp_path, project="bench-finish")
        log_mix(run, mix)
        return (run,), {}

    stats = benchmark.pedantic(lambda run: run.finish(), setup=setup, rounds=5)
    assert stats["scalars_written"] == 1_000_000 and stats["rows_dropped"] == 0
