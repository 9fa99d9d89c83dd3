"""An independent decoder of the steplog on-disk format (docs/FORMAT.md), part 2: what frames
hold. Values, columns and batches (with their per-frame key tables), summaries, metric
definitions, run frames, open rows, and whole shards and runs. Uses only msgpack, zstandard,
numpy and the standard library: never steplog's reader or `steplog._core`.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .decoder_frames import (
    CODEC_NONE,
    DTYPES,
    GOALS,
    KIND_BATCH,
    KIND_CLOSE,
    KIND_GAP,
    KIND_HEADER,
    KIND_METRICS,
    KIND_OPEN,
    KIND_RUN,
    KIND_SUMMARY,
    KNOWN_KINDS,
    MAX_BATCH_VALUES,
    RUN_FILE,
    SHARD_SUFFIX,
    STATS,
    TIMESTAMP_KEY,
    Damaged,
    Frame,
    FrameError,
    FrameHeader,
    decode_payload,
    unpack,
    walk,
)


@dataclass
class Hist:
    counts: np.ndarray  # uint64
    edges: np.ndarray  # float64
    nan: int
    pos_inf: int
    neg_inf: int


Other = Union[str, np.ndarray, Hist, float, int, bool]


def _le(b: Any, dtype: np.dtype, what: str) -> np.ndarray:
    if not isinstance(b, bytes) or len(b) % dtype.itemsize:
        raise FrameError(f"bad {what}")
    return np.frombuffer(b, dtype=dtype)


def decode_array(payload: dict[str, Any]) -> np.ndarray:
    """An `array` value: elements of `dtype` in row-major order, reshaped to `shape`."""
    dtype, shape = payload.get("dtype"), payload.get("shape")
    if dtype not in DTYPES or not isinstance(shape, list) or not 1 <= len(shape) <= 32:
        raise FrameError("bad array header")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FrameError("bad array shape")
    a = _le(payload.get("data"), DTYPES[dtype], "array data")
    if dtype == "bool":
        if bool(np.any(a > 1)):
            raise FrameError("bad array bools")
        a = a.astype(bool)
    if math.prod(shape) != a.size or (a.size == 0 and shape != [0]):
        raise FrameError("array shape does not match its data")
    return a.reshape(shape)


def decode_value(kind: Any, payload: Any) -> Other:
    if kind == "text" and isinstance(payload, str):
        return payload
    if kind == "list":
        return _le(payload, DTYPES["f64"], "list")
    if kind == "array" and isinstance(payload, dict):
        return decode_array(payload)
    if kind == "hist" and isinstance(payload, dict):
        counts = _le(payload.get("counts"), np.dtype("<u8"), "histogram counts")
        edges = _le(payload.get("edges"), DTYPES["f64"], "histogram edges")
        n = [payload.get(k, 0) for k in ("nan", "pos_inf", "neg_inf")]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in n):
            raise FrameError("bad histogram counters")
        return Hist(counts, edges, *n)
    if kind == "f64" and isinstance(payload, float):
        return payload
    if kind == "i64" and isinstance(payload, int) and not isinstance(payload, bool):
        return payload
    if kind == "bool" and isinstance(payload, bool):
        return payload
    raise FrameError(f"bad or unknown value kind {kind!r}")


@dataclass
class Shard:
    info: dict[str, Any] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # latest name of each id
    key_tables: list[list[tuple[int, str]]] = field(default_factory=list)
    # rows of each decoded batch frame, by offset
    batch_rows: dict[int, int] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # run frames' run.json, in order
    repeats: list[tuple[int, int]] = field(default_factory=list)  # (offset, seq) of copies
    conflicts: list[tuple[int, str, str]] = field(default_factory=list)  # (id, new, old name)
    # (key, dtype, steps encoding, values encoding) of every column, in file order
    encodings: list[tuple[str, str, str, str]] = field(default_factory=list)
    columns: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = field(
        default_factory=dict
    )
    others: list[tuple[int, str, str, Other]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    metric_frames: list[list[dict[str, Any]]] = field(default_factory=list)
    gaps: list[tuple[int, str]] = field(default_factory=list)
    close: dict[str, Any] | None = None
    frames: list[Frame] = field(default_factory=list)
    damage: list[Damaged] = field(default_factory=list)
    bad_frames: list[tuple[int, str]] = field(default_factory=list)
    missing: list[tuple[int, int]] = field(default_factory=list)
    rows: int = 0
    # open-row frames, in file order: (step, time, [(name, kind, value)])
    open_rows: list[tuple[int, float, list[tuple[str, str, Other]]]] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        return self.summaries[-1] if self.summaries else {}

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The last metrics snapshot: definitions, oldest first."""
        return self.metric_frames[-1] if self.metric_frames else []

    def series(self, key: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        parts = self.columns.get((key, dtype), [])
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, DTYPES[dtype])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _planes(planes: Any, width: Any, count: int, skip: int) -> np.ndarray:
    """`count` little-endian 64-bit words stored as `width` byte planes (plane j: byte
    skip + j of every word, one word after another); the other bytes are zero."""
    if not (isinstance(width, int) and 0 <= width <= 8 - skip):
        raise FrameError("bad byte-plane width")
    if not isinstance(planes, bytes) or len(planes) != width * count:
        raise FrameError("byte planes do not hold the declared count of values")
    b = np.zeros((count, 8), np.uint8)
    b[:, skip : skip + width] = np.frombuffer(planes, np.uint8).reshape(width, count).T
    return b.view("<u8").ravel()


