"""What `steplog show` and `steplog ls` print: one run in detail, or a table of runs."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import time
import warnings
from typing import Any


def fmt(v: Any) -> str:
    """A value for the terminal: `-` for None, 6 significant digits for floats."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):  # a summary entry with statistics
        return "{" + ", ".join(f"{k}: {fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def _meta_field(m: dict[str, Any], key: str) -> str:
    return fmt(m.get(key))


def _key_line(r: Any, key: str) -> str:
    """What one key holds, for `show`: scalars, histograms (with their bins), lists, text."""
    try:
        steps, _ = r.scalars(key)
        return f"{len(steps):>10,} scalars"
    except TypeError:
        pass
    items = r.history(key)
    hists = r.histograms(key)
    parts = []
    if hists:
        bins = sorted({len(counts) for _, counts, _ in hists})
        shown = f"{bins[0]}" if len(bins) == 1 else f"{bins[0]}-{bins[-1]}"
        parts.append(f"{len(hists):>10,} histograms ({shown} bins)")
    lists = sum(isinstance(v, list) for _, v in items)
    if lists:
        parts.append(f"{lists:>10,} lists")
    texts = sum(isinstance(v, str) for _, v in items)
    if texts:
        parts.append(f"{texts:>10,} text values")
    others = len(items) - len(hists) - lists - texts
    if others:
        parts.append(f"{others:>10,} values")
    return ", ".join(parts)


def show(args: argparse.Namespace) -> int:
    """Prints a run's metadata, keys and summary."""
    import steplog

    from ._reader import find_run

    r = steplog.open(find_run(args.run))
    m = r.meta
    print(
        f"run {_meta_field(m, 'id')}  name={_meta_field(m, 'name')}  "
        f"project={_meta_field(m, 'project')}"
    )
    print(f"  status   {_meta_field(m, 'status')}  created {_meta_field(m, 'created_iso')}")
    print(
        f"  host     {_meta_field(m, 'host')}  pid {_meta_field(m, 'pid')}  "
        f"python {_meta_field(m, 'python')}  steplog {_meta_field(m, 'steplog')}"
    )
    print(f"  argv     {' '.join(m.get('argv') or []) or '-'}")
    if r.config:
        print("  config   " + ", ".join(f"{k}={fmt(v)}" for k, v in r.config.items()))
    print(f"  shards   {len(r.shards)}  rows {r.rows:,}  dropped {r.dropped}")
    for sh in r.shards:
        state = "closed" if sh["closed"] else "not closed (crashed or still running)"
        print(
            f"    {sh['file']}: pid {fmt(sh.get('pid'))} host {fmt(sh.get('host'))} "
            f"rank {fmt(sh.get('rank'))} rows {sh['rows']:,} {state}"
        )
    print("  keys")
    for k in r.keys():
        print(f"    {k:<32} {_key_line(r, k)}")
    print("  summary")
    for k, v in r.summary.items():
        print(f"    {k:<32} {fmt(v)}")
    for p in r.problems:
        print(f"  problem  {p}")
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _run_row(run_dir: str) -> dict[str, str]:
    """One line of `steplog ls`: what run.json says, and what the shards hold."""
    import steplog

    row = {"id": os.path.basename(run_dir)}
    size = 0
    for f in os.listdir(run_dir):
        with contextlib.suppress(OSError):  # removed meanwhile
            size += os.path.getsize(os.path.join(run_dir, f))
    row["size"] = _size(size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damage shows as "damaged" below
            r = steplog.open(run_dir)
    except (OSError, ValueError, steplog.SteplogError) as e:
        row.update(status=f"unreadable ({type(e).__name__})")
        return row
    m = r.meta
    status = m.get("status") or "unknown"
    if status == "running" and m.get("host") == socket.gethostname() and not _alive(m.get("pid")):
        status = "crashed"
    if any(not p["torn_tail"] for p in r.problems):
        status += ", damaged"
    created = m.get("created")
    ended = m.get("ended")
    if not isinstance(ended, (int, float)) and status != "running":
        try:  # a crashed run: until its last row
            ts = r.scalars("_timestamp")[1]
            ended = float(ts.max()) if ts.size else None
        except (KeyError, TypeError):
            ended = None
    elif status == "running":
        ended = time.time()
    duration = (
        ended - created
        if isinstance(created, (int, float)) and isinstance(ended, (int, float))
        else None
    )
    start = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        if isinstance(created, (int, float))
        else "-"
    )
    row.update(
        project=fmt(m.get("project")),
        name=fmt(m.get("name")),
        status=status,
        start=start,
        duration=_duration(duration),
        rows=f"{r.rows:,}",
    )
    return row


_LS_COLUMNS = ("id", "project", "name", "status", "start", "duration", "rows", "size")
_LS_RIGHT = {"duration", "rows", "size"}


def ls(args: argparse.Namespace) -> int:
    """Lists the runs in a directory as an aligned table, oldest first."""
    from ._reader import _is_run, list_runs, run_roots

    root = args.dir if args.dir is not None else run_roots()[0]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such directory of runs")
    dirs = [os.path.join(root, name) for name in list_runs(root)]
    if not dirs and _is_run(root):
        dirs = [root]  # a run directory itself
    if not dirs:
        print(f"no runs in {root}")
        return 0
    rows = [_run_row(d) for d in dirs]
    rows.sort(key=lambda r: (r.get("start", "-"), r["id"]))
    widths = {c: max(len(c), *(len(r.get(c, "-")) for r in rows)) for c in _LS_COLUMNS}

    def line(cells: dict[str, str]) -> str:
        out = []
        for c in _LS_COLUMNS:
            v = cells.get(c, "-")
            out.append(v.rjust(widths[c]) if c in _LS_RIGHT else v.ljust(widths[c]))
        return "  ".join(out).rstrip()

    print(line({c: c.upper() for c in _LS_COLUMNS}))
    for r in rows:
        print(line(r))
    return 0
