"""Runs that stream to a collector (`steplog serve`) on 127.0.0.1: many writer processes
delivered exactly once, a collector killed and restarted mid-run, bad clients rejected while a
good writer streams, a collector that never comes (spill file, then `steplog push`), and
forked workers."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import steplog
from steplog._collector import CollectorProcess

from .conftest import run_python
from .test_collector import hello_bytes

TOKEN = "tok-" + "x" * 20


@pytest.fixture
def collector(tmp_path):
    with CollectorProcess(tmp_path, TOKEN) as c:
        yield c


def xs_per_shard(run_dir: Path, key: str = "x") -> list[np.ndarray]:
    r = steplog.open(run_dir)
    assert not r.problems, r.problems
    subs = [r.select(shard=s["shard"]) for s in r.shards]
    return [sub.scalars(key)[1] if key in sub.keys() else np.array([]) for sub in subs]


def _spawned_writer(n: int) -> None:
    # A spawned worker: finds the run through STEPLOG_RUN_DIR, authenticates with
    # STEPLOG_TOKEN, and needs no code beyond steplog.log.
    for i in range(n):
        steplog.log({"x": i})


def test_eight_writer_processes_deliver_every_scalar_exactly_once(collector, tmp_path, monkeypatch):
    monkeypatch.delenv("STEPLOG_TOKEN", raising=False)
    n = 250_000
    with steplog.init(
        project="net", dir=tmp_path / "local", sink=collector.url, token=TOKEN
    ) as run:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_spawned_writer, args=(n,)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    stats = run.finish()
    assert stats["rows_unacked"] == 0
    assert "STEPLOG_TOKEN" not in os.environ, "finish() takes back the token init exported"
    got = xs_per_shard(collector.run_dir(run.id))
    # Eight worker shards with every value once, in order; the owner's shard logged nothing.
    full = [x for x in got if len(x)]
    assert len(full) == 8
    for x in full:
        np.testing.assert_array_equal(x, np.arange(n))
    meta = json.loads((collector.run_dir(run.id) / "run.json").read_text())
    assert (meta["id"], meta["status"], meta["project"]) == (run.id, "finished", "net")
    assert "token" not in json.dumps(meta) and TOKEN not in json.dumps(meta)
    # The local run directory holds run.json and no spill file.
    assert sorted(os.listdir(run.dir)) == ["run.json"]


def test_a_forked_worker_ending_in_os_exit_delivers(collector, tmp_path):
    with steplog.init(dir=tmp_path / "local", sink=collector.url, token=TOKEN) as run:
        run.log({"x": -1})
        ctx = mp.get_context("fork")
        p = ctx.Process(target=_forked_then_exit, args=(5000,))
        p.start()
        p.join(60)
        assert p.exitcode == 0
    got = sorted(xs_per_shard(collector.run_dir(run.id)), key=len)
    np.testing.assert_array_equal(got[0], [-1])
    np.testing.assert_array_equal(got[1], np.arange(5000))


def _forked_then_exit(n: int) -> None:
    for i in range(n):
        steplog.log({"x": i})
    os._exit(0)  # as multiprocessing and DataLoader workers end


WRITER = """
    import sys, steplog
    run = steplog.init(dir=sys.argv[1], sink=sys.argv[2], token=sys.argv[3], net_timeout_s=60)
    print(run.id, flush=True)
    n = int(sys.argv[4])
    for i in range(n):
        run.log({"x": i})
        if i % 1000 == 999:
            run.flush()  # hands batches to the network sink as it goes
        if i == n // 2:
            print("half", flush=True)
            sys.stdin.readline()  # the test kills and restarts the collector here
    stats = run.finish()
    print(stats["rows_unacked"], stats["reconnects"], flush=True)