def _word(x: Any) -> np.uint64:
    """A msgpack int field of an encoded sequence, taken mod 2**64."""
    if not isinstance(x, int) or isinstance(x, bool):
        raise FrameError("bad integer field")
    return np.uint64(x % 2**64)


def decode_seq(field: Any, n: int, dtype: str) -> tuple[np.ndarray, str]:
    """A column's `steps` (dtype "i64") or `values`: a plain bin, or an encoded sequence
    `["delta" | "micros", first, base, width, planes]` or `["trim", skip, planes]`.
    Returns the n values and the encoding's name."""
    if isinstance(field, bytes):
        values = _le(field, DTYPES[dtype], "column field")
        if len(values) != n:
            raise FrameError("column lengths disagree")
        return values, "plain"
    if dtype == "bool" or not (isinstance(field, list) and field and 1 <= n <= MAX_BATCH_VALUES):
        raise FrameError("bad column field")
    tag = field[0]
    if tag in ("delta", "micros") and len(field) >= 5:
        first, base, width, planes = field[1:5]
        residuals = _planes(planes, width, n - 1, 0)
        words = np.empty(n, np.uint64)
        words[0] = _word(first)
        words[1:] = residuals + _word(base)  # uint64 arithmetic wraps mod 2**64
        words = np.cumsum(words, dtype=np.uint64)
        if tag == "micros":
            if dtype != "f64":
                raise FrameError("micros values in a column that is not f64")
            return words.view(np.int64) / 1e6, tag
        return words.view(DTYPES[dtype]), tag
    if tag == "trim" and len(field) >= 3:
        skip, planes = field[1:3]
        if not (isinstance(skip, int) and 0 <= skip <= 8):
            raise FrameError("bad trim")
        return _planes(planes, 8 - skip, n, skip).view(DTYPES[dtype]), tag
    raise FrameError(f"unknown column encoding {tag!r}")


def _declared(col: Any) -> int:
    """The number of entries a column declares: its `n`, or for the 0.1.0 form, its steps."""
    if isinstance(col, list) and len(col) >= 3:
        n = col[2]
        if isinstance(n, int) and not isinstance(n, bool):
            return n
        if isinstance(n, bytes):
            return len(n) // 8
    return 0


def _column(col: Any) -> tuple[int, str, np.ndarray, np.ndarray, tuple[str, str]]:
    """An entry of a batch's `cols`: `[id, dtype, n, steps, values, ...]` with plain or
    encoded fields, or steplog 0.1.0's `[id, dtype, steps, values]` of plain packed arrays
    (told apart by the type of the third item)."""
    if not (isinstance(col, list) and len(col) >= 4):
        raise FrameError("bad column")
    kid, dtype = col[0], col[1]
    if not (isinstance(kid, int) and dtype in DTYPES):
        raise FrameError("bad column")
    if isinstance(col[2], bytes):
        steps = _le(col[2], np.dtype("<i8"), "column steps")
        if not isinstance(col[3], bytes):
            raise FrameError("bad column values")
        values, _ = decode_seq(col[3], len(steps), dtype)
        return kid, dtype, steps, values, ("plain", "plain")
    n = col[2]
    if not (len(col) >= 5 and isinstance(n, int) and not isinstance(n, bool) and n >= 0):
        raise FrameError("bad column")
    if n > MAX_BATCH_VALUES:
        raise FrameError("column declares more than 2**25 values")
    steps, steps_tag = decode_seq(col[3], n, "i64")
    values, values_tag = decode_seq(col[4], n, dtype)
    return kid, dtype, steps, values, (steps_tag, values_tag)


