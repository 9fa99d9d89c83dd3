"""The loggers `peers.py` compares, each behind the same small interface.

A logger names the statement a training loop would write to log one scalar (`one`) and ten
scalars (`ten`); `loop()` compiles it into the same timed loop for every logger, as timeit
does, so no logger pays for a wrapper call per iteration. Its other methods: `setup(root)`
(returns the names the statements use), `hist(data)` (or None where the logger has no
histogram), `end_calls()`, `curve(c, steps, tag)` (logs a training curve into a new run and
returns where it is on disk and a handle for `read`), `read(handle)` (the logger's own reader,
or None) and, for a logger without a reader, `verify(where)`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import time

import numpy as np

# Import name and distribution name of each logger.
MODULES = {
    "steplog": ("steplog", "steplog"),
    "wandb": ("wandb", "wandb"),
    "tensorboardX": ("tensorboardX", "tensorboardX"),
    "mlflow": ("mlflow", "mlflow"),
    "mlflow-sqlite": ("mlflow", "mlflow"),
    "rerun": ("rerun", "rerun-sdk"),
    "trackio": ("trackio", "trackio"),
}
CURVE_KEYS = ("loss", "acc", "lr", "samples")
# In the timed loop, `x` is the value, `i` the step, and the other names come from `setup()`.

ONE = '{"loss": x}'
TEN = '{"m0": x, "m1": x, "m2": x, "m3": x, "m4": x, "m5": x, "m6": x, "m7": x, "m8": x, "m9": x}'


def loop(stmt: str, names: dict):
    """`loop(n)`: runs `stmt` n times at steps that go on from the previous call; returns ns."""
    src = (
        "def timed(n, i0):\n"
        "    x = 0.5\n"
        "    t0 = perf_counter_ns()\n"
        "    for i in range(i0, i0 + n):\n"
        f"        {stmt}\n"
        "    return perf_counter_ns() - t0\n"
    )
    ns = dict(names, perf_counter_ns=time.perf_counter_ns)
    exec(compile(src, f"<loop: {stmt[:40]}>", "exec"), ns)
    timed = ns["timed"]
    step = [0]

    def run(n: int) -> int:
        t = timed(n, step[0])
        step[0] += n
        return t

    return run


class Floor:
    """A C builtin called with the same freshly built dicts; numpy.histogram."""

    name = "floor"
    one = f"f({ONE})"
    ten = f"f({TEN})"

    def setup(self, root):
        return {"f": len}

    def hist(self, data):
        np.histogram(data, bins=64)

    def end_calls(self):
        pass


class Steplog:
    name = "steplog"
    one = f"log({ONE})"
    ten = f"log({TEN})"

    def setup(self, root):
        import steplog

        self.sl, self.root = steplog, root
        self.run = steplog.init(project="peers", name="calls", dir=os.path.join(root, "calls"))
        return {"log": self.run.log}

    def hist(self, data):
        self.run.log({"weights": self.sl.Histogram(data, num_bins=64)})

    def end_calls(self):
        stats = self.run.finish()
        assert stats["rows_dropped"] == 0, stats

    def curve(self, c, steps, tag):
        run = self.sl.init(project="peers", name=tag, dir=os.path.join(self.root, tag))
        log = run.log
        loss, acc, lr, samples = c["loss"], c["acc"], c["lr"], c["samples"]
        for i in range(steps):
            log({"loss": loss[i], "acc": acc[i], "lr": lr[i], "samples": samples[i]})
        run.finish()
        return run.dir, run.dir

    def read(self, handle):
        r = self.sl.open(handle)
        return {k: r.scalars(k)[1] for k in CURVE_KEYS}


class Wandb:
    name = "wandb"
    one = f"log({ONE})"
    ten = f"log({TEN})"
    note = "offline mode; no local reader (values checked with a LevelDB-log + protobuf parser)"
    read = None

    def setup(self, root):
        import wandb

        self.wandb, self.root = wandb, root
        self.run = wandb.init(project="peers", name="calls", dir=root, mode="offline")
        return {"log": self.run.log}

    def hist(self, data):
        self.run.log({"weights": self.wandb.Histogram(data, num_bins=64)})

    def end_calls(self):
        self.run.finish()

    def curve(self, c, steps, tag):
        d = os.path.join(self.root, tag)
        os.makedirs(d)
        run = self.wandb.init(project="peers", name=tag, dir=d, mode="offline")
        log = run.log
        loss, acc, lr, samples = c["loss"], c["acc"], c["lr"], c["samples"]
        for i in range(steps):
            log({"loss": loss[i], "acc": acc[i], "lr": lr[i], "samples": samples[i]})
        run.finish()
        wd = os.path.join(d, "wandb")
        [run_dir] = [os.path.join(wd, e) for e in os.listdir(wd) if e.startswith("offline-run-")]
        return run_dir, None

    def verify(self, run_dir):
        """Decodes the .wandb file (LevelDB log records of protobuf `Record`s) into columns."""
        from wandb.proto import wandb_internal_pb2 as pb

        [f] = [e for e in os.listdir(run_dir) if e.endswith(".wandb")]
        cols: dict[str, list] = {k: [] for k in CURVE_KEYS}
        for data in _leveldb_records(os.path.join(run_dir, f)):
            rec = pb.Record()
            rec.ParseFromString(data)
            if rec.WhichOneof("record_type") != "history":
                continue
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                if key in cols:
                    cols[key].append(json.loads(item.value_json))
        return cols


def _leveldb_records(path):
    """Records of a wandb datastore file: a 7-byte header, then a LevelDB log (32 KiB blocks,
    7-byte record headers: crc32c, u16 length, type FULL/FIRST/MIDDLE/LAST)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a wandb datastore file")
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
        elif kind == 0 and length == 0:  # zero padding up to the block end
            pos += block - pos % block if pos % block else 0
        else:
            raise ValueError(f"{path}: bad record type {kind} at {pos}")


