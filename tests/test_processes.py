"""Processes: fork (bare, multiprocessing, fork storms), spawn and forkserver workers, shard
identity, and the ways a process ends. Every scenario runs in its own interpreter with a
timeout, so a deadlock fails the test instead of hanging it."""

import signal
import sys

import numpy as np
import pytest

import steplog

from .conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")


def run_dir_of(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def by_pid(reader, key):
    """{pid: sorted values of key} over the run's shards."""
    out = {}
    for sh in reader.shards:
        sub = reader.select(shard=sh["shard"])
        if key in sub.keys():
            out[sh["pid"]] = sorted(sub.scalars(key)[1].tolist())
    return out


@pytest.mark.parametrize("ending", ["return", "sys.exit", "os._exit", "exception"])
def test_a_forked_child_logs_its_own_shard_however_it_ends(tmp_path, ending):
    end = {
        "return": "pass",
        "sys.exit": "sys.exit(0)",
        "os._exit": "os._exit(0)",
        "exception": "raise RuntimeError('child fails')",
    }[ending]
    r = run_python(
        f"""
        import os, sys, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        for i in range(100):
            steplog.log({{"parent": i}})
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(50):
                    steplog.log({{"child": i}})
                {end}
            finally:
                pass
        else:
            os.waitpid(pid, 0)
            for i in range(100, 200):
                steplog.log({{"parent": i}})
            run.finish()
            print(run.dir)
        """
    )
    reader = steplog.open(run_dir_of(r))
    assert len(reader.shards) == 2
    assert reader.scalars("parent")[1].tolist() == list(range(200)), "no loss, no duplicates"
    assert sorted(reader.scalars("child")[1].tolist()) == list(range(50))
    child = [s for s in reader.shards if "child" in reader.select(shard=s["shard"]).keys()]
    assert len(child) == 1 and child[0]["pid"] != reader.meta["pid"]
    assert child[0]["closed"], "the child's shard was finished on its way out"
    assert reader.meta["status"] == "finished"


def test_multiprocessing_fork_workers_log_with_no_extra_code(tmp_path):
    r = run_python(
        f"""
        import multiprocessing as mp, steplog

        def work(i):
            for j in range(100):
                steplog.log({{"w": i * 1000 + j}})
            return i

        if __name__ == "__main__":
            run = steplog.init(dir={str(tmp_path)!r})
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=work, args=(i,)) for i in range(4)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
                assert p.exitcode == 0
            # NOTE: close() + join(), not the context manager: Pool.terminate() can hang in
            # CPython itself (python/cpython#78178); SIGTERM-ed workers are tested apart.
            pool = ctx.Pool(2)
            assert sorted(pool.map(work, [10, 11, 12])) == [10, 11, 12]
            pool.close()
            pool.join()
            steplog.log({{"main": 1}})
            run.finish()
            print(run.dir)
        """,
        timeout=120,
    )
    reader = steplog.open(run_dir_of(r))
    values = sorted(reader.scalars("w")[1].tolist())
    want = sorted(i * 1000 + j for i in [0, 1, 2, 3, 10, 11, 12] for j in range(100))
    assert values == want
    assert reader.history("main") == [(0, 1)]


def _run_main_script(tmp_path, source: str):
    """Runs `source` as the `__main__` of a fresh interpreter (as multiprocessing's spawn and
    forkserver need) and opens the run whose directory it prints last."""
    script = tmp_path / "job.py"
    script.write_text(source)
    r = run_python(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", 120)
    return steplog.open(run_dir_of(r))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_terminated_with_sigterm_writes_and_closes_its_shard(tmp_path, method):
    reader = _run_main_script(
        tmp_path,
        f"""
import multiprocessing as mp, steplog

def work(ready):
    for j in range(5000):
        steplog.log({{"w": j}})
    ready.set()
    mp.Event().wait()  # until terminated

if __name__ == "__main__":
    run = steplog.init(dir={str(tmp_path / "runs")!r})
    ctx = mp.get_context({method!r})
    ready = ctx.Event()
    p = ctx.Process(target=work, args=(ready,))
    p.start()
    assert ready.wait(60)
    p.terminate()  # SIGTERM, as Pool.terminate() and DataLoader shutdowns send
    p.join(60)
    assert p.exitcode == -15, p.exitcode
    run.finish()
    print(run.dir)
""",
    )
    assert reader.scalars("w")[1].tolist() == list(range(5000))
    [worker] = [s for s in reader.shards if s["pid"] != reader.meta["pid"]]
    assert worker["closed"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawned_workers_find_the_run_through_the_environment(tmp_path, method):
    reader = _run_main_script(
        tmp_path,
        f"""
import multiprocessing as mp, os, steplog

def work(i):
    for j in range(20):
        steplog.log({{"w": i * 100 + j}})
    return os.getpid()

if __name__ == "__main__":
    run = steplog.init(dir={str(tmp_path / "runs")!r})
    ctx = mp.get_context({method!r})
    pool = ctx.Pool(2)  # close() + join(): Pool.terminate() can hang (python/cpython#78178)
    pids = pool.map(work, range(3))
    pool.close()
    pool.join()
    run.finish()
    print(run.dir)
""",
    )
    assert sorted(reader.scalars("w")[1].tolist()) == sorted(
        i * 100 + j for i in range(3) for j in range(20)
    )
    worker_shards = [s for s in reader.shards if s["pid"] != reader.meta["pid"]]
    assert worker_shards and all(s["closed"] for s in worker_shards)


def test_shards_record_rank_and_the_reader_filters_by_them(tmp_path):
    script = f"""
        import os, sys, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        steplog.log({{"loss": 1.0}})
        pid = os.fork()
        if pid == 0:
            os.environ["RANK"] = "3"
            steplog.log({{"loss": 2.0}})
            os._exit(0)
        os.waitpid(pid, 0)
        run.finish()
        print(run.dir)
    """
    r = run_python(script, env={"RANK": "0"})
    reader = steplog.open(run_dir_of(r))
    ranks = sorted(s["rank"] for s in reader.shards)
    assert ranks == [0, 3]
    assert reader.select(rank=3).scalars("loss")[1].tolist() == [2.0]
    assert reader.select(rank=0).scalars("loss")[1].tolist() == [1.0]
    assert sorted(reader.scalars("loss")[1].tolist()) == [1.0, 2.0]
    assert all(s["host"] for s in reader.shards)
    with pytest.raises(ValueError, match="no shard"):
        reader.select(rank=7)


def test_fork_storm_loses_nothing_on_normal_exit_and_never_duplicates(tmp_path):
    r = run_python(
        f"""
        import os, signal, sys, threading, steplog
        run = steplog.init(dir={str(tmp_path)!r}, queue_capacity=1024)
        stop = threading.Event()

        def hammer(t):
            i = 0
            while not stop.is_set():
                run.log({{f"t{{t}}": i}})
                i += 1
            run.log({{f"t{{t}}_count": i}})

        threads = [threading.Thread(target=hammer, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        endings = ["return", "sys.exit", "os._exit", "kill"] * 4
        for n, how in enumerate(endings):
            pid = os.fork()
            if pid == 0:
                for j in range(200):
                    steplog.log({{f"c{{n}}": j}})
                if how == "sys.exit":
                    sys.exit(0)
                if how == "os._exit":
                    os._exit(0)
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                # "return": fall out of the child's code path and exit normally below
                steplog.finish()
                os._exit(0)
            os.waitpid(pid, 0)
        stop.set()
        for t in threads:
            t.join()
        run.finish()
        print(run.dir)
        """,
        timeout=120,
    )
    reader = steplog.open(run_dir_of(r))
    for t in range(3):
        [(_, count)] = reader.history(f"t{t}_count")
        values = reader.scalars(f"t{t}")[1]
        assert values.tolist() == list(range(count)), "parent threads: complete, in order"
    for n in range(16):
        key = f"c{n}"
        if n % 4 == 3:  # SIGKILL: whatever reached the file is a duplicate-free prefix
            if key in reader.keys():
                got = reader.scalars(key)[1].tolist()
                assert got == list(range(len(got)))
            continue
        assert reader.scalars(key)[1].tolist() == list(range(200)), key


def test_sigterm_finishes_the_run(tmp_path):
    r = run_python(
        f"""
        import os, signal, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        for i in range(1000):
            steplog.log({{"x": i}})
        print(run.dir, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    assert r.returncode == -signal.SIGTERM
    reader = steplog.open(r.stdout.strip().splitlines()[-1])
    assert reader.scalars("x")[1].tolist() == list(range(1000))
    assert reader.meta["status"] == "failed" and reader.meta["exit_code"] == 128 + 15
    assert all(s["closed"] for s in reader.shards)


@pytest.mark.parametrize(
    "ending, code",
    [("raise KeyboardInterrupt", -2), ("raise ValueError('x')", 1), ("import sys; sys.exit(3)", 3)],
)
def test_every_way_out_keeps_the_data(tmp_path, ending, code):
    r = run_python(
        f"""
        import steplog
        run = steplog.init(dir={str(tmp_path)!r})
        for i in range(500):
            steplog.log({{"x": i}})
        print(run.dir, flush=True)
        {ending}
        """
    )
    assert r.returncode == code
    reader = steplog.open(r.stdout.strip().splitlines()[-1])
    assert reader.scalars("x")[1].tolist() == list(range(500))
    assert all(s["closed"] for s in reader.shards)


def test_a_user_sigterm_handler_is_left_alone(tmp_path):
    r = run_python(
        f"""
        import signal, steplog
        signal.signal(signal.SIGTERM, lambda *a: None)
        run = steplog.init(dir={str(tmp_path)!r})
        assert signal.getsignal(signal.SIGTERM) is not steplog._process._on_sigterm
        run.finish()
        print(run.dir)
        """
    )
    run_dir_of(r)


def test_numpy_values_from_children(tmp_path):
    r = run_python(
        f"""
        import os, numpy as np, steplog
        run = steplog.init(dir={str(tmp_path)!r})
        pid = os.fork()
        if pid == 0:
            steplog.log({{"hist": np.arange(100.0), "v": np.float32(0.5)}})
            os._exit(0)
        os.waitpid(pid, 0)
        run.finish()
        print(run.dir)
        """
    )
    reader = steplog.open(run_dir_of(r))
    assert reader.histograms("hist")[0][1].sum() == 100
    assert reader.history("v") == [(0, 0.5)]
    np.testing.assert_array_equal(reader.scalars("v")[1], [0.5])


def test_pytorch_dataloader_workers(tmp_path):
    pytest.importorskip("torch")
    r = run_python(
        f"""
        import torch, steplog
        from torch.utils.data import DataLoader, Dataset

        class D(Dataset):
            def __len__(self):
                return 64
            def __getitem__(self, i):
                steplog.log({{"item": i}})
                return i

        if __name__ == "__main__":
            run = steplog.init(dir={str(tmp_path)!r})
            dl = DataLoader(D(), num_workers=2, multiprocessing_context="fork", batch_size=8)
            assert sum(len(b) for b in dl) == 64
            run.finish()
            print(run.dir)
        """,
        timeout=120,
    )
    reader = steplog.open(run_dir_of(r))
    assert sorted(reader.scalars("item")[1].tolist()) == list(range(64))
    assert sorted(s["worker"] for s in reader.shards if s["worker"] is not None) == [0, 1]
