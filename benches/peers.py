"""steplog next to the loggers people already use, on the same workloads.

    pip install '.[peers]'          # wandb, tensorboardX (+ tensorboard's reader), mlflow,
                                    # rerun-sdk (+ its dataframe reader), trackio
    python benches/peers.py         # all installed peers, about 2.5 minutes on 2 cores
    python benches/peers.py --quick --only steplog,wandb

Each logger runs in a fresh interpreter (imports, background threads and services of one never
disturb another), one after the other, and reports:

- ns per call with one scalar per call (a freshly built one-key dict, or the peer's own
  one-scalar call where it has no dict API), and with ten scalars per call;
- ms to log a histogram of 1,000,000 float32 values in 64 bins (building the peer's histogram
  object and logging it);
- bytes on disk per scalar for a training curve (loss, acc, lr and a sample counter per step):
  everything the run left on disk less what an empty run of the same logger leaves (metadata,
  schemas), divided by the scalars logged; a logger too slow to log 100,000 steps in the
  time budget logs fewer (the table says how many);
- read-back speed of that curve in scalars/s through the peer's own reader, and whether the
  values came back bit-exact.

Timings cover the logging loop only (not import or init): blocks of calls timed with
`time.perf_counter_ns`, the median over blocks. The floor row is a C builtin (`len`) called
with the same freshly built dicts, and `numpy.histogram` for the histogram. Ratios compare each
row with steplog: peer cost / steplog cost (for read-back: steplog's rate / the peer's).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from peer_loggers import CURVE_KEYS, LOGGERS, MODULES, loop

PEERS = ["steplog", "wandb", "tensorboardX", "mlflow", "mlflow-sqlite", "rerun", "trackio"]
ALIASES = {"tensorboard": "tensorboardX", "tb": "tensorboardX", "rerun-sdk": "rerun"}
HIST_SIZE = 1_000_000

# Settings per mode: seconds of timed blocks per measure, ms per block, histogram repeats,
# training-curve steps (fewer for a logger too slow to log them within curve_budget_s).
MODES = {
    "full": {
        "budget_s": 3.0,
        "block_ms": 20.0,
        "hist_reps": 11,
        "curve_steps": 100_000,
        "curve_budget_s": 20.0,
    },
    "quick": {
        "budget_s": 0.2,
        "block_ms": 10.0,
        "hist_reps": 3,
        "curve_steps": 10_000,
        "curve_budget_s": 1.0,
    },
}
MIN_BLOCKS = 5
MAX_BLOCKS = 1000
MIN_CURVE_STEPS = 200


# ---------------------------------------------------------------------------------------------
# Timing


def measure(timed, budget_s: float, block_ms: float) -> dict:
    """Median ns per call of `timed(n)` (which returns the ns it took for n calls) over blocks.

    The block size is calibrated first (that also warms the loop up), then blocks run until the
    budget is spent, at least MIN_BLOCKS of them.
    """
    block_ns = block_ms * 1e6
    timed(1)  # first calls may open files or start threads
    n = 1
    while True:
        t = timed(n)
        if t >= block_ns / 4 or n >= 1 << 24:
            break
        n *= 4
    n = max(1, round(n * block_ns / max(t, 1)))
    per_call = []
    deadline = time.perf_counter_ns() + budget_s * 1e9
    while len(per_call) < MIN_BLOCKS or (
        time.perf_counter_ns() < deadline and len(per_call) < MAX_BLOCKS
    ):
        per_call.append(timed(n) / n)
    return {"ns": statistics.median(per_call), "calls_per_block": n, "blocks": len(per_call)}


def measure_each(fn, reps: int) -> float:
    """Median ms of `fn()` over `reps` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6


def dir_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def curve_data(steps: int) -> dict[str, list]:
    """A training curve as a real loop produces it: float32 loss/acc, float64 lr, int counter."""
    rng = np.random.default_rng(0)
    t = np.arange(steps, dtype=np.float64)
    loss = (2.5 * np.exp(-t / max(steps / 5, 1)) + 0.05 * rng.standard_normal(steps)).astype(
        np.float32
    )
    acc = np.clip(1 - loss / 3, 0, 1).astype(np.float32)
    lr = 1e-3 * np.minimum(1.0, t / 1000) * 0.5 * (1 + np.cos(math.pi * t / steps))
    samples = np.arange(steps, dtype=np.int64) * 256
    return {
        "loss": loss.tolist(),
        "acc": acc.tolist(),
        "lr": lr.tolist(),
        "samples": samples.tolist(),
    }


# ---------------------------------------------------------------------------------------------
# Worker: one logger, in its own interpreter.


def _size(where) -> int:
    return sum(dir_bytes(p) for p in (where if isinstance(where, list) else [where]))


