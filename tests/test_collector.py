"""`steplog serve`, the collector, driven as a subprocess by raw-protocol clients that build
their messages with `struct` from docs/NETWORK.md (independently of the Rust code)."""

from __future__ import annotations

import glob
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import steplog
from steplog._collector import CollectorProcess

from .decoder_frames import crc32c

TOKEN = "collector-test-token"


def frame(seq: int, payload: bytes, payload_crc: int | None = None, kind: int = 2) -> bytes:
    """A frame per docs/FORMAT.md §2 (codec 0)."""
    crc = crc32c(payload) if payload_crc is None else payload_crc
    head = b"SLG1" + struct.pack("<BBHQIII", kind, 0, 0, seq, len(payload), len(payload), crc)
    return head + struct.pack("<I", crc32c(head)) + payload


def hello_bytes(token: str, run: str, shard: str) -> bytes:
    t, r, s = token.encode(), run.encode(), shard.encode()
    return b"SLN1" + struct.pack("<BBBB", 1, len(t), len(r), len(s)) + t + r + s


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def hello(port: int, run: str, shard: str, token: str = TOKEN) -> tuple[socket.socket, int, int]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(hello_bytes(token, run, shard))
    reply = recv_exact(sock, 16)
    assert reply is not None and reply[:4] == b"SLNR", reply
    status, next_seq = reply[4], struct.unpack_from("<Q", reply, 8)[0]
    return sock, status, next_seq


def wait_ack(sock: socket.socket, want: int) -> None:
    while True:
        msg = recv_exact(sock, 16)
        assert msg is not None, f"closed before the ack for {want}"
        assert msg[:4] == b"SLNA", msg
        got = struct.unpack_from("<Q", msg, 8)[0]
        assert got <= want
        if got == want:
            return


def closed_by_server(sock: socket.socket) -> bool:
    """Reads (skipping acks) until the collector closes; closes our end too."""
    with sock:
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
        except socket.timeout:
            return False
    return True


def count_frames(data: bytes) -> int:
    n = off = 0
    while off < len(data):
        off += 32 + struct.unpack_from("<I", data, off + 16)[0]
        n += 1
    assert off == len(data)
    return n


def Collector(tmp_path, *flags: str) -> CollectorProcess:
    return CollectorProcess(tmp_path, TOKEN, extra=flags)


@pytest.fixture
def collector(tmp_path):
    with Collector(tmp_path) as c:
        yield c


