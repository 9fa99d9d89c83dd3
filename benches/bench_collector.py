"""Collector throughput: `steplog serve` storing shards streamed by many writers at once.

Run: python benches/bench_collector.py [--writers 8] [--scalars-per-writer 250000]
     [--frames-per-writer 100]

Each writer's shard is first written locally by steplog (5 scalars per step, cut into about
--frames-per-writer batch frames), then all writers stream their shard files concurrently
over raw-protocol connections (HELLO built with `struct`, docs/NETWORK.md) to one collector
subprocess on 127.0.0.1. The clock runs from the first connect to the last writer's final ACK
(every frame stored in the collector's file). Prints frames/s, MB/s and scalars/s stored.
Under pytest (`--benchmark-disable` in CI) `test_collector_smoke` runs a tiny version.
"""

from __future__ import annotations

import argparse
import glob
import os
import socket
import struct
import sys
import tempfile
import threading
import time

import steplog
from steplog._collector import CollectorProcess

TOKEN = "bench-token"


def make_shards(root: str, writers: int, scalars: int, frames: int) -> list[tuple[str, str, str]]:
    """One run with one shard per writer; returns (run id, shard name, path) for each."""
    steps = max(scalars // 5, 1)
    out = []
    for w in range(writers):
        run = steplog.init(
            project="bench-collector",
            dir=root,
            batch_max_rows=max(steps // max(frames, 1), 1),
            flush_interval_s=3600,
        )
        for i in range(steps):
            run.log({"loss": 1.0 / (i + 1), "acc": i / steps, "lr": 1e-3, "gn": 0.5, "ep": w})
        run.finish()
        [path] = glob.glob(os.path.join(run.dir, "*.steplog"))
        out.append((run.id, os.path.basename(path)[: -len(".steplog")], path))
    return out


def count_frames(data: bytes) -> int:
    n = off = 0
    while off < len(data):
        off += 32 + struct.unpack_from("<I", data, off + 16)[0]
        n += 1
    return n


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the collector closed the connection")
        buf += chunk
    return buf


def stream(port: int, run_id: str, shard: str, data: bytes, frames: int) -> None:
    t, r, s = TOKEN.encode(), run_id.encode(), shard.encode()
    hello = b"SLN1" + struct.pack("<BBBB", 1, len(t), len(r), len(s)) + t + r + s
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(hello)
        reply = recv_exact(sock, 16)
        if reply[:4] != b"SLNR" or reply[4] != 0:
            raise ConnectionError(f"refused: {reply!r}")
        sock.sendall(data)
        while struct.unpack_from("<Q", recv_exact(sock, 16), 8)[0] < frames:
            pass


def run(writers: int, scalars: int, frames: int, quiet: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="steplog-bench-collector-") as tmp:
        shards = make_shards(os.path.join(tmp, "local"), writers, scalars, frames)
        blobs = []
        for _, _, path in shards:
            with open(path, "rb") as f:
                blobs.append(f.read())
        counts = [count_frames(b) for b in blobs]
        collector = CollectorProcess(tmp, TOKEN)
        port = collector.port
        try:
            errors: list[BaseException] = []

            def one(i: int) -> None:
                try:
                    stream(port, shards[i][0], shards[i][1], blobs[i], counts[i])
                except BaseException as e:  # reported after the join
                    errors.append(e)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(writers)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            if errors:
                raise errors[0]
        finally:
            rc, _ = collector.stop()
        for (run_id, _, path), blob in zip(shards, blobs):
            with open(os.path.join(tmp, "collected", run_id, os.path.basename(path)), "rb") as f:
                assert f.read() == blob, f"{path}: collected copy differs"
    if rc != 0:
        raise RuntimeError(f"the collector exited with {rc}")
    total_frames, total_bytes = sum(counts), sum(len(b) for b in blobs)
    stored_scalars = writers * max(scalars // 5, 1) * 5
    result = {
        "seconds": elapsed,
        "frames_per_s": total_frames / elapsed,
        "mb_per_s": total_bytes / elapsed / 1e6,
        "scalars_per_s": stored_scalars / elapsed,
    }
    if not quiet:
        print(
            f"steplog collector: {writers} writers, {total_frames:,} frames, "
            f"{total_bytes / 1e6:,.1f} MB, {stored_scalars:,} scalars stored in {elapsed:.3f} s"
        )
        print(
            f"  {result['frames_per_s']:,.0f} frames/s  {result['mb_per_s']:,.1f} MB/s  "
            f"{result['scalars_per_s'] / 1e6:,.1f} M scalars/s"
        )
    return result


def test_collector_smoke():
    r = run(writers=2, scalars=5000, frames=5, quiet=True)
    assert r["frames_per_s"] > 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--scalars-per-writer", type=int, default=250_000)
    p.add_argument("--frames-per-writer", type=int, default=100)
    a = p.parse_args(argv)
    run(a.writers, a.scalars_per_writer, a.frames_per_writer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