class TensorboardX:
    name = "tensorboardX"
    one = 'add("loss", x, i)'
    ten = f"for k, v in {TEN}.items(): add(k, v, i)"

    def setup(self, root):
        from tensorboardX import SummaryWriter

        self.SummaryWriter, self.root = SummaryWriter, root
        self.w = SummaryWriter(os.path.join(root, "calls"))
        self.hist_step = 0
        if importlib.util.find_spec("tensorboard") is not None:
            self.note = "read with tensorboard's EventAccumulator"
        else:
            self.note = "read by parsing the TFRecord event file (tensorboard not installed)"
        return {"add": self.w.add_scalar}

    def hist(self, data):
        self.w.add_histogram("weights", data, self.hist_step, bins=64)
        self.hist_step += 1

    def end_calls(self):
        self.w.close()

    def curve(self, c, steps, tag):
        d = os.path.join(self.root, tag)
        w = self.SummaryWriter(d)
        add = w.add_scalar
        loss, acc, lr, samples = c["loss"], c["acc"], c["lr"], c["samples"]
        for i in range(steps):
            add("loss", loss[i], i)
            add("acc", acc[i], i)
            add("lr", lr[i], i)
            add("samples", samples[i], i)
        w.close()
        return d, d

    def read(self, d):
        if importlib.util.find_spec("tensorboard") is not None:
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            ea = EventAccumulator(d, size_guidance={"scalars": 0})
            ea.Reload()
            return {k: [e.value for e in ea.Scalars(k)] for k in CURVE_KEYS}
        from tensorboardX.proto import event_pb2

        cols: dict[str, list] = {k: [] for k in CURVE_KEYS}
        for f in sorted(os.listdir(d)):
            with open(os.path.join(d, f), "rb") as fh:
                data = fh.read()
            pos = 0
            while pos + 12 <= len(data):  # TFRecord: u64 length, u32 crc, data, u32 crc
                (length,) = struct.unpack_from("<Q", data, pos)
                ev = event_pb2.Event()
                ev.ParseFromString(data[pos + 12 : pos + 12 + length])
                pos += 12 + length + 4
                for v in ev.summary.value:
                    if v.tag in cols:
                        cols[v.tag].append(v.simple_value)
        return cols


class Mlflow:
    name = "mlflow"
    one = 'log_metric("loss", x, step=i)'
    ten = f"log_metrics({TEN}, step=i)"
    backend = "file"
    note = "local file store (MLFLOW_ALLOW_FILE_STORE=true); fluent API, synchronous logging"
    hist = None

    def _uri(self, what):
        if self.backend == "file":
            return "file://" + os.path.join(self.root, what)
        return "sqlite:///" + os.path.join(self.root, what + ".db")

    def setup(self, root):
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.mlflow, self.root = mlflow, root
        mlflow.set_tracking_uri(self._uri("calls"))
        mlflow.start_run()
        return {"log_metric": mlflow.log_metric, "log_metrics": mlflow.log_metrics}

    def end_calls(self):
        self.mlflow.end_run()

    def curve(self, c, steps, tag):
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self._uri(tag))
        run = mlflow.start_run()
        log_metrics = mlflow.log_metrics
        loss, acc, lr, samples = c["loss"], c["acc"], c["lr"], c["samples"]
        for i in range(steps):
            log_metrics(
                {"loss": loss[i], "acc": acc[i], "lr": lr[i], "samples": samples[i]}, step=i
            )
        mlflow.end_run()
        where = self._uri(tag).split("://", 1)[1]
        if self.backend == "sqlite":
            where = where[1:]  # sqlite:///abs -> /abs
        return where, run.info.run_id

    def read(self, run_id):
        client = self.mlflow.MlflowClient()
        out = {}
        for k in CURVE_KEYS:
            hist = sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)
            out[k] = [m.value for m in hist]
        return out


