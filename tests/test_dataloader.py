"""Real `torch.utils.data.DataLoader` workers (num_workers=4) under fork and spawn, persistent
or not, two epochs, logging from `__getitem__` and from `worker_init_fn`: every row is read
back exactly once, each worker's rows are in shards that name it, every shard is closed, and
the script ends (each one runs in its own interpreter with a timeout, so a hang fails)."""

import ast
import collections
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import steplog

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

N = 48  # indices per epoch
EPOCHS = 2
WORKERS = 4
BATCH = 4

SCRIPT = f"""
import os, sys
import torch, steplog
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

N, EPOCHS, WORKERS, BATCH = {N}, {EPOCHS}, {WORKERS}, {BATCH}


class Items(Dataset):
    def __len__(self):
        return N * EPOCHS

    def __getitem__(self, i):
        steplog.log({{"idx": i}})
        return i, get_worker_info().id, os.getpid()


class EpochSampler(Sampler):
    # Epoch e asks for e*N .. e*N+N-1: every index of the whole run is distinct.
    def __init__(self):
        self.epoch = 0

    def __len__(self):
        return N

    def __iter__(self):
        e, self.epoch = self.epoch, self.epoch + 1
        return iter(range(e * N, (e + 1) * N))


def init_fn(worker_id):
    steplog.log({{"init": worker_id}})


if __name__ == "__main__":
    out, ctx, persistent, ending = sys.argv[1:5]
    run = steplog.init(dir=out)
    dl = DataLoader(
        Items(),
        sampler=EpochSampler(),
        batch_size=BATCH,
        num_workers=WORKERS,
        multiprocessing_context=ctx,
        persistent_workers=persistent == "1",
        worker_init_fn=init_fn,
    )
    served = []
    for epoch in range(EPOCHS):
        for idx, worker, pid in dl:
            served.extend(zip(idx.tolist(), worker.tolist(), pid.tolist()))
            run.log({{"batch": len(idx)}})
    if ending == "del":
        del dl  # shuts persistent workers down before the run finishes
        run.finish()
    # else: the loader (and its persistent workers) is still alive at interpreter exit
    print(repr(served))
    print(run.dir)
"""


def _run_script(tmp_path, ctx: str, persistent: bool, ending: str):
    script = tmp_path / "train.py"  # a file: spawned workers import the main module
    script.write_text(textwrap.dedent(SCRIPT))
    try:
        r = subprocess.run(
            [sys.executable, script, tmp_path / "runs", ctx, str(int(persistent)), ending],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the training script hung: {e.stdout!r} {e.stderr!r}")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    # (idx, worker id, worker pid) of every item, as the main process received them:
    served = ast.literal_eval(lines[-2])
    return steplog.open(lines[-1], strict=True), served, r.stderr


def _check(reader, served, persistent: bool):
    everything = list(range(N * EPOCHS))
    assert sorted(i for i, _, _ in served) == everything
    shards = reader.shards
    assert all(s["closed"] for s in shards), [(s["file"], s["worker"]) for s in shards]
    assert not any(s["gaps"] for s in shards)
    worker_shards = [s for s in shards if s["worker"] is not None]
    # One shard per worker process: 4 persistent workers, or 4 new ones in each epoch.
    processes = WORKERS if persistent else WORKERS * EPOCHS
    assert len(worker_shards) == processes
    assert len({s["pid"] for s in worker_shards}) == processes
    assert sorted(s["worker"] for s in worker_shards) == sorted(
        list(range(WORKERS)) * (processes // WORKERS)
    )
    [main] = [s for s in shards if s["worker"] is None]
    assert reader.select(pid=main["pid"]).scalars("batch")[1].tolist() == [BATCH] * (
        N * EPOCHS // BATCH
    )

    # Every index logged in __getitem__ is read back exactly once over all shards ...
    _, idx = reader.scalars("idx")
    counts = collections.Counter(idx.astype(int).tolist())
    assert sorted(counts) == everything and set(counts.values()) == {1}
    # ... in the shard of the worker (and process) that served it.
    for k in range(WORKERS):
        sub = reader.select(worker=k)
        got = sorted(sub.scalars("idx")[1].astype(int).tolist())
        assert got == sorted(i for i, w, _ in served if w == k), k
        assert sub.scalars("init")[1].tolist() == [k] * (processes // WORKERS)
    for s in worker_shards:
        sub = reader.select(shard=s["shard"])
        got = sorted(sub.scalars("idx")[1].astype(int).tolist())
        assert got == sorted(i for i, _, pid in served if pid == s["pid"])
        # worker_init_fn logged first, then the items: steps 0, 1, 2, ... in that process.
        assert sub.history("init") == [(0, s["worker"])]
        np.testing.assert_array_equal(sub.scalars("idx")[0], np.arange(1, len(got) + 1))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataloader_workers_log_every_row_once(tmp_path, ctx, persistent):
    reader, served, _ = _run_script(tmp_path, ctx, persistent, "del")
    _check(reader, served, persistent)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_persistent_workers_alive_at_exit_finish_their_shards(tmp_path, ctx):
    # No del, no finish(): the loader's workers and the run are ended by interpreter exit.
    reader, served, stderr = _run_script(tmp_path, ctx, True, "exit")
    _check(reader, served, True)
    assert "Traceback" not in stderr, stderr
