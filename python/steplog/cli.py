"""The `steplog` command: `demo`, `show`, `ls`, `bench`, `serve`, `push`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from ._listing import fmt as _fmt
from ._listing import ls, show


def _dir_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".steplog")
    )


def demo(args: argparse.Namespace) -> int:
    """Logs a synthetic training run, reads it back and reports what it cost."""
    import steplog

    steps = args.steps
    rng = np.random.default_rng(0)
    # Training-curve data as a real loop produces it: float32 losses, a float64 schedule,
    # integer counters. Prepared up front so the timed loop measures logging.
    t = np.arange(steps, dtype=np.float64)
    # Exponential decay from 2.5 to a floor of 0.08, with multiplicative noise (about 5%),
    # so the loss stays positive and noisy to the end, as a real one does.
    curve = 0.08 + (2.5 - 0.08) * np.exp(-t / (steps / 5))
    loss = (curve * np.exp(0.05 * rng.standard_normal(steps))).astype(np.float32)
    acc = np.clip(1 - loss / 3, 0, 1).astype(np.float32)
    lr = 1e-3 * np.minimum(1.0, t / 1000) * 0.5 * (1 + np.cos(math.pi * t / steps))
    grad = np.abs(rng.standard_normal(steps)).astype(np.float32)
    loss_l, acc_l, lr_l, grad_l = loss.tolist(), acc.tolist(), lr.tolist(), grad.tolist()
    per_epoch = max(steps // 10, 1)

    config = {"model": "mlp-demo", "lr": 1e-3, "batch_size": 256, "steps": steps}
    run = steplog.init(project="steplog-demo", dir=args.dir, config=config)
    log = run.log
    start = time.perf_counter()
    for i in range(steps):
        log(
            {
                "train/loss": loss_l[i],
                "train/acc": acc_l[i],
                "lr": lr_l[i],
                "grad_norm": grad_l[i],
                "epoch": i // per_epoch,
            }
        )
    elapsed = time.perf_counter() - start
    for e in range(10):
        log(
            {
                "val/loss": float(loss[min((e + 1) * per_epoch, steps) - 1]) * 1.1,
                "weights": rng.standard_normal(10_000).astype(np.float32),
            },
            step=steps + e,
        )
    t0 = time.perf_counter()
    stats = run.finish()
    finish_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    reader = steplog.open(run.dir)
    s, v = reader.scalars("train/loss")
    read_s = time.perf_counter() - t0
    assert np.array_equal(v, loss.astype(np.float64)), "read-back mismatch"
    assert np.array_equal(s, np.arange(steps)), "read-back steps mismatch"

    scalars = stats["scalars_written"]
    size = _dir_bytes(run.dir)
    print(f"steplog demo: run {run.id} in {run.dir}")
    print(f"  logged      {steps:,} steps x 5 scalars (+10 eval steps with a histogram)")
    print(
        f"  log() call  {elapsed / steps * 1e9:,.0f} ns per call "
        f"({elapsed / (steps * 5) * 1e9:,.0f} ns per scalar)"
    )
    print(f"  finish()    {finish_s * 1e3:,.1f} ms")
    print(
        f"  on disk     {size:,} bytes = {size / scalars:.2f} bytes per scalar "
        f"(including timestamps)"
    )
    print(
        f"  read back   {len(s):,} steps of train/loss in {read_s * 1e3:,.1f} ms "
        f"(whole run decoded), bit-identical"
    )
    print(f"  keys        {', '.join(reader.keys())}")
    print("  summary     " + ", ".join(f"{k}={_fmt(v)}" for k, v in reader.summary.items()))
    print(f"  dropped     {stats['rows_dropped']} rows")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Measures steplog's cost per call on this machine next to the floor of a bare call."""
    from ._bench import run_bench

    run_bench(quick=args.quick)
    return 0


def _read_token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        with open(args.token_file, encoding="utf-8") as f:
            return f.read().strip()
    return os.environ.get("STEPLOG_TOKEN")