def curve_phase(lg, cfg: dict, per_step_ns: float, res: dict) -> None:
    """Logs the training curve, measures its size, reads it back and checks the values."""
    # As many steps as fit in curve_budget_s at this logger's cost per 10-scalar call.
    fit = int(cfg["curve_budget_s"] * 1e9 / per_step_ns)
    fit = fit // 10 ** max(len(str(fit)) - 2, 0) * 10 ** max(len(str(fit)) - 2, 0)  # 2 digits
    steps = max(MIN_CURVE_STEPS, min(cfg["curve_steps"], fit))
    c = curve_data(steps)
    # What an empty run leaves on disk (metadata, schemas, logs) is subtracted, so bytes per
    # scalar is what each logged scalar adds, whatever number of steps fits the budget.
    where, _ = lg.curve(c, 0, "empty")
    res["empty_bytes"] = _size(where)
    t0 = time.perf_counter()
    where, handle = lg.curve(c, steps, "curve")
    res["curve_s"] = time.perf_counter() - t0
    res["curve_steps"] = steps
    res["scalars"] = steps * len(CURVE_KEYS)
    res["total_bytes"] = _size(where)
    res["bytes"] = res["total_bytes"] - res["empty_bytes"]
    if lg.read is not None:
        t0 = time.perf_counter_ns()
        cols = lg.read(handle)
        res["read_s"] = (time.perf_counter_ns() - t0) / 1e9
    elif hasattr(lg, "verify"):
        cols = lg.verify(where)
    else:
        return
    counts = {k: len(cols[k]) for k in CURVE_KEYS}
    if any(n != steps for n in counts.values()):
        raise AssertionError(f"{lg.name}: read back {counts}, logged {steps} steps each")
    res["inexact_keys"] = [
        k
        for k in CURVE_KEYS
        if not np.array_equal(np.asarray(cols[k], dtype=np.float64), np.asarray(c[k]))
    ]
    res["exact"] = not res["inexact_keys"]


def worker(name: str, mode: str, out_path: str) -> None:
    cfg = MODES[mode]
    lg = LOGGERS[name]()
    root = tempfile.mkdtemp(prefix=f"peers-{name}-")
    res: dict = {"name": name}
    try:
        t0 = time.perf_counter()
        names = lg.setup(root)
        res["init_s"] = time.perf_counter() - t0
        res["one"] = measure(loop(lg.one, names), cfg["budget_s"], cfg["block_ms"])
        res["ten"] = measure(loop(lg.ten, names), cfg["budget_s"], cfg["block_ms"])
        if lg.hist is not None:
            data = np.random.default_rng(0).standard_normal(HIST_SIZE).astype(np.float32)
            res["hist_ms"] = measure_each(lambda: lg.hist(data), cfg["hist_reps"])
        lg.end_calls()
        if name != "floor":
            curve_phase(lg, cfg, res["ten"]["ns"], res)
        res["note"] = getattr(lg, "note", "")
    finally:
        with open(out_path, "w") as fh:
            json.dump(res, fh)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Parent: run the workers one after the other, print one table.


def version_of(name: str) -> str:
    try:
        return importlib.metadata.version(MODULES[name][1])
    except importlib.metadata.PackageNotFoundError:
        return "?"


def run_worker(name: str, mode: str, timeout_s: float) -> dict:
    tmp = tempfile.mkdtemp(prefix="peers-env-")
    out = os.path.join(tmp, "result.json")
    env = dict(
        os.environ,
        # No network, no prompts, everything under tmp.
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=tmp,
        WANDB_CONFIG_DIR=os.path.join(tmp, "wandb-config"),
        WANDB_CACHE_DIR=os.path.join(tmp, "wandb-cache"),
        WANDB_DATA_DIR=os.path.join(tmp, "wandb-data"),
        TRACKIO_DIR=os.path.join(tmp, "trackio"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        MLFLOW_ALLOW_FILE_STORE="true",
        MLFLOW_TRACKING_URI="",
        PYTHONWARNINGS="ignore",
    )
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        name,
        "--mode",
        mode,
        "--out",
        out,
    ]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout_s)
        res = {}
        if os.path.exists(out):
            with open(out) as fh:
                res = json.load(fh)
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            res["error"] = f"exit {p.returncode}: " + " | ".join(tail)
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {timeout_s:.0f} s"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["name"] = name
    res["wall_s"] = time.perf_counter() - t0
    return res


def _ratio(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.0f}x"
    if r >= 1:
        return f"{r:.1f}x"
    return f"{r:.2f}x"


def _cell(value, base, fmt, invert=False) -> str:
    if value is None:
        return "—"
    s = fmt(value)
    if base and value:
        s += f" ({_ratio(base / value if invert else value / base)})"
    return s