class MlflowSqlite(Mlflow):
    name = "mlflow-sqlite"
    backend = "sqlite"
    note = "SQLite store (MLflow's default backend since 3.7); fluent API, synchronous logging"


class Rerun:
    name = "rerun"
    one = 'set_time("step", sequence=i); log("loss", Scalars(x))'
    ten = f'set_time("step", sequence=i)\n        for k, v in {TEN}.items(): log(k, Scalars(v))'
    hist = None

    def setup(self, root):
        import rerun as rr

        self.rr, self.root = rr, root
        rr.init("peers-calls", spawn=False)
        rr.save(os.path.join(root, "calls.rrd"))
        if importlib.util.find_spec("datafusion") is None:
            self.read = None
            self.note = "saved to .rrd; its dataframe reader needs pip install 'rerun-sdk[catalog]'"
        else:
            self.note = "saved to .rrd; read with the dataframe API (RrdReader + DataFusion)"
        return {"set_time": rr.set_time, "log": rr.log, "Scalars": rr.Scalars}

    def end_calls(self):
        self.rr.disconnect()

    def curve(self, c, steps, tag):
        rr = self.rr
        path = os.path.join(self.root, tag + ".rrd")
        rr.init("peers-" + tag, spawn=False)
        rr.save(path)
        set_time, log, Scalars = rr.set_time, rr.log, rr.Scalars
        loss, acc, lr, samples = c["loss"], c["acc"], c["lr"], c["samples"]
        for i in range(steps):
            set_time("step", sequence=i)
            log("loss", Scalars(loss[i]))
            log("acc", Scalars(acc[i]))
            log("lr", Scalars(lr[i]))
            log("samples", Scalars(samples[i]))
        rr.disconnect()  # flushes and closes the file sink
        return path, path

    def read(self, path):
        from rerun.chunk import RrdReader

        store = RrdReader(path).stream().collect()
        out = {}
        for k in CURVE_KEYS:
            table = store.reader(index="step", contents=f"/{k}").to_arrow_table().sort_by("step")
            out[k] = table.column(f"/{k}:Scalars:scalars").combine_chunks().flatten().to_numpy()
        return out


class Trackio:
    name = "trackio"
    one = f"log({ONE})"
    ten = f"log({TEN})"
    note = "local SQLite (TRACKIO_DIR); read with its SQLiteStorage.get_logs"

    def setup(self, root):
        import trackio

        self.trackio, self.root = trackio, root
        trackio.init(project="peers-calls", name="calls")
        return {"log": trackio.log}

    def hist(self, data):
        self.trackio.log({"weights": self.trackio.Histogram(data, num_bins=64)})

    def end_calls(self):
        self.trackio.finish()

    def curve(self, c, steps, tag):
        trackio = self.trackio
        trackio.init(project="peers-" + tag, name=tag)
        log = trackio.log
        loss, acc, lr, samples = c["loss"], c["acc"], c["lr"], c["samples"]
        for i in range(steps):
            log({"loss": loss[i], "acc": acc[i], "lr": lr[i], "samples": samples[i]})
        trackio.finish()
        from trackio.sqlite_storage import SQLiteStorage

        db = str(SQLiteStorage.get_project_db_path("peers-" + tag))
        return [p for p in (db, db + "-wal", db + "-shm") if os.path.exists(p)], tag

    def read(self, tag):
        from trackio.sqlite_storage import SQLiteStorage

        logs = SQLiteStorage.get_logs("peers-" + tag, tag)
        logs = sorted((r for r in logs if "loss" in r), key=lambda r: r["step"])
        return {k: [r[k] for r in logs] for k in CURVE_KEYS}


LOGGERS = {
    c.name: c for c in (Floor, Steplog, Wandb, TensorboardX, Mlflow, MlflowSqlite, Rerun, Trackio)
}
