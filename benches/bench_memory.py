"""Memory: RSS stays flat (within the ring's size) however long a run logs.

`python benches/bench_memory.py 100000000` logs 100 M scalars and prints RSS along the way;
the pytest case logs 3 M scalars (quick enough for CI) and records the samples.
"""

import os
import sys

import steplog


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def log_and_sample(run_dir, scalars: int, samples: int = 10) -> list[tuple[int, float]]:
    run = steplog.init(dir=run_dir)
    log = run.log
    rows = scalars // 3
    every = max(rows // samples, 1)
    marks = []
    for i in range(rows):
        log({"loss": 0.5, "acc": 0.25, "tokens": i})
        if i % every == 0:
            marks.append((i * 3, rss_mb()))
    run.finish()
    return marks


def test_rss_is_flat_while_logging(benchmark, tmp_path):
    if not os.path.exists("/proc/self/status"):
        import pytest

        pytest.skip("needs /proc")
    marks = benchmark.pedantic(log_and_sample, args=(tmp_path, 3_000_000), rounds=1, iterations=1)
    benchmark.extra_info["rss_mb"] = marks
    settled = [mb for _, mb in marks[2:]]
    # After the first batches have been allocated, growth is bounded by the ring and batch
    # buffers, not by how much was logged.
    assert max(settled) - min(settled) < 32, marks


if __name__ == "__main__":
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000_000
    with tempfile.TemporaryDirectory() as d:
        for scalars, mb in log_and_sample(d, n, samples=20):
            print(f"{scalars:>12,} scalars  RSS {mb:7.1f} MB")