"""


def _writer_at_half(tmp_path: Path, url: str, n: int) -> tuple[subprocess.Popen[str], str]:
    """A writer process paused halfway through its `n` rows, and its run id."""
    w = _writer(tmp_path, url, n)
    assert w.stdout is not None and w.stdin is not None
    run_id = w.stdout.readline().strip()
    assert w.stdout.readline().strip() == "half"
    return w, run_id


def _writer(tmp_path: Path, url: str, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(tmp_path / "l"), url, TOKEN, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_collector_killed_and_restarted_mid_run_loses_and_doubles_nothing(collector, tmp_path):
    n = 200_000
    w, run_id = _writer_at_half(tmp_path, collector.url, n)
    assert w.stdin is not None
    collector.kill()  # SIGKILL: no chance to flush anything
    w.stdin.write("\n")
    w.stdin.flush()
    # Not a handshake: it only widens the window in which the writer logs on while nobody
    # listens (the test holds however long that turns out to be).
    time.sleep(0.3)  # ok-sleep
    collector.start()  # same port, same directory
    out, err = w.communicate(timeout=90)
    assert w.returncode == 0, err
    unacked, reconnects = map(int, out.split())
    assert unacked == 0 and reconnects >= 1
    (x,) = xs_per_shard(collector.run_dir(run_id))
    np.testing.assert_array_equal(x, np.arange(n))


def _frame_header(payload_len: int) -> bytes:
    """A frame header whose CRC is right but which declares `payload_len` bytes."""
    from .decoder_frames import crc32c

    head = struct.pack("<4sBBHQII", b"SLG1", 2, 0, 0, 0, payload_len, payload_len)
    head += struct.pack("<I", 0)
    return head + struct.pack("<I", crc32c(head))


def _closed_by_peer(sock: socket.socket) -> bytes:
    """Everything the peer sent until it closed the connection."""
    sock.settimeout(20)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_bad_clients_are_turned_away_while_a_good_writer_streams(collector, tmp_path):
    n = 100_000
    w, run_id = _writer_at_half(tmp_path, collector.url, n)
    assert w.stdin is not None

    addr = ("127.0.0.1", collector.port)
    with socket.create_connection(addr) as s:  # a wrong token
        s.sendall(hello_bytes("not-the-token", "evil", "s"))
        reply = _closed_by_peer(s)
        assert reply[:4] == b"SLNR" and reply[4] == 1
    with socket.create_connection(addr) as s:  # random bytes
        s.sendall(os.urandom(4096))
        assert _closed_by_peer(s)[:1] in (b"", b"S")
    with socket.create_connection(addr) as s:  # a frame that declares 4 GiB - 1
        s.sendall(hello_bytes(TOKEN, "evil2", "s"))
        assert s.recv(16)[:5] == b"SLNR\x00"
        with contextlib.suppress(OSError):  # it may have closed already
            s.sendall(_frame_header(0xFFFFFFFF))
        assert _closed_by_peer(s) == b""

    w.stdin.write("\n")
    w.stdin.flush()
    out, err = w.communicate(timeout=90)
    assert w.returncode == 0, err
    assert out.split()[0] == "0"
    (x,) = xs_per_shard(collector.run_dir(run_id))
    np.testing.assert_array_equal(x, np.arange(n))
    code, log = collector.stop()
    assert code == 0
    assert "token" in log  # each rejection is logged with its reason
    assert not (collector.dir / "evil").exists()


def test_without_a_collector_finish_keeps_rows_for_steplog_push(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    run = steplog.init(dir=tmp_path / "local", sink=url, token=TOKEN, net_timeout_s=0.5)
    for i in range(1000):
        run.log({"x": i})
    with pytest.warns(steplog.SteplogWarning, match="not acknowledged") as w:
        t0 = time.monotonic()
        stats = run.finish()
        assert time.monotonic() - t0 < 10
    assert stats["rows_unacked"] == 1001 or stats["rows_unacked"] >= 1000
    spill = stats["spill_path"]
    assert spill and spill in str(w[0].message) and os.path.exists(spill)
    # The spill file is a shard the local reader reads...
    np.testing.assert_array_equal(steplog.open(run.dir).scalars("x")[1], np.arange(1000))
    # ...and `steplog push` delivers it once a collector is up.
    c = CollectorProcess(tmp_path, TOKEN, port=port)
    try:
        for _ in range(2):  # twice: the collector keeps one copy
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "steplog",
                    "push",
                    spill,
                    "--sink",
                    url,
                    "--token-file",
                    str(c.token_file),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        (x,) = xs_per_shard(c.run_dir(run.id))
        np.testing.assert_array_equal(x, np.arange(1000))
        meta = json.loads((c.run_dir(run.id) / "run.json").read_text())
        assert meta["status"] == "finished"
    finally:
        c.stop()


def test_sink_settings_are_checked_at_init(tmp_path):
    with pytest.raises(ValueError, match="sink="):
        steplog.init(dir=tmp_path, sink="http://example.com")
    r = run_python(
        f"""
        import steplog
        try:
            steplog.init(dir={str(tmp_path)!r}, sink="tcp://127.0.0.1:9")
        except ValueError as e:
            print(e)
        """,
        env={"STEPLOG_TOKEN": ""},
    )
    assert "STEPLOG_TOKEN" in r.stdout, r.stderr
    with pytest.raises(TypeError, match="token must be str"):
        steplog.init(dir=tmp_path, sink="tcp://127.0.0.1:9", token=5)


def _certificates(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it, made by openssl."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"]
    ssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        *ca_ext,
        "-subj",
        "/CN=steplog test CA",
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("req", *ec, "-keyout", "key.pem", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    ssl(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    )
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_collector_and_writers_that_verify_it(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = _certificates(certs)
    extra = ("--tls-cert", str(cert), "--tls-key", str(key))
    with CollectorProcess(tmp_path / "c", TOKEN, extra=extra) as c:
        url = f"tls://127.0.0.1:{c.port}"
        with steplog.init(dir=tmp_path / "l", sink=url, token=TOKEN, tls_ca=str(ca)) as run:
            for i in range(1000):
                run.log({"x": i})
        assert run.finish()["rows_unacked"] == 0
        (x,) = xs_per_shard(c.run_dir(run.id))
        np.testing.assert_array_equal(x, np.arange(1000))
        # Plain TCP to a TLS collector, and TLS that does not trust its certificate, deliver
        # nothing and say why; the rows stay in the spill file.
        plain = f"tcp://127.0.0.1:{c.port}"
        for sink, why in ((plain, "a TLS collector needs tls://"), (url, "UnknownIssuer")):
            r = steplog.init(dir=tmp_path / "l", sink=sink, token=TOKEN, net_timeout_s=1)
            r.log({"x": 1})
            with pytest.warns(steplog.SteplogWarning, match="not acknowledged"):
                stats = r.finish()
            assert stats["rows_unacked"] == 1 and os.path.exists(stats["spill_path"])
            assert why in stats["first_net_error"], stats


SLOW_WRITER = """
    import random, sys, time, steplog
    run = steplog.init(dir=sys.argv[1], sink=sys.argv[2], token=sys.argv[3],
                       net_timeout_s=1, net_buffer_bytes=65536)
    noise = [random.random() for _ in range(1000)]  # incompressible: frames of real size
    print(run.id, flush=True)
    n = int(sys.argv[4])
    for i in range(n // 2):
        run.log({"x": i})
    run.sync()  # the first half is at the collector
    print("half", flush=True)
    sys.stdin.readline()  # the test stops the collector (SIGSTOP) here
    t0 = time.monotonic()
    for i in range(n // 2, n):
        run.log({"x": i, "a": noise[i % 1000], "b": noise[(i + 7) % 1000]})
        if i % 1000 == 999:
            run.flush()  # frames pile up at the sink: memory, then the spill file
    print(f"{time.monotonic() - t0:.3f}", run.stats()["spill_path"] is not None, flush=True)
    sys.stdin.readline()  # the test lets the collector go on (SIGCONT) here
    deadline = time.monotonic() + 60
    while run.stats()["rows_unacked"] and time.monotonic() < deadline:
        time.sleep(0.05)  # ok-sleep: polling a watched condition with a deadline
    stats = run.finish()
    print(stats["rows_unacked"], stats["reconnects"], stats["spill_path"], flush=True)
"""


def url_token(c: CollectorProcess) -> tuple[str, str]:
    return c.url, TOKEN


def test_a_stalled_collector_never_stalls_log_and_gets_everything_once_it_resumes(
    collector, tmp_path
):
    n = 100_000
    w = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SLOW_WRITER),
            str(tmp_path / "l"),
            *url_token(collector),
            str(n),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert w.stdout is not None and w.stdin is not None
    run_id = w.stdout.readline().strip()
    assert w.stdout.readline().strip() == "half"
    os.kill(collector.pid, signal.SIGSTOP)  # alive, connected, reading nothing
    try:
        w.stdin.write("\n")
        w.stdin.flush()
        seconds, spilled = w.stdout.readline().split()
        # The second half was logged without waiting on the stalled collector, and what
        # did not fit the 64 KiB buffer went to the spill file.
        assert float(seconds) < 20 and spilled == "True"
    finally:
        os.kill(collector.pid, signal.SIGCONT)
    w.stdin.write("\n")
    w.stdin.flush()
    out, err = w.communicate(timeout=90)
    assert w.returncode == 0, err
    unacked, _, spill = out.split()
    # (The connection may well survive the stall: the kernel's socket buffers hold what was
    # sent meanwhile, and acknowledgements resume with the collector.)
    assert (unacked, spill) == ("0", "None")
    # The spill file was sent and removed; the local run directory keeps only run.json.
    assert os.listdir(tmp_path / "l" / run_id) == ["run.json"]
    (x,) = xs_per_shard(collector.run_dir(run_id))
    np.testing.assert_array_equal(x, np.arange(n))