def _raise_fd_limit(connections: int) -> None:
    """Each connection needs a socket and a shard file; lift the soft limit toward that."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * connections + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError) as e:
            msg = f"steplog serve: could not raise the open-file limit to {new}: {e}"
            print(msg, file=sys.stderr)


def serve(args: argparse.Namespace) -> int:
    """Runs the collector until SIGTERM or SIGINT."""
    from . import _core

    token = _read_token(args)
    if not token:
        where = f"--token-file {args.token_file}" if args.token_file else "STEPLOG_TOKEN"
        print(
            f"steplog serve: no token ({where} is empty or unset); pass --token-file PATH "
            "or set STEPLOG_TOKEN",
            file=sys.stderr,
        )
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("steplog serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    _raise_fd_limit(args.max_connections or 1024)
    try:
        _core.serve(
            args.listen,
            args.dir,
            token,
            max_frame_bytes=args.max_frame_bytes,
            max_memory_bytes=args.max_memory_bytes,
            max_connections=args.max_connections,
            idle_timeout_s=args.idle_timeout_s,
            handshake_timeout_s=args.handshake_timeout_s,
            fsync_interval_s=args.fsync_interval_s,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            frame_timeout_s=args.frame_timeout_s,
            min_frame_rate=args.min_frame_rate,
        )
    except KeyboardInterrupt:  # SIGINT also reaches Python's handler; the stop was clean
        pass
    except ValueError as e:
        print(f"steplog serve: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"steplog serve: {e}", file=sys.stderr)
        return 1
    return 0


def push(args: argparse.Namespace) -> int:
    """Sends shard files (a network run's spill files, or an offline run's shards) to a
    collector; each closed shard takes the run's `run.json` along."""
    from . import _core
    from ._reader import find_run

    token = _read_token(args)
    if not token:
        print("steplog push: no token: pass --token-file or set STEPLOG_TOKEN", file=sys.stderr)
        return 2
    files: list[str] = []
    for path in args.paths:
        if os.path.isdir(path):
            files += sorted(
                os.path.join(path, f) for f in os.listdir(path) if f.endswith(".steplog")
            )
        elif os.path.exists(path):
            files.append(path)
        else:
            run_dir = find_run(path)  # a run id; raises saying where it looked
            files += sorted(
                os.path.join(run_dir, f) for f in os.listdir(run_dir) if f.endswith(".steplog")
            )
    failed = 0
    for f in files:
        run_meta = _run_json_for(f)
        try:
            held, sent = _core.push(
                f,
                args.sink,
                token,
                tls_ca=args.tls_ca,
                timeout_s=args.timeout_s,
                run_meta=run_meta,
            )
        except (OSError, _core.SteplogError, ValueError) as e:
            print(f"steplog push: {f}: {e}", file=sys.stderr)
            failed += 1
            continue
        if sent:
            note = " and the run's run.json"
        elif run_meta is None:
            note = " (no run.json beside it to send)"
        else:
            note = (
                " (run.json not sent: the shard is not closed, as the run is still running or "
                "crashed; a frame after its end could collide with the writer's next one)"
            )
        print(f"steplog push: {f}: the collector holds {held} frames of this shard{note}")
    return 1 if failed else 0


def _run_json_for(shard: str) -> str | None:
    """The text of the `run.json` in a shard's run directory, if there is a readable one."""
    path = os.path.join(os.path.dirname(os.path.abspath(shard)), "run.json")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if isinstance(json.loads(text), dict):
            return text
    except (OSError, ValueError) as e:
        if not isinstance(e, FileNotFoundError):
            print(f"steplog push: {path}: not sent ({e})", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steplog", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="log a synthetic training run, read it back, report costs")
    p.add_argument("--steps", type=int, default=300_000, help="training steps (default 300000)")
    p.add_argument("--dir", help="runs directory (default: $STEPLOG_DIR, else steplog-runs)")
    p.set_defaults(func=demo)
    p = sub.add_parser("show", help="print a run's metadata, keys and summary")
    p.add_argument(
        "run",
        help="a run directory, or a run id (or its beginning) under $STEPLOG_DIR or ./steplog-runs",
    )
    p.set_defaults(func=show)
    p = sub.add_parser(
        "ls",
        help="list runs: id, project, name, status, start (local time), duration, rows, size",
    )
    p.add_argument(
        "dir", nargs="?", help="directory of runs (default: $STEPLOG_DIR, else steplog-runs)"
    )
    p.set_defaults(func=ls)
    p = sub.add_parser(
        "bench",
        help="measure log() overhead on this machine next to a bare C call (about 10 s)",
    )
    p.add_argument("--quick", action="store_true", help="a few seconds, noisier")
    p.set_defaults(func=bench)
    p = sub.add_parser(
        "serve",
        help="collect runs streamed by writers started with sink='tcp://HOST:PORT'",
        description="The collector: receives shard frames over TCP (or TLS) and writes them as "
        "ordinary runs under --dir. Stops cleanly on SIGTERM or SIGINT. See docs/NETWORK.md.",
    )
    p.add_argument("--listen", default="127.0.0.1:7777", help="HOST:PORT (default 127.0.0.1:7777)")
    p.add_argument("--dir", default="steplog-runs", help="runs directory (default steplog-runs)")
    p.add_argument("--token-file", help="file holding the token (default: $STEPLOG_TOKEN)")
    p.add_argument("--max-frame-bytes", type=int, help="largest frame payload (default 64 MiB)")
    p.add_argument(
        "--max-memory-bytes", type=int, help="payload bytes held at once (default 256 MiB)"
    )
    p.add_argument("--max-connections", type=int, help="open connections (default 1024)")
    p.add_argument("--idle-timeout-s", type=float, help="close silent connections (default 300)")
    p.add_argument("--handshake-timeout-s", type=float, help="time for a HELLO (default 10)")
    p.add_argument(
        "--frame-timeout-s",
        type=float,
        help="time for a frame to arrive, plus its size at --min-frame-rate (default 10)",
    )
    p.add_argument(
        "--min-frame-rate",
        type=int,
        help="bytes per second a frame must arrive at (default 1048576)",
    )
    p.add_argument("--fsync-interval-s", type=float, help="fsync period (default 10)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.set_defaults(func=serve)
    p = sub.add_parser(
        "push",
        help="send a network run's spill files, or an offline run, to a collector",
    )
    p.add_argument(
        "paths", nargs="+", help="shard files, or run directories (or run ids) to send all of"
    )
    p.add_argument("--sink", required=True, help="the collector, tcp://HOST:PORT or tls://...")
    p.add_argument("--token-file", help="file holding the token (default: $STEPLOG_TOKEN)")
    p.add_argument("--tls-ca", help="PEM bundle to verify a tls:// collector with")
    p.add_argument("--timeout-s", type=float, default=30.0, help="wait for acks (default 30)")
    p.set_defaults(func=push)
    args = parser.parse_args(argv)
    if getattr(args, "steps", 1) < 1:
        parser.error("--steps must be at least 1")
    try:
        return args.func(args)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        print(f"steplog: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
