"""An independent decoder of the steplog on-disk format (docs/FORMAT.md), and tests that hold
it against what steplog writes and what `steplog.open` reads back.

The decoder below uses only msgpack, zstandard, numpy and the standard library. It does not
import steplog's reader or `steplog._core`; steplog is used only to write runs and, as the
thing under comparison, `steplog.open`.
"""

from __future__ import annotations

import base64
import fnmatch
import glob
import json
import math
import os
import re
import socket
import struct
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import msgpack
import numpy as np
import pytest
import zstandard

import steplog

# ----------------------------------------------------------------------------------------------
# The independent decoder
# ----------------------------------------------------------------------------------------------

MAGIC = b"SLG1"
HEADER_LEN = 32
HEADER = struct.Struct("<4sBBHQIIII")  # magic kind codec flags seq payload_len raw_len pcrc hcrc
MAX_PAYLOAD = 64 << 20
MAX_RAW = 256 << 20
MAX_DEPTH = 32

KIND_HEADER, KIND_BATCH, KIND_SUMMARY, KIND_GAP, KIND_CLOSE, KIND_METRICS, KIND_RUN = range(1, 8)
KNOWN_KINDS = {KIND_HEADER, KIND_BATCH, KIND_SUMMARY, KIND_GAP, KIND_CLOSE, KIND_METRICS, KIND_RUN}
FRAME_MAX_ROWS = 8192  # rows in one batch frame
FRAME_MAX_BYTES = 64 << 10  # bytes of file (header included) of a batch frame of 2+ rows
KIND_OPEN = 8  # open rows (FORMAT.md section 3, "Open rows")
KNOWN_KINDS = KNOWN_KINDS | {KIND_OPEN}
CODEC_NONE, CODEC_ZSTD = 0, 1
DTYPES = {"f64": np.dtype("<f8"), "i64": np.dtype("<i8"), "bool": np.dtype("u1")}
MAX_BATCH_VALUES = 1 << 25  # values (summed over its columns) a batch may declare
TIMESTAMP_KEY = "_timestamp"
STATS = ("min", "max", "mean", "first", "last", "best")
GOALS = ("minimize", "maximize")
RUN_FILE = "run.json"
SHARD_SUFFIX = ".steplog"


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli): reflected, init 0xFFFFFFFF, final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class Damage(Exception):
    """Bytes at an offset are not a usable frame."""

    def __init__(self, reason: str, torn: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.torn = torn


class FrameError(Exception):
    """A frame with good checksums whose payload cannot be decoded."""


@dataclass(frozen=True)
class FrameHeader:
    kind: int
    codec: int
    flags: int
    seq: int
    payload_len: int
    raw_len: int
    payload_crc: int
    header_crc: int


@dataclass(frozen=True)
class Frame:
    offset: int
    header: FrameHeader
    payload: bytes


@dataclass(frozen=True)
class Damaged:
    offset: int
    length: int
    torn_tail: bool
    reason: str


def parse_header(buf: bytes, at: int) -> FrameHeader:
    if len(buf) - at < HEADER_LEN:
        if MAGIC.startswith(buf[at : at + 4]):
            raise Damage("file ends inside a frame header", torn=True)
        raise Damage("bytes that are not a frame")
    magic, kind, codec, flags, seq, plen, rlen, pcrc, hcrc = HEADER.unpack_from(buf, at)
    if magic != MAGIC:
        raise Damage("bytes that are not a frame")
    if crc32c(buf[at : at + 28]) != hcrc:
        raise Damage("header checksum mismatch")
    if plen > MAX_PAYLOAD or rlen > MAX_RAW:
        raise Damage("declared length over the limit")
    return FrameHeader(kind, codec, flags, seq, plen, rlen, pcrc, hcrc)


def check_frame(buf: bytes, at: int) -> tuple[FrameHeader, bytes]:
    h = parse_header(buf, at)
    end = at + HEADER_LEN + h.payload_len
    if end > len(buf):
        raise Damage("file ends inside a frame payload", torn=True)
    payload = buf[at + HEADER_LEN : end]
    if crc32c(payload) != h.payload_crc:
        raise Damage("payload checksum mismatch")
    return h, payload


def resync(buf: bytes, start: int) -> int:
    """The next offset >= start holding a whole good frame, else len(buf)."""
    at = start
    while True:
        at = buf.find(MAGIC, at)
        if at < 0:
            return len(buf)
        try:
            check_frame(buf, at)
            return at
        except Damage:
            at += 1


def walk(buf: bytes):
    """Yields Frame and Damaged items covering `buf` from start to end."""
    pos = 0
    while pos < len(buf):
        try:
            h, payload = check_frame(buf, pos)
        except Damage as d:
            nxt = resync(buf, pos + 1)
            yield Damaged(pos, nxt - pos, d.torn and nxt == len(buf), d.reason)
            pos = nxt
            continue
        yield Frame(pos, h, payload)
        pos += HEADER_LEN + len(payload)


def decode_payload(h: FrameHeader, payload: bytes) -> bytes:
    """The raw payload; never produces (or allocates) more than the declared raw_len."""
    if h.codec == CODEC_NONE:
        if len(payload) != h.raw_len:
            raise FrameError("stored payload length differs from raw_len")
        return payload
    if h.codec == CODEC_ZSTD:
        try:
            declared = zstandard.get_frame_parameters(payload).content_size
        except zstandard.ZstdError as e:
            raise FrameError(f"zstd: {e}") from e
        # python-zstandard trusts a declared content size over max_output_size: check it first.
        if declared not in (h.raw_len, zstandard.CONTENTSIZE_UNKNOWN):
            raise FrameError(f"zstd frame declares {declared} bytes, header says {h.raw_len}")
        try:
            raw = zstandard.ZstdDecompressor().decompress(
                payload, max_output_size=h.raw_len, allow_extra_data=False
            )
        except zstandard.ZstdError as e:
            raise FrameError(f"zstd: {e}") from e
        if len(raw) != h.raw_len:
            raise FrameError("decompressed length differs from raw_len")
        return raw
    raise FrameError(f"unknown codec {h.codec}")


_PLAIN = (type(None), bool, int, float, str, bytes)


def _no_ext(code: int, data: bytes) -> Any:
    raise FrameError(f"msgpack extension type {code} is not part of the format")


def unpack(raw: bytes) -> Any:
    """Exactly one msgpack value filling `raw`, nested at most MAX_DEPTH deep."""
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=False, ext_hook=_no_ext)
    except FrameError:
        raise
    except Exception as e:
        raise FrameError(f"msgpack: {type(e).__name__}: {e}") from e
    stack = [(obj, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FrameError("msgpack nested too deep")
        if isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
        elif isinstance(v, dict):
            for k, x in v.items():
                stack.append((k, depth + 1))
                stack.append((x, depth + 1))
        elif not isinstance(v, _PLAIN):
            raise FrameError(f"unexpected msgpack value {type(v).__name__}")
    return obj


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


def encode_frame(kind: int, seq: int, raw: bytes, codec: int = CODEC_NONE, **over: int) -> bytes:
    """Builds a frame (used to craft files a writer would not produce)."""
    payload = zstandard.ZstdCompressor().compress(raw) if codec == CODEC_ZSTD else raw
    f = {"payload_len": len(payload), "raw_len": len(raw), "payload_crc": crc32c(payload)}
    f.update(over)
    head = HEADER.pack(
        MAGIC, kind, codec, 0, seq, f["payload_len"], f["raw_len"], f["payload_crc"], 0
    )[:28]
    return head + struct.pack("<I", crc32c(head)) + payload


# ----------------------------------------------------------------------------------------------
# Helpers for the tests
# ----------------------------------------------------------------------------------------------


def bits(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.int64)


def only_shard(run_dir: str) -> tuple[dict[str, Any], str, Shard]:
    meta, shards = decode_run(run_dir)
    assert len(shards) == 1
    (name, shard), *_ = shards.items()
    return meta, name, shard


def expect_value(v: Any) -> tuple[str, Any]:
    """What steplog should store for a logged value: (kind, value)."""
    if isinstance(v, float):
        return "f64", float(v)
    if isinstance(v, bool):
        return "bool", v
    if isinstance(v, int):
        return ("i64", v) if -(2**63) <= v < 2**63 else ("f64", float(v))
    if isinstance(v, str):
        return "text", v
    if isinstance(v, steplog.Histogram):
        pos, neg = v.inf_count
        return "hist", Hist(v.counts.astype(np.uint64), v.edges, v.nan_count, pos, neg)
    arr = np.asarray(v)
    if arr.size == 1:
        return expect_value(arr.item())
    flat = arr.ravel().astype(np.float64)
    if arr.size == 0:
        return "list", flat
    if arr.size <= 32:
        # One-dimensional floats keep the `list` form; any other shape or element type is an
        # `array` of int64 (uint64 beyond int64: float64), float64 or bool, keeping its shape.
        if arr.dtype.kind == "f" and arr.ndim == 1:
            return "list", flat
        if arr.dtype.kind == "b":
            return "array", arr.astype(bool)
        if arr.dtype.kind in "iu" and (arr.dtype.kind == "i" or arr.max() < 2**63):
            return "array", arr.astype(np.int64)
        return "array", arr.astype(np.float64)
    assert np.isfinite(flat).all()
    counts, edges = np.histogram(flat, bins=64)
    return "hist", Hist(counts.astype(np.uint64), edges, 0, 0, 0)


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        name = f"{prefix}/{k}" if prefix else k
        out.extend(flatten(v, name) if isinstance(v, dict) else [(name, v)])
    return out


class Model:
    """The step rules (README), kept next to a real run: what should be in the file."""

    def __init__(self, run: steplog.Run) -> None:
        self.run = run
        self.step = 0
        self.open: dict[str, tuple[str, Any]] | None = None
        self.rows: list[tuple[int, dict[str, tuple[str, Any]]]] = []
        self.keys: list[str] = []  # every key interned, in order
        self.logged: list[str] = []  # keys that were logged (not only set in the summary)
        self.summary: dict[str, tuple[str, Any]] = {}  # last logged or set value
        self.history: dict[str, list[tuple[str, Any]]] = {}  # summary-able values, in order
        self.overridden: set[str] = set()  # set through run.summary since last logged
        self.defs: dict[str, dict[str, Any]] = {}  # definitions, oldest first

    def define_metric(self, name: str, step_metric=None, summary=None, goal=None) -> None:
        self.run.define_metric(name, step_metric=step_metric, summary=summary, goal=goal)
        stats = None
        if summary is not None:
            asked = {x.strip() for x in summary.split(",")} - {"none"}
            stats = [st for st in STATS if st in asked]
        self.defs.pop(name, None)
        goal = {"min": "minimize", "max": "maximize"}.get(goal, goal)
        self.defs[name] = {"step_metric": step_metric, "summary": stats, "goal": goal}

    def expected_summary(self) -> dict[str, Any]:
        """The summary the README promises: plain values, or statistics per definition."""
        out: dict[str, Any] = {}
        for k, (_kind, last) in self.summary.items():
            match = [d for name, d in self.defs.items() if fnmatch.fnmatchcase(k, name)]
            stats = match[-1]["summary"] if match else None
            if k in self.overridden or stats is None:
                out[k] = last
            elif stats:
                out[k] = {st: self._stat(k, st, match[-1]["goal"]) for st in stats}
        return out

    def _stat(self, key: str, stat: str, goal: str | None) -> Any:
        values = [v for _, v in self.history[key]]
        if stat in ("first", "last"):
            return values[0] if stat == "first" else values[-1]
        numbers = [  # NaN skipped
            v for kind, v in self.history[key] if kind != "text" and not math.isnan(v)
        ]
        if not numbers:
            return math.nan
        if stat == "mean":
            floats = [float(v) for v in numbers]
            finite = all(math.isfinite(x) for x in floats)
            return (math.fsum(floats) if finite else sum(floats)) / len(floats)
        if stat == "best":
            stat = "min" if goal == "minimize" else "max"
        best = numbers[0]
        for v in numbers[1:]:  # strictly better only: the first of equal values stays
            if (v < best) if stat == "min" else (v > best):
                best = v
        return best

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None):
        self.run.log(data, step=step, commit=commit)
        cells = [(k, expect_value(v)) for k, v in flatten(data)]
        self.keys.extend(k for k, _ in cells if k not in self.keys)
        self.logged.extend(k for k, _ in cells if k not in self.logged)
        if step is not None and step > self.step:
            if self.open is not None:
                self._commit()
            self.step = step
        if self.open is None:
            self.open = {}
        self.open.update(cells)
        if commit if commit is not None else step is None:
            self._commit()

    def set_summary(self, key: str, value: Any) -> None:
        self.run.summary[key] = value
        if key not in self.keys:
            self.keys.append(key)
        self.summary[key] = expect_value(value)
        self.overridden.add(key)

    def _commit(self) -> None:
        assert self.open is not None
        if self.open:  # a row without cells (`log({})`) only advances the step
            self.rows.append((self.step, self.open))
        for k, (kind, v) in self.open.items():
            if kind not in ("list", "array", "hist"):
                self.summary[k] = (kind, v)
                self.history.setdefault(k, []).append((kind, v))
                self.overridden.discard(k)
        self.step += 1
        self.open = None

    def finish(self) -> None:
        self.run.finish()
        if self.open is not None:
            self._commit()


def same_other(kind: str, got: Any, want: Any) -> bool:
    if kind == "list":
        return np.array_equal(bits(got), bits(want))
    if kind == "array":
        return (
            got.shape == want.shape
            and got.dtype.kind == want.dtype.kind
            and np.array_equal(bits(got), bits(want))
        )
    if kind == "hist":
        return (
            np.array_equal(got.counts, want.counts)
            and np.array_equal(bits(got.edges), bits(want.edges))
            and (got.nan, got.pos_inf, got.neg_inf) == (want.nan, want.pos_inf, want.neg_inf)
        )
    if kind == "f64":
        return bits(got) == bits(want)
    return type(got) is type(want) and got == want


def write_mixed_run(tmp_path: Path) -> tuple[Model, str, float, float]:
    """A run with every kind of value, step rule and several batches."""
    rng = np.random.default_rng(1234)
    t0 = time.time()
    run = steplog.init(dir=tmp_path, project="format", config={"lr": 0.1}, batch_max_rows=7)
    m = Model(run)
    m.define_metric("model/*", summary="min,max,mean,first,last")  # before its keys exist
    m.define_metric("note", summary="first")
    extremes = [0.0, -0.0, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308]
    extremes += [float("inf"), float("-inf"), float("nan"), 1 / 3, -1e-300]
    for i in range(25):
        x = extremes[i] if i < len(extremes) else float(rng.standard_normal() * 1e3)
        m.log(
            {
                "loss": x,
                "epoch": int(rng.integers(-(2**62), 2**62)),
                "flag": bool(i % 3 == 0),
                "model": {"lr": 0.1 / (i + 1), "layer": {"w_norm": float(rng.random())}},
            }
        )
    # After their keys were logged: they cover the whole history.
    m.define_metric("loss", summary="min,max,mean,best", goal="min", step_metric="epoch")
    m.define_metric("epoch", summary="best", goal="maximize")
    m.define_metric("f*", summary="mean, last")
    m.log({"note": "héllo ✓ \x00 tab\t", "empty": ""})
    m.log({"a": 1.0}, commit=False)
    m.log({"b": 2, "epoch": -1}, commit=False)
    m.log({"a": 3.0, "c": "merged"})
    m.log({"loss": 0.125}, step=100)
    m.log({"acc": 0.9, "loss": 0.25}, step=100)
    m.set_summary("best", 0.5)
    m.set_summary("loss", -1.0)  # replaced by the next logged loss
    m.log({"loss": 0.0625}, step=105)
    m.log({"vec": np.arange(2.0)})
    for n in (2, 3, 17, 32):
        m.log({"vec": rng.standard_normal(n), "ints": np.arange(n, dtype=np.int32)})
    m.log({"vec": rng.standard_normal((4, 8)).astype(np.float32)})
    m.log({"vec": [1, 2.5, 3], "pair": (True, False)})  # lists and tuples are tensors too
    m.log({"dist": rng.standard_normal(33)})
    m.log({"dist": rng.standard_normal(1000) * 7 + 3})
    data = rng.standard_normal(500)
    m.log({"h": steplog.Histogram(data, num_bins=10)})
    m.log({"h": steplog.Histogram([1.0, 2.0, np.nan, np.inf, -np.inf, 2.0], num_bins=3)})
    m.log({"h": steplog.Histogram(np_histogram=(np.array([3, 0, 5]), [0.0, 0.5, 1.5, 4.0]))})
    m.log({"h": steplog.Histogram([np.nan, np.nan])})
    m.log({"np": {"f32": np.float32(0.1), "i64": np.int64(-7), "b": np.bool_(True)}})
    m.log({"np": {"one": np.array([[2.5]]), "big": 2**70, "neg": -(2**63)}})
    m.log({})  # a step without a row
    m.log({"grid": np.array([[1, 2], [3, 4]]), "nothing": [], "mask": np.eye(2, dtype=bool)})
    m.log({"grid": np.arange(6.0).reshape(3, 2), "nothing": np.zeros((0, 4))})
    m.define_metric("mixed", summary="first,max,min,last")
    m.define_metric("note", summary="none")  # replaces the earlier definition of "note"
    m.log({"mixed": 1})
    m.log({"mixed": 1.5, "flag": False})
    m.log({"mixed": True})
    m.set_summary("model/lr", "done")  # an override of a defined key
    m.log({"final": 1.0, "text_last": "bye"}, step=200)  # left open: finish() commits it
    m.finish()
    return m, run.dir, t0, time.time()


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # RFC 3720 (iSCSI) appendix B.4
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


def test_every_value_decodes_independently_and_matches_steplog(tmp_path):
    m, run_dir, t0, t1 = write_mixed_run(tmp_path)
    _, _, s = only_shard(run_dir)
    assert not s.damage and not s.bad_frames and not s.missing
    assert sum(f.header.kind == KIND_BATCH for f in s.frames) > 3

    # Rows and the timestamp column.
    assert s.rows == len(m.rows)
    ts_steps, ts = s.series(TIMESTAMP_KEY, "f64")
    assert ts_steps.tolist() == [step for step, _ in m.rows]
    assert np.all(np.diff(ts_steps) > 0)
    assert t0 <= ts.min() and ts.max() <= t1  # unix seconds of each commit
    assert set(dt for k, dt in s.columns if k == TIMESTAMP_KEY) == {"f64"}

    # Keys with values, in first-logged order, `_timestamp` excluded ("best", only set through
    # the summary, has no values: batches need not name it).
    assert s.keys == m.logged
    reader = steplog.open(run_dir)
    assert reader.keys() == m.logged
    assert reader.rows == s.rows == len(m.rows)
    assert not reader.problems

    # Scalars: one column per (key, dtype), bit-exact, in step order.
    want_cols: dict[tuple[str, str], tuple[list[int], list[Any]]] = {}
    want_others = []
    for step, cells in m.rows:
        for k, (kind, v) in cells.items():
            if kind in DTYPES:
                col = want_cols.setdefault((k, kind), ([], []))
                col[0].append(step)
                col[1].append(v)
            else:
                want_others.append((step, k, kind, v))
    assert set(s.columns) - {(TIMESTAMP_KEY, "f64")} == set(want_cols)
    for (k, dtype), (steps, values) in want_cols.items():
        got_steps, got = s.series(k, dtype)
        assert got_steps.tolist() == steps, k
        if dtype == "f64":
            assert np.array_equal(bits(got), bits(values)), k
        else:
            assert got.tolist() == values and all(
                type(x) is type(y) for x, y in zip(got.tolist(), values)
            )
    scalar_keys = {k for k, _ in want_cols}
    for k in scalar_keys:
        parts = [
            (st, v) for (kk, _), (sts, vs) in want_cols.items() if kk == k for st, v in zip(sts, vs)
        ]
        parts.sort(key=lambda sv: sv[0])
        r_steps, r_values = reader.scalars(k)
        assert r_steps.tolist() == [st for st, _ in parts], k
        assert np.array_equal(bits(r_values), bits([float(v) for _, v in parts])), k

    # Text, lists and histograms, in file order.
    assert len(s.others) == len(want_others)
    for got, want in zip(s.others, want_others):
        assert got[:3] == want[:3]
        assert same_other(want[2], got[3], want[3]), want
    for k in {k for _, k, _, _ in want_others} - scalar_keys:
        hist = reader.history(k)
        mine = [(st, v) for st, kk, _, v in s.others if kk == k]
        assert [st for st, _ in hist] == [st for st, _ in mine]
        for (_, theirs), (_, v) in zip(hist, mine):
            if isinstance(v, Hist):
                assert np.array_equal(theirs["counts"], v.counts.astype(np.int64))
                assert np.array_equal(bits(theirs["edges"]), bits(v.edges))
                assert (theirs["nan"], theirs["pos_inf"], theirs["neg_inf"]) == (
                    v.nan,
                    v.pos_inf,
                    v.neg_inf,
                )
            elif isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f":
                assert np.array_equal(bits(theirs), bits(v))
            elif isinstance(v, np.ndarray):  # an `array`: nested lists of its element type
                assert theirs == v.tolist()
                assert np.asarray(theirs).shape == v.shape
                assert type(np.ravel(theirs)[0].item()) is type(v.ravel()[0].item())
            else:
                assert theirs == v

    # Histograms of plain arrays use numpy.histogram's 64 bins exactly.
    dist = [v for _, k, _, v in s.others if k == "dist"]
    assert len(dist) == 2 and all(len(h.counts) == 64 and len(h.edges) == 65 for h in dist)
    nonfinite = [v for _, k, _, v in s.others if k == "h"][1]
    assert (nonfinite.nan, nonfinite.pos_inf, nonfinite.neg_inf) == (1, 1, 1)
    assert nonfinite.counts.tolist() == np.histogram([1.0, 2.0, 2.0], bins=3)[0].tolist()
    empty = [v for _, k, _, v in s.others if k == "h"][3]
    assert (len(empty.counts), len(empty.edges), empty.nan) == (0, 0, 2)


def test_each_key_table_names_exactly_the_ids_its_batch_uses(tmp_path):
    _, run_dir, _, _ = write_mixed_run(tmp_path)
    _, _, s = only_shard(run_dir)
    batches = [f for f in s.frames if f.header.kind == KIND_BATCH]
    assert len(batches) == len(s.key_tables) > 3
    for f, table in zip(batches, s.key_tables):
        m = unpack(decode_payload(f.header, f.payload))
        used = {c[0] for c in m["cols"]} | {v[1] for v in m["vals"]}
        assert [kid for kid, _ in table] == sorted(used | {0})
        assert table[0] == (0, TIMESTAMP_KEY)
    assert not s.conflicts  # an id keeps its name across the shard
    first = {}
    for table in s.key_tables:
        for kid, name in table:
            first.setdefault(name, kid)
    assert sorted(first, key=first.__getitem__)[1:] == s.keys  # ids in first-logged order


def test_batch_frames_are_bounded_in_rows_and_bytes(tmp_path):
    run = steplog.init(dir=tmp_path)
    for i in range(100_000):
        run.log({"a": i * 0.5, "b": i, "c": float(np.sin(i)), "d": i % 7 == 0})
    run.log({"text": base64.b64encode(os.urandom(100_000)).decode()})  # a row over 64 KiB
    run.finish()
    _, _, s = only_shard(run.dir)
    assert not s.damage and not s.bad_frames and not s.repeats and s.rows == 100_001
    batches = [f for f in s.frames if f.header.kind == KIND_BATCH]
    for f in batches:
        rows = s.batch_rows[f.offset]
        assert 1 <= rows <= FRAME_MAX_ROWS
        assert rows == 1 or HEADER_LEN + f.header.payload_len <= FRAME_MAX_BYTES, rows
    big = [f for f in batches if HEADER_LEN + f.header.payload_len > FRAME_MAX_BYTES]
    assert [s.batch_rows[f.offset] for f in big] == [1]  # the big row, alone
    assert sum(s.batch_rows.values()) == s.rows


def test_a_repeated_frame_is_read_once_and_reported(tmp_path):
    run_dir, path = small_run(tmp_path)
    whole = path.read_bytes()
    frames = decode_shard(whole).frames
    batch = next(f for f in frames if f.header.kind == KIND_BATCH)
    block = whole[batch.offset : batch.offset + HEADER_LEN + batch.header.payload_len]
    for damaged in (whole + whole, whole[: frames[-1].offset] + block + whole[frames[-1].offset :]):
        s = decode_shard(damaged)
        assert s.rows == 40 and s.repeats and not s.damage and not s.missing
        path.write_bytes(damaged)
        with pytest.warns(steplog.SteplogWarning):
            reader = steplog.open(run_dir)
        assert reader.rows == 40
        assert reader.scalars("loss")[0].tolist() == list(range(40))
        assert any("repeats" in p["reason"] for p in reader.problems)
        with pytest.raises(steplog.CorruptRunError):
            steplog.open(run_dir, strict=True)


def test_run_frames_carry_run_json(tmp_path):
    # A run that streams to a collector that is not there keeps every frame in its spill
    # file, a shard that holds the run frames (kind 7).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    run = steplog.init(
        dir=tmp_path, sink=f"tcp://127.0.0.1:{port}", token="t" * 32, net_timeout_s=0.2
    )
    run.log({"loss": 1.0})
    with pytest.warns(steplog.SteplogWarning):
        stats = run.finish()
    s = decode_shard(Path(stats["spill_path"]).read_bytes())
    assert not s.damage and not s.bad_frames and s.rows == 1
    run_frames = [f for f in s.frames if f.header.kind == KIND_RUN]
    # Written at start and at finish (the latest only, when no write came between them).
    assert len(run_frames) == len(s.runs) >= 1
    assert all(f.header.codec == CODEC_NONE for f in run_frames)
    with open(os.path.join(run.dir, RUN_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    assert s.runs[0]["id"] == s.runs[-1]["id"] == meta["id"] == s.info["run_id"]
    assert s.runs[-1]["status"] == meta["status"] == "finished"
    assert s.runs[-1]["config"] == meta["config"] and s.runs[-1]["pid"] == os.getpid()


def same_summary(got: Any, want: Any, mean: bool = False) -> bool:
    """Equal values of equal types; floats bit for bit, except a mean (an arithmetic result)."""
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and list(got) == list(want)
            and all(same_summary(got[k], want[k], mean=k == "mean") for k in want)
        )
    if type(got) is not type(want):
        return False
    if isinstance(want, float) and mean:
        return (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12)
    if isinstance(want, float):
        return bool(bits(got) == bits(want))
    return bool(got == want)


def test_summary_frame_matches_steplog(tmp_path):
    m, run_dir, _, _ = write_mixed_run(tmp_path)
    _, _, s = only_shard(run_dir)
    assert len(s.summaries) >= 2
    last = s.summary
    want = m.expected_summary()
    assert set(last) == set(want)
    for k, v in want.items():
        assert same_summary(last[k], v), (k, last[k], v)
    mine = steplog.open(run_dir).summary
    assert set(mine) == set(want) and all(same_summary(mine[k], last[k]) for k in last)
    assert last["best"] == 0.5 and last["model/lr"] == "done" and "note" not in last
    assert list(last["loss"]) == ["min", "max", "mean", "best"]
    assert last["loss"]["best"] == -math.inf and math.isnan(last["loss"]["mean"])
    assert last["mixed"] == {"max": 1.5, "min": 1, "first": 1, "last": True}
    assert isinstance(last["model/layer/w_norm"], dict) and isinstance(last["flag"]["last"], bool)
    # Summary maps carry names, never key ids, and only scalars, text and maps of them.
    flat = [
        x
        for sm in s.summaries
        for v in sm.values()
        for x in (v.values() if isinstance(v, dict) else [v])
    ]
    assert all(isinstance(v, (bool, int, float, str)) for v in flat)


def test_metrics_frame_matches_the_definitions(tmp_path):
    m, run_dir, _, _ = write_mixed_run(tmp_path)
    _, _, s = only_shard(run_dir)
    want = [{"name": name, **d} for name, d in m.defs.items()]
    assert s.metrics == want
    assert [d["name"] for d in want] == ["model/*", "loss", "epoch", "f*", "mixed", "note"]
    assert want[-1]["summary"] == [] and want[1]["step_metric"] == "epoch"
    # A snapshot per write in which the definitions changed; each is complete.
    assert 2 <= len(s.metric_frames) <= 7
    first = s.metric_frames[0]
    assert [(d["name"], d["summary"]) for d in first] == [
        ("model/*", ["min", "max", "mean", "first", "last"]),
        ("note", ["first"]),
    ]
    kinds = [f.header.kind for f in s.frames]
    for i, f in enumerate(s.frames):
        if f.header.kind == KIND_METRICS:
            assert f.header.codec == CODEC_NONE
            assert kinds[i + 1 : i + 2] == [KIND_SUMMARY]  # the summary follows it
    reader = steplog.open(run_dir)
    assert reader.metrics == {
        d["name"]: {k: d[k] for k in ("step_metric", "summary", "goal")} for d in want
    }


def test_header_frame_matches_run_json(tmp_path):
    run = steplog.init(dir=tmp_path, project="hdr", name="header-test")
    run.log({"x": 1.0})
    run.finish()
    meta, name, s = only_shard(run.dir)
    info = s.info
    assert s.frames[0].header.kind == KIND_HEADER and s.frames[0].header.seq == 0
    assert info["format"] == "steplog" and info["version"] == meta["format_version"] == 1
    assert meta["format"] == "steplog-run"
    assert info["run_id"] == meta["id"] == os.path.basename(run.dir)
    assert info["shard"] + SHARD_SUFFIX == name
    assert info["pid"] == meta["pid"] == os.getpid()
    for k in ("host", "rank", "local_rank", "world_size", "worker"):
        assert info[k] == meta[k], k
    assert info["started"] == meta["created"]
    assert meta["steplog"] in info["writer"]
    assert meta["status"] == "finished" and meta["name"] == "header-test"
    shard_meta = steplog.open(run.dir).shards[0]
    for k, v in info.items():
        assert shard_meta[k] == v, k


def test_frames_checksums_sequence_and_close(tmp_path):
    m, run_dir, _, _ = write_mixed_run(tmp_path)
    meta, name, s = only_shard(run_dir)
    buf = Path(run_dir, name).read_bytes()
    # Walk by declared lengths alone: the file is exactly a sequence of good frames.
    pos, seqs = 0, []
    while pos < len(buf):
        magic, kind, codec, flags, seq, plen, rlen, pcrc, hcrc = HEADER.unpack_from(buf, pos)
        assert magic == MAGIC and flags == 0
        assert crc32c(buf[pos : pos + 28]) == hcrc
        payload = buf[pos + HEADER_LEN : pos + HEADER_LEN + plen]
        assert len(payload) == plen and crc32c(payload) == pcrc
        expected_codec = CODEC_ZSTD if kind in (KIND_BATCH, KIND_SUMMARY) else CODEC_NONE
        assert codec == expected_codec
        assert len(decode_payload(parse_header(buf, pos), payload)) == rlen
        seqs.append(seq)
        pos += HEADER_LEN + plen
    assert pos == len(buf)
    assert seqs == list(range(len(seqs))) == [f.header.seq for f in s.frames]
    kinds = [f.header.kind for f in s.frames]
    assert kinds[0] == KIND_HEADER and kinds[-1] == KIND_CLOSE
    assert kinds.count(KIND_HEADER) == kinds.count(KIND_CLOSE) == 1
    assert set(kinds) <= {KIND_HEADER, KIND_BATCH, KIND_SUMMARY, KIND_METRICS, KIND_CLOSE}
    assert not s.repeats and not s.conflicts
    close = s.close
    assert close is not None and close["rows_written"] == s.rows == len(m.rows)
    assert close["rows_dropped"] == close["rows_failed"] == close["steps_rejected"] == 0
    assert close["ended"] >= s.info["started"]
    assert meta["stats"]["rows_written"] == close["rows_written"]
    assert meta["stats"]["frames_written"] == len(s.frames)
    assert meta["stats"]["bytes_written"] == len(buf)
    assert steplog.open(run_dir).shards[0]["close"] == close


def test_a_million_scalars(tmp_path):
    n = 1_000_000
    run = steplog.init(dir=tmp_path)
    log = run.log
    for i in range(n):
        log({"loss": float(i)})
    run.finish()
    _, _, s = only_shard(run.dir)
    assert not s.damage and not s.bad_frames and not s.missing
    assert s.rows == n and s.keys == ["loss"]
    steps, values = s.series("loss", "f64")
    assert np.array_equal(steps, np.arange(n, dtype=np.int64))
    assert np.array_equal(values, np.arange(n, dtype=np.float64))
    assert np.array_equal(s.series(TIMESTAMP_KEY, "f64")[0], steps)
    assert s.close is not None and s.close["rows_written"] == n
    assert s.summary == {"loss": float(n - 1)}


# --- damage, limits and versioning --------------------------------------------------------------


def small_run(tmp_path: Path, rows: int = 40, batch_max_rows: int = 10) -> tuple[str, Path]:
    run = steplog.init(dir=tmp_path, batch_max_rows=batch_max_rows)
    for i in range(rows):
        run.log({"loss": float(i), "step_sq": i * i})
    run.finish()
    (path,) = Path(run.dir).glob("*" + SHARD_SUFFIX)
    return run.dir, path


def test_torn_tail_is_recognised(tmp_path):
    run_dir, path = small_run(tmp_path)
    whole = path.read_bytes()
    frames = decode_shard(whole).frames
    batches = [f for f in frames if f.header.kind == KIND_BATCH]
    last_batch = batches[-1]
    end = last_batch.offset + HEADER_LEN + last_batch.header.payload_len
    for cut in (last_batch.offset + 2, last_batch.offset + 20, last_batch.offset + 40, end - 1):
        path.write_bytes(whole[:cut])
        s = decode_shard(whole[:cut])
        assert [d.torn_tail for d in s.damage] == [True]
        assert (s.damage[0].offset, s.damage[0].length) == (
            last_batch.offset,
            cut - last_batch.offset,
        )
        assert s.rows == 30 and s.close is None and not s.missing
        reader = steplog.open(run_dir)  # a torn tail is expected after a crash: no warning
        assert [(p["offset"], p["torn_tail"]) for p in reader.problems] == [
            (last_batch.offset, True)
        ]
        assert reader.rows == s.rows
        assert np.array_equal(reader.scalars("loss")[1], s.series("loss", "f64")[1])


def test_damage_is_skipped_by_resync_and_revealed_by_sequence_numbers(tmp_path):
    run_dir, path = small_run(tmp_path)
    whole = path.read_bytes()
    frames = decode_shard(whole).frames
    # The first batch: the only one to use every key first, and still the only one lost.
    victim = next(f for f in frames if f.header.kind == KIND_BATCH)
    for at in (victim.offset, victim.offset + 13, victim.offset + HEADER_LEN + 5):
        buf = bytearray(whole)
        buf[at] ^= 0x40
        path.write_bytes(bytes(buf))
        s = decode_shard(bytes(buf))
        length = HEADER_LEN + victim.header.payload_len
        assert [(d.offset, d.length, d.torn_tail) for d in s.damage] == [
            (victim.offset, length, False)
        ]
        assert s.missing == [(victim.header.seq, victim.header.seq)]
        assert s.rows == 30 and s.close is not None and s.close["rows_written"] == 40
        steps, values = s.series("loss", "f64")
        assert steps.tolist() == list(range(10, 40))
        with pytest.warns(steplog.SteplogWarning):
            reader = steplog.open(run_dir)
        assert {p["torn_tail"] for p in reader.problems} == {False}
        assert any(p.get("offset") == victim.offset for p in reader.problems)
        lost = (victim.header.seq, victim.header.seq)
        assert any(
            tuple(p.get("lost_frames") or ()) == lost or f"{lost[0]}..{lost[1]} " in p["reason"]
            for p in reader.problems
        )
        r_steps, r_values = reader.scalars("loss")
        assert np.array_equal(r_steps, steps) and np.array_equal(bits(r_values), bits(values))
        assert np.array_equal(reader.scalars("step_sq")[1], s.series("step_sq", "i64")[1])


def renumber(frames: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(
        encode_frame(kind, seq, raw, codec) for seq, (kind, codec, raw) in enumerate(frames)
    )


def test_unknown_frame_kinds_and_fields_are_ignored(tmp_path):
    run_dir, path = small_run(tmp_path)
    s0 = decode_shard(path.read_bytes())
    frames = [
        (f.header.kind, f.header.codec, decode_payload(f.header, f.payload)) for f in s0.frames
    ]
    extra = msgpack.packb({"something": "new", "n": [1, 2, 3]})
    close = msgpack.unpackb(frames[-1][2])
    close["future_field"] = {"x": 1}
    frames[-1] = (KIND_CLOSE, CODEC_NONE, msgpack.packb(close))
    frames.insert(1, (9, CODEC_ZSTD, extra))
    frames.insert(4, (200, CODEC_NONE, extra))
    path.write_bytes(renumber(frames))
    s = decode_shard(path.read_bytes())
    assert not s.damage and not s.bad_frames and not s.missing
    assert s.rows == 40 and np.array_equal(s.series("loss", "f64")[1], np.arange(40.0))
    reader = steplog.open(run_dir, strict=True)
    assert reader.rows == 40 and reader.shards[0]["close"]["rows_written"] == 40
    # This decoder skips unknown kinds without decoding them. steplog 0.1's reader decodes them
    # first and would report this one as damage, hence the msgpack rule in FORMAT.md section 5.
    frames.insert(2, (77, CODEC_NONE, b"\x00 not msgpack"))
    s = decode_shard(renumber(frames))
    assert not s.damage and not s.bad_frames and not s.missing and s.rows == 40


def test_limits_are_enforced_before_reading(tmp_path):
    raw = msgpack.packb({"rows_written": 0})
    over = encode_frame(KIND_CLOSE, 0, raw, payload_len=MAX_PAYLOAD + 1)
    with pytest.raises(Damage, match="limit"):
        parse_header(over, 0)
    over = encode_frame(KIND_CLOSE, 0, raw, raw_len=MAX_RAW + 1)
    with pytest.raises(Damage, match="limit"):
        parse_header(over, 0)
    # A zstd payload that inflates beyond its declared raw_len is refused, not inflated.
    big = bytes(1 << 20)
    bomb = zstandard.ZstdCompressor().compress(big)
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(big)
    for payload in (bomb, undeclared):
        h = FrameHeader(KIND_BATCH, CODEC_ZSTD, 0, 0, len(payload), 100, crc32c(payload), 0)
        with pytest.raises(FrameError):
            decode_payload(h, payload)
        assert len(decode_payload(replace(h, raw_len=len(big)), payload)) == len(big)
    # Nesting deeper than 32 is refused.
    deep: Any = 0
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(FrameError, match="deep"):
        unpack(msgpack.packb(deep))
    unpack(msgpack.packb(deep[0]))


def test_worked_example_in_the_spec_decodes():
    spec = (Path(__file__).parent.parent / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    section = spec.split("<!-- close-frame-hex -->")[1].split("```")[1]
    buf = b"".join(
        bytes.fromhex(m.group(1))
        for m in re.finditer(r"^[0-9a-f]{8}:((?: [0-9a-f]{2})+)", section, re.M)
    )
    s = decode_shard(buf)
    assert not s.damage and not s.bad_frames
    (frame,) = s.frames
    assert frame.header.kind == KIND_CLOSE and frame.header.seq == 3
    assert s.close is not None and s.close["rows_written"] == 2


def test_open_rows_decode_independently_and_match_steplog(tmp_path):
    run = steplog.init(dir=tmp_path, flush_interval_s=1000)
    for i in range(20):
        run.log({"loss": i * 0.5, "n": i}, step=i)
    run.log({"note": "hi", "flag": True}, step=19)
    run.sync()  # writes the row of step 19, still open, as an open-row frame
    (path,) = Path(run.dir).glob("*" + SHARD_SUFFIX)
    live = path.read_bytes()
    s = decode_shard(live)
    assert [f.header.kind for f in s.frames].count(KIND_OPEN) == 1
    assert not s.damage and not s.bad_frames and s.rows == 20
    assert s.series("loss", "f64")[0].tolist() == list(range(20))
    assert s.others == [(19, "note", "text", "hi")]
    # Crafted frames: a later copy of step 19 with one key (merged: it wins, the rest stays)
    # and a copy of a committed step (ignored).
    seq = max(f.header.seq for f in s.frames) + 1
    late = {"step": 19, "time": 1.5, "cells": [["loss", "f64", -1.0], ["extra", "i64", 7]]}
    old = {"step": 3, "time": 1.0, "cells": [["loss", "f64", 1e9]]}
    crafted = live + b"".join(
        encode_frame(KIND_OPEN, seq + i, msgpack.packb(m), CODEC_ZSTD)
        for i, m in enumerate([late, old])
    )
    copy = tmp_path / ("copy" + SHARD_SUFFIX)
    copy.write_bytes(crafted)
    s = decode_shard(crafted)
    theirs = steplog._core.read_shard(str(copy))
    assert not s.bad_frames and not theirs["problems"]
    assert s.rows == theirs["rows"] == 20
    assert s.keys == theirs["keys"] == ["loss", "n", "note", "flag", "extra"]
    series = {(k, d): (st.tolist(), v.tolist()) for k, d, st, v in theirs["series"]}
    for key, dtype in [("loss", "f64"), ("n", "i64"), ("flag", "bool"), ("extra", "i64")]:
        steps, values = s.series(key, dtype)
        assert series[(key, dtype)] == (steps.tolist(), values.tolist()), key
    loss = s.series("loss", "f64")
    assert loss[0].tolist() == list(range(20)) and loss[1][-1] == -1.0 and loss[1][3] == 1.5
    assert series[("_timestamp", "f64")][1][-1] == 1.5, "the latest copy's time"
    # Committed by finish(): the committed row stands, the open-row frames are superseded.
    run.log({"loss": 100.0}, step=19)
    run.finish()
    s = decode_shard(path.read_bytes())
    assert s.rows == 20 and s.series("loss", "f64")[1][-1] == 100.0
    assert s.series(TIMESTAMP_KEY, "f64")[0].tolist() == list(range(20))