def _batch(s: Shard, m: Any) -> int:
    """Decodes a batch into `s`: all of it, or (raising FrameError) nothing. Returns its rows."""
    if not isinstance(m, dict):
        raise FrameError("batch is not a map")
    keys, cols, vals = m.get("keys"), m.get("cols"), m.get("vals")
    if not (isinstance(keys, list) and isinstance(cols, list) and isinstance(vals, list)):
        raise FrameError("batch lacks keys, cols or vals")
    table: dict[int, str] = {}
    for entry in keys:
        if not (isinstance(entry, list) and len(entry) >= 2):
            raise FrameError("bad key entry")
        kid, name = entry[0], entry[1]
        if not (isinstance(kid, int) and kid >= 0 and isinstance(name, str) and name):
            raise FrameError("bad key entry")
        if kid in table or (kid == 0) != (name == TIMESTAMP_KEY):
            raise FrameError("bad key table")
        table[kid] = name
    for kid, name in table.items():  # the shard's table, for batches that do not list an id
        if s.names.get(kid, name) != name:
            s.conflicts.append((kid, name, s.names[kid]))
        s.names[kid] = name
    s.key_tables.append(sorted(table.items()))

    def name_of(kid: int) -> str:
        name = table.get(kid, s.names.get(kid))
        if name is None:
            raise FrameError(f"key id {kid} is not defined")
        return name

    declared = [_declared(c) for c in cols]
    if sum(declared) > MAX_BATCH_VALUES:
        raise FrameError("batch declares more than 2**25 values")  # before decoding any
    columns, encodings, others, named = [], [], [], []
    batch_rows = 0
    for col in cols:
        kid, dtype, steps, values, tags = _column(col)
        name = name_of(kid)
        if kid == 0:
            batch_rows += len(steps)
        elif len(steps):
            named.append((kid, name))
        if dtype == "bool":
            values = values != 0
        columns.append(((name, dtype), (steps, values)))
        encodings.append((name, dtype, *tags))
    for entry in vals:
        if not (isinstance(entry, list) and len(entry) >= 4):
            raise FrameError("bad value entry")
        step, kid, kind, payload = entry[:4]
        if not (isinstance(step, int) and isinstance(kid, int) and kid > 0):
            raise FrameError("bad value entry")
        value = decode_value(kind, payload)
        others.append((step, name_of(kid), kind, value))
        named.append((kid, others[-1][1]))
    if m.get("rows") != batch_rows:
        raise FrameError(f"rows={m.get('rows')} but {batch_rows} timestamps")
    # All of it decoded: only now does the batch join the shard.
    for key, part in columns:
        s.columns.setdefault(key, []).append(part)
    s.encodings.extend(encodings)
    s.others.extend(others)
    for _, name in sorted(named):  # first-logged order: ids in a batch are in that order
        if name not in s.keys:
            s.keys.append(name)
    s.rows += batch_rows
    return batch_rows


def _run(h: FrameHeader, raw: bytes) -> dict[str, Any]:
    """A run frame: run.json as UTF-8 JSON, stored uncompressed."""
    if h.codec != CODEC_NONE:
        raise FrameError("a run frame is stored uncompressed")
    meta = json.loads(raw.decode("utf-8"))
    if not (isinstance(meta, dict) and meta.get("format") == "steplog-run"):
        raise FrameError("a run frame holds run.json")
    return meta


_SCALAR = (bool, int, float, str)


def _summary(m: Any) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise FrameError("summary is not a map")
    for k, v in m.items():
        if not isinstance(k, str):
            raise FrameError("summary key is not a string")
        inner = v.values() if isinstance(v, dict) else [v]
        if isinstance(v, dict) and not all(isinstance(st, str) for st in v):
            raise FrameError("summary statistic name is not a string")
        if not all(isinstance(x, _SCALAR) for x in inner):
            raise FrameError(f"summary value of {k!r} is not a scalar or a map of scalars")
    return m


def _metrics(m: Any) -> list[dict[str, Any]]:
    defs = m.get("metrics") if isinstance(m, dict) else None
    if not isinstance(defs, list):
        raise FrameError("metrics frame lacks its metrics array")
    out = []
    for d in defs:
        if not (isinstance(d, dict) and isinstance(d.get("name"), str) and d["name"]):
            raise FrameError("bad metric definition")
        sm, summary, goal = d.get("step_metric"), d.get("summary"), d.get("goal")
        ok = (
            (sm is None or isinstance(sm, str))
            and (summary is None or (isinstance(summary, list) and set(summary) <= set(STATS)))
            and goal in (None, *GOALS)
        )
        if not ok:
            raise FrameError(f"bad metric definition {d!r}")
        out.append({"name": d["name"], "step_metric": sm, "summary": summary, "goal": goal})
    return out


