"""Writes the seed corpus of the shard-reader fuzzer: small real shards logged by steplog (every
kind of value, several frames, metrics, summaries, nonfinite counts, a forked child's shard) and
damaged copies of them (cut, bit-flipped, zeroed, a frame repeated, shards concatenated).

    python fuzz/make_corpus.py fuzz/corpus/decode_shard

Needs steplog installed (`pip install .`). Deterministic apart from timestamps and ids.
"""

from __future__ import annotations

import glob
import os
import random
import sys
import tempfile

import numpy as np

import steplog


def _runs(root: str) -> list[str]:
    """Logs a few small runs under `root` and returns their shard files."""
    # Many small frames: batch_max_rows=16 splits each run into several batch frames.
    run = steplog.init(project="fuzz", name="scalars", dir=root, batch_max_rows=16, zstd_level=1)
    run.define_metric("loss", summary="min,max,mean,last", goal="minimize")
    run.define_metric("acc", step_metric="epoch")
    for i in range(100):
        run.log({"loss": 1.0 / (i + 1), "acc": i / 100, "epoch": i // 10, "ok": i % 2 == 0})
    run.log({"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")})
    run.summary["best"] = 0.5
    run.finish()

    run = steplog.init(project="fuzz", name="values", dir=root, config={"lr": 0.1, "n": 3})
    rng = np.random.default_rng(0)
    for i in range(20):
        run.log(
            {
                "text": f"row {i}",
                "list": np.arange(i % 5 + 2, dtype=np.float32),
                "hist": rng.normal(size=100),
                "ints": np.arange(40, dtype=np.int64) * i,
                "custom": steplog.Histogram(rng.normal(size=50), num_bins=8),
                "nested": {"a": i, "b": {"c": -i}},
                "big": 2**62 + i,
            },
            step=i * 2,
        )
    run.finish()

    # A forked child's shard, and a run left open (no close frame).
    run = steplog.init(project="fuzz", name="fork", dir=root)
    run.log({"parent": 1})
    pid = os.fork()
    if pid == 0:
        steplog.log({"child": 2})
        os._exit(0)
    os.waitpid(pid, 0)
    run.finish()
    return sorted(glob.glob(os.path.join(root, "*", "*.steplog")))


def _damaged(data: bytes, rng: random.Random) -> dict[str, bytes]:
    n = len(data)
    out = {
        "cut_half": data[: n // 2],
        "cut_tail": data[: max(0, n - 7)],
        "doubled": data + data,
        "repeated_middle": data[: n // 2] + data[n // 4 : n // 2] + data[n // 2 :],
    }
    flipped = bytearray(data)
    for _ in range(3):
        flipped[rng.randrange(n)] ^= 1 << rng.randrange(8)
    out["flipped"] = bytes(flipped)
    zeroed = bytearray(data)
    at = rng.randrange(n)
    zeroed[at : at + 64] = bytes(len(zeroed[at : at + 64]))
    out["zeroed"] = bytes(zeroed)
    return out


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as root:
        shards = _runs(root)
        blobs = []
        for i, path in enumerate(shards):
            with open(path, "rb") as f:
                data = f.read()
            blobs.append(data)
            with open(os.path.join(out, f"shard{i}"), "wb") as f:
                f.write(data)
            for name, bad in _damaged(data, rng).items():
                with open(os.path.join(out, f"shard{i}_{name}"), "wb") as f:
                    f.write(bad)
        with open(os.path.join(out, "concatenated"), "wb") as f:
            f.write(b"".join(blobs))
    print(f"{len(os.listdir(out))} inputs in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus/decode_shard")
