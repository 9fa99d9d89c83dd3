"""The network sink end to end: what `log()` costs while streaming to a collector (the same
as with the disk sink: the caller never touches the network), and how many scalars per second
writer processes get through one collector.

pytest-benchmark: `pytest benches/bench_network.py --benchmark-only` (one scalar per call,
file sink and network sink in the same run).

Throughput: `python benches/bench_network.py [--writers 8] [--rows 250000] [--keys 10]` starts
a collector (`steplog serve`) on 127.0.0.1, runs the writer processes (each logs `rows`
steps of `keys` scalars, then finishes, which waits for the collector's last
acknowledgement), and prints scalars per second from the first log to the last
acknowledgement, with the bytes the collector wrote.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time

import pytest

import steplog
from steplog._bench import loop_one
from steplog._collector import CollectorProcess

N = 1000
TOKEN = "bench-token"


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    with CollectorProcess(tmp_path_factory.mktemp("collector"), TOKEN) as c:
        yield c


def _bench(benchmark, loop):
    benchmark(loop, N)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_call"] = round(benchmark.stats.stats.median / N * 1e9, 1)


def test_log_one_scalar_file_sink(benchmark, tmp_path):
    with steplog.init(dir=tmp_path, project="bench") as run:
        _bench(benchmark, loop_one(run.log))


def test_log_one_scalar_network_sink(benchmark, tmp_path, collector):
    with steplog.init(dir=tmp_path, project="bench", sink=collector.url, token=TOKEN) as run:
        _bench(benchmark, loop_one(run.log))
    assert run.finish()["rows_unacked"] == 0


def _writer(url: str, local: str, rows: int, keys: int, seed: int, ready, go) -> None:
    import numpy as np

    names = [f"metric/{k}" for k in range(keys)]
    # Training-curve-like values (float32 computed), prepared before the clock starts.
    walk = np.random.default_rng(seed).standard_normal((rows, keys)).cumsum(axis=0) * 0.01
    dicts = [dict(zip(names, row)) for row in walk.astype(np.float32).tolist()]
    run = steplog.init(dir=local, project="bench", sink=url, token=TOKEN)
    ready.release()
    go.wait()
    log = run.log
    for d in dicts:
        log(d)
    stats = run.finish()
    assert stats["rows_unacked"] == 0, stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--rows", type=int, default=250_000)
    p.add_argument("--keys", type=int, default=10)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, CollectorProcess(tmp, TOKEN) as c:
        ctx = mp.get_context("spawn")
        ready, go = ctx.Semaphore(0), ctx.Event()
        procs = [
            ctx.Process(
                target=_writer,
                args=(c.url, os.path.join(tmp, "local"), a.rows, a.keys, w, ready, go),
            )
            for w in range(a.writers)
        ]
        for pr in procs:
            pr.start()
        for _ in procs:
            ready.acquire()
        t0 = time.perf_counter()
        go.set()
        for pr in procs:
            pr.join()
            assert pr.exitcode == 0
        elapsed = time.perf_counter() - t0
        scalars = a.writers * a.rows * a.keys
        size = sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, files in os.walk(c.dir)
            for f in files
            if f.endswith(".steplog")
        )
        print(
            f"{a.writers} writers x {a.rows:,} steps x {a.keys} scalars = {scalars:,} scalars "
            f"through one collector in {elapsed:.2f} s: {scalars / elapsed / 1e6:.2f} M scalars/s "
            f"end to end; the collector wrote {size / 1e6:.1f} MB ({size / scalars:.2f} B/scalar)"
        )


if __name__ == "__main__":
    main()