def decode_shard(buf: bytes) -> Shard:
    s = Shard()
    next_seq = 0
    seen: set[tuple[int, ...]] = set()
    for item in walk(buf):
        if isinstance(item, Damaged):
            s.damage.append(item)
            continue
        h = item.header
        ident = (h.seq, h.kind, h.codec, h.payload_len, h.raw_len, h.payload_crc)
        if ident in seen:  # a copy of a frame already read: dropped (FORMAT.md section 4)
            s.repeats.append((item.offset, h.seq))
            continue
        seen.add(ident)
        if h.seq > next_seq:
            s.missing.append((next_seq, h.seq - 1))
        next_seq = max(next_seq, h.seq + 1)
        s.frames.append(item)
        if h.kind not in KNOWN_KINDS:
            continue  # a newer writer's frame: skipped on purpose, its payload left undecoded
        try:
            if h.kind == KIND_RUN:
                s.runs.append(_run(h, decode_payload(h, item.payload)))
                continue
            m = unpack(decode_payload(h, item.payload))
            if h.kind == KIND_HEADER:
                s.info = dict(m)
            elif h.kind == KIND_BATCH:
                s.batch_rows[item.offset] = _batch(s, m)
            elif h.kind == KIND_SUMMARY:
                s.summaries.append(_summary(m))
            elif h.kind == KIND_METRICS:
                s.metric_frames.append(_metrics(m))
            elif h.kind == KIND_GAP:
                s.gaps.append((m.get("rows", 0), m.get("reason", "unknown")))
            elif h.kind == KIND_CLOSE:
                s.close = dict(m)
            elif h.kind == KIND_OPEN:
                s.open_rows.append(_open_row(m))
        except (FrameError, AttributeError, TypeError, ValueError) as e:
            s.bad_frames.append((item.offset, str(e)))
    _apply_open_rows(s)
    return s


def _open_row(m: Any) -> tuple[int, float, list[tuple[str, str, Other]]]:
    step, t, cells = m.get("step"), m.get("time"), m.get("cells")
    if not (isinstance(step, int) and isinstance(t, (int, float)) and isinstance(cells, list)):
        raise FrameError("open row lacks step, time or cells")
    out = []
    for c in cells:
        if not (isinstance(c, list) and len(c) >= 3 and isinstance(c[0], str) and c[0]):
            raise FrameError("bad open-row cell")
        if c[0] == TIMESTAMP_KEY:
            raise FrameError("_timestamp in an open row's cells")
        out.append((c[0], c[1], decode_value(c[1], c[2])))
    return step, float(t), out


def _apply_open_rows(s: Shard) -> None:
    """The open-row rule: the frames of one step merge in file order (a later cell of a key
    replaces an earlier one, keys are the union); a merged row counts only when its step is
    greater than every committed step of the shard."""
    committed = s.series(TIMESTAMP_KEY, "f64")[0]
    last = int(committed.max()) if committed.size else None
    merged: dict[int, tuple[float, dict[str, tuple[str, Other]]]] = {}
    for step, t, cells in s.open_rows:
        if last is not None and step <= last:
            continue
        _, row = merged.get(step, (t, {}))
        for name, kind, value in cells:
            row[name] = (kind, value)
        merged[step] = (t, row)
    for step in sorted(merged):
        t, row = merged[step]
        s.columns.setdefault((TIMESTAMP_KEY, "f64"), []).append(
            (np.array([step], np.int64), np.array([t]))
        )
        for name, (kind, value) in row.items():
            if name not in s.keys:
                s.keys.append(name)
            if kind in DTYPES:
                s.columns.setdefault((name, kind), []).append(
                    (np.array([step], np.int64), np.array([value], DTYPES[kind]))
                )
            else:
                s.others.append((step, name, kind, value))
        s.rows += 1


def decode_run(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Shard]]:
    """run.json and every shard of a run directory, by shard file name."""
    run_dir = os.fspath(run_dir)
    meta = {}
    if os.path.exists(os.path.join(run_dir, RUN_FILE)):
        with open(os.path.join(run_dir, RUN_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    shards = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), "*" + SHARD_SUFFIX))):
        with open(path, "rb") as f:
            shards[os.path.basename(path)] = decode_shard(f.read())
    return meta, shards