def make_run(root, steps: int = 20_000):
    """A real run written by the disk sink; returns (run dir, shard path)."""
    run = steplog.init(project="collector", dir=root, flush_interval_s=0.01)
    for i in range(steps):
        run.log({"loss": 1.0 / (i + 1), "acc": i / steps, "epoch": i // 1000})
        if i % 5000 == 0:
            run.flush()  # several batch frames
    run.finish()
    [shard] = glob.glob(os.path.join(run.dir, "*.steplog"))
    return run.dir, shard


def test_rejected_clients_leave_the_collector_serving(collector):
    sock, status, _ = hello(collector.port, "run1", "s", token="wrong-token")
    assert status == 1
    assert closed_by_server(sock)
    assert not (collector.dir / "run1").exists()

    sock, status, _ = hello(collector.port, "run1", "s")
    assert status == 0
    bad_len = 999_999_999
    head = b"SLG1" + struct.pack("<BBHQIII", 2, 0, 0, 0, bad_len, bad_len, 0)
    sock.sendall(head + struct.pack("<I", crc32c(head)))
    assert closed_by_server(sock)

    noise = random.Random(1).randbytes(4096)
    raw = socket.create_connection(("127.0.0.1", collector.port), timeout=30)
    raw.sendall(noise)
    assert closed_by_server(raw)
    sock, status, _ = hello(collector.port, "run1", "s2")
    sock.sendall(noise)
    assert closed_by_server(sock)

    assert collector.alive()
    sock, status, next_seq = hello(collector.port, "run1", "s3")
    assert (status, next_seq) == (0, 0)
    sock.sendall(frame(0, b"still serving"))
    wait_ack(sock, 1)
    sock.close()
    err = collector.stderr()
    assert "closed: wrong token" in err
    assert "frame declares 999999999 bytes, over --max-frame-bytes 67108864" in err
    assert "malformed hello" in err


def test_a_streamed_shard_is_stored_identically_and_reads_back(collector, tmp_path):
    run_dir, shard = make_run(tmp_path / "local")
    with open(shard, "rb") as f:
        data = f.read()
    frames = count_frames(data)
    assert frames >= 4
    run_id = os.path.basename(run_dir)
    name = os.path.basename(shard)[: -len(".steplog")]
    sock, status, next_seq = hello(collector.port, run_id, name)
    assert (status, next_seq) == (0, 0)
    sock.sendall(data)
    wait_ack(sock, frames)
    sock.close()
    copy = collector.dir / run_id / os.path.basename(shard)
    assert copy.read_bytes() == data
    original, collected = steplog.open(run_dir), steplog.open(collector.dir / run_id)
    for key in ("loss", "acc", "epoch"):
        s0, v0 = original.scalars(key)
        s1, v1 = collected.scalars(key)
        assert np.array_equal(s0, s1) and np.array_equal(v0, v1)
    assert collected.summary == original.summary
    assert collected.problems == []

    # A writer that reconnects and resends everything is told it is all there.
    sock, status, next_seq = hello(collector.port, run_id, name)
    assert (status, next_seq) == (0, frames)
    sock.close()


def test_sigterm_stops_cleanly_with_complete_files(tmp_path):
    c = Collector(tmp_path)
    sock, status, _ = hello(c.port, "run1", "p1-aa")
    assert status == 0
    sent = b"".join(frame(i, f"payload {i}".encode() * 50) for i in range(500))
    sock.sendall(sent)
    wait_ack(sock, 500)
    # The connection is still open when the signal arrives.
    assert c.stop()[0] == 0
    sock.close()
    assert (c.dir / "run1" / "p1-aa.steplog").read_bytes() == sent
    err = c.stderr()
    assert "stopped: 1 connections" in err and "500 frames stored" in err, err


def test_sigint_also_stops_cleanly(tmp_path):
    c = Collector(tmp_path)
    c.proc.send_signal(signal.SIGINT)
    assert c.stop()[0] == 0
    assert "stopped:" in c.stderr()


def test_missing_token_is_a_usage_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STEPLOG_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "steplog", "serve", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "STEPLOG_TOKEN" in r.stderr


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_memory_stays_bounded_when_a_writer_never_reads_acks(tmp_path):
    budget = 4 << 20
    c = Collector(tmp_path, "--max-memory-bytes", str(budget), "--max-frame-bytes", str(1 << 20))
    try:
        payload = random.Random(2).randbytes(1 << 20)
        crc = crc32c(payload)
        n = 200
        writers = []
        for w in range(2):
            sock, status, _ = hello(c.port, "big", f"w{w}")
            assert status == 0
            writers.append(sock)

        def send(sock: socket.socket) -> None:
            for i in range(n):
                sock.sendall(frame(i, payload, payload_crc=crc))

        threads = [threading.Thread(target=send, args=(s,)) for s in writers]
        peak = vm_rss(c.proc.pid)
        for t in threads:
            t.start()
        paths = [c.dir / "big" / f"w{w}.steplog" for w in range(2)]
        total = n * (32 + len(payload))
        deadline = time.monotonic() + 100
        while not all(p.exists() and p.stat().st_size == total for p in paths):
            assert time.monotonic() < deadline, "frames were not all stored"
            assert c.alive()
            peak = max(peak, vm_rss(c.proc.pid))
            time.sleep(0.01)  # ok-sleep: polling a watched condition with a deadline
        for t in threads:
            t.join(timeout=30)
        # 400 MiB went through; the collector held at most its budget of payloads.
        assert peak < budget + (100 << 20), f"peak VmRSS {peak / 2**20:.0f} MiB"
        for s in writers:
            s.close()
    finally:
        assert c.stop()[0] == 0


def test_stalled_frames_do_not_hold_the_budget_and_are_closed_at_their_deadline(tmp_path):
    # Each stalled client declares 60 MiB, more than a fifth of the 256 MiB default budget.
    c = Collector(tmp_path, "--frame-timeout-s", "5", "--min-frame-rate", str(1 << 30))
    try:
        declared = 60 << 20
        stalled = []
        started = time.monotonic()  # before the first byte of any stalled frame
        for i in range(5):
            sock, status, _ = hello(c.port, "bad", f"s{i}")
            assert status == 0
            head = b"SLG1" + struct.pack("<BBHQIII", 2, 0, 0, 0, declared, declared, 0)
            sock.sendall(head + struct.pack("<I", crc32c(head)))
            stalled.append(sock)
        sock, status, _ = hello(c.port, "good", "s")
        assert status == 0
        for seq in range(200):
            sock.sendall(frame(seq, b"good payload %d" % seq))
            wait_ack(sock, seq + 1)
        assert time.monotonic() - started < 5, "acks were held up by the stalled clients"
        for s in stalled:
            assert closed_by_server(s)
        assert time.monotonic() - started >= 5
        sock.close()
    finally:
        assert c.stop()[0] == 0
    err = c.stderr()
    assert err.count("a frame took over") == 5, err
    assert "5 closed on error, 5 for slow frames" in err, err