def table(results: list[dict]) -> str:
    by = {r["name"]: r for r in results}
    sl = by.get("steplog", {})

    def get(r, *path):
        for p in path:
            if not isinstance(r, dict) or p not in r:
                return None
            r = r[p]
        return r

    base_one = get(sl, "one", "ns")
    base_ten = get(sl, "ten", "ns")
    base_hist = get(sl, "hist_ms")
    base_bps = sl["bytes"] / sl["scalars"] if sl.get("scalars") else None
    base_rate = sl["scalars"] / sl["read_s"] if sl.get("read_s") else None

    head = (
        "| logger | 1 scalar/call, ns | 10 scalars/call, ns | 1M float32 histogram, ms "
        "| bytes/scalar on disk | read-back, M scalars/s | curve steps | bit-exact |"
    )
    lines = [head, "|" + " --- |" * 8]
    for r in results:
        name = r["name"]
        if name == "floor":
            label = "floor: `len(dict)`, `np.histogram`"
        else:
            label = f"{name} {r.get('version', '')}".strip()
        if "error" in r or "skipped" in r:
            why = r.get("skipped") or r["error"]
            lines.append(f"| {label} | {why} |" + " |" * 6)
            continue
        bps = r["bytes"] / r["scalars"] if r.get("scalars") else None
        rate = r["scalars"] / r["read_s"] if r.get("read_s") else None
        if name == "floor":
            exact = steps = ""
        else:
            steps = f"{r['curve_steps']:,}"
            exact = "yes" if r.get("exact") else "no: " + ", ".join(r.get("inexact_keys", []))
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    _cell(get(r, "one", "ns"), base_one, lambda v: f"{v:,.0f}"),
                    _cell(get(r, "ten", "ns"), base_ten, lambda v: f"{v:,.0f}"),
                    _cell(r.get("hist_ms"), base_hist, lambda v: f"{v:,.2f}"),
                    "" if name == "floor" else _cell(bps, base_bps, lambda v: f"{v:,.2f}"),
                    ""
                    if name == "floor"
                    else _cell(rate, base_rate, lambda v: f"{v / 1e6:,.3g}", invert=True),
                    steps,
                    exact,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def footer(results: list[dict]) -> str:
    by = {r["name"]: r for r in results}
    lines = [
        "Medians of timed blocks. In parentheses: the row's cost / steplog's (for read-back,",
        "steplog's rate / the row's), so the floor row shows floor / steplog. — : the logger",
        "has no such feature or reader.",
    ]
    fl, sl = by.get("floor"), by.get("steplog")
    if fl and sl and "one" in fl and "one" in sl:
        lines.append(
            f"steplog / floor: 1 scalar {sl['one']['ns'] / fl['one']['ns']:.2f}x (target <= 2), "
            f"10 scalars {sl['ten']['ns'] / fl['ten']['ns']:.2f}x (target <= 1.8), "
            f"histogram {sl['hist_ms'] / fl['hist_ms']:.2f}x numpy.histogram (target <= 0.2)"
        )
    for r in results:
        if r.get("note"):
            lines.append(f"- {r['name']}: {r['note']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short blocks and curves (~30-60 s)")
    ap.add_argument(
        "--only",
        default=",".join(PEERS),
        help=f"comma-separated loggers (default all: {','.join(PEERS)}); the floor always runs",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per logger (default 240)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        worker(args.worker, args.mode, args.out)
        return 0

    mode = "quick" if args.quick else "full"
    wanted = []
    for raw in args.only.split(","):
        raw = raw.strip()
        if not raw:
            continue
        name = ALIASES.get(raw.lower(), raw)
        match = [p for p in PEERS if p.lower() == name.lower()]
        if not match:
            ap.error(f"--only: unknown logger {raw!r}; choose from {', '.join(PEERS)}")
        wanted.append(match[0])
    order = ["floor"] + [p for p in PEERS if p in wanted]

    started = time.perf_counter()
    results = []
    for name in order:
        mod = MODULES.get(name, (None,))[0]
        if mod is not None and importlib.util.find_spec(mod) is None:
            dist = MODULES[name][1]
            res = {"name": name, "skipped": f"not installed (pip install {dist})"}
            print(f"{name:>14}: skipped, not installed", file=sys.stderr)
        else:
            print(f"{name:>14}: running ...", file=sys.stderr, end="", flush=True)
            res = run_worker(name, mode, args.timeout)
            if name != "floor":
                res["version"] = version_of(name)
            state = res.get("error", "ok")
            print(f" {res['wall_s']:.0f} s, {state}", file=sys.stderr)
        results.append(res)

    total = time.perf_counter() - started
    sha = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        sha = (
            subprocess.run(
                ["git", "describe", "--always", "--dirty", "--abbrev=7"],
                cwd=os.path.dirname(os.path.abspath(__file__)),
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or "?"
        )
    print(
        f"\n{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}, steplog commit {sha}, "
        f"{mode} mode, {total:.0f} s\n"
    )
    print(table(results))
    print()
    print(footer(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"mode": mode, "commit": sha, "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
