"""Encoded columns (docs/FORMAT.md, "Encoded sequences"): what steplog writes for training
curves, bit-exact round trips of arbitrary columns, the column form of steplog 0.1.0, and
hostile lengths. Files are decoded with the independent decoder (decoder_frames.py,
decoder_shard.py).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steplog

from .decoder_frames import (
    CODEC_ZSTD,
    KIND_BATCH,
    MAX_BATCH_VALUES,
    SHARD_SUFFIX,
    TIMESTAMP_KEY,
    decode_payload,
    encode_frame,
)
from .decoder_shard import _column, decode_shard
from .format_model import bits, only_shard, renumber


def batch_maps(path: Path) -> list[dict[str, Any]]:
    s = decode_shard(path.read_bytes())
    return [
        msgpack.unpackb(decode_payload(f.header, f.payload), raw=False, strict_map_key=False)
        for f in s.frames
        if f.header.kind == KIND_BATCH
    ]


def training_run(tmp_path: Path, steps: int = 3000) -> tuple[str, dict[str, list[Any]]]:
    rng = np.random.default_rng(7)
    t = np.arange(steps, dtype=np.float64)
    logged: dict[str, list[Any]] = {
        "loss": (2.0 * np.exp(-t / 800) + 0.05 * rng.standard_normal(steps))
        .astype(np.float32)
        .tolist(),
        "lr": [3e-4 * 0.5 * (1 + math.cos(math.pi * i / steps)) for i in range(steps)],
        "epoch": [i // 500 for i in range(steps)],
        "tokens": [i * 4096 for i in range(steps)],
        "improved": [bool(i % 7 == 0) for i in range(steps)],
    }
    run = steplog.init(dir=tmp_path, batch_max_rows=1000)
    for i in range(steps):
        run.log({k: v[i] for k, v in logged.items()})
    run.finish()
    return run.dir, logged


def test_training_curves_use_the_cheap_encodings(tmp_path):
    run_dir, logged = training_run(tmp_path)
    _, name, s = only_shard(run_dir)
    assert not s.damage and not s.bad_frames and s.rows == 3000
    by_key: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for key, dtype, steps_tag, values_tag in s.encodings:
        by_key.setdefault((key, dtype), set()).add((steps_tag, values_tag))
    assert by_key == {
        (TIMESTAMP_KEY, "f64"): {("delta", "micros")},
        ("loss", "f64"): {("delta", "trim")},  # float32 values: low bytes dropped
        ("lr", "f64"): {("delta", "delta")},  # a smooth schedule
        ("epoch", "i64"): {("delta", "delta")},
        ("tokens", "i64"): {("delta", "delta")},
        ("improved", "bool"): {("delta", "plain")},
    }
    # Consecutive steps and constant strides cost no bytes; float32 values keep 5 of 8 bytes.
    for batch in batch_maps(Path(run_dir, name)):
        for col in batch["cols"]:
            kid, _dtype, n, steps, values = col
            assert isinstance(n, int)  # steplog 0.1.0 wants steps (a bin) there: it rejects these
            assert steps[:1] + steps[2:] == ["delta", 1, 0, b""]
            key = s.names[kid]
            if key == "tokens":
                assert values[2:] == [4096, 0, b""]
            if key == "loss":
                assert values[1] == 3
    reader = steplog.open(run_dir)
    for key, values in logged.items():
        dtype = {bool: "bool", int: "i64", float: "f64"}[type(values[0])]
        steps, got = s.series(key, dtype)
        assert np.array_equal(steps, np.arange(3000))
        assert np.array_equal(got, np.asarray(values))
        r_steps, r_values = reader.scalars(key)
        assert np.array_equal(r_steps, steps)
        assert np.array_equal(bits(r_values), bits(np.asarray(values, dtype=np.float64)))
    # _timestamp keeps whole microseconds.
    ts = reader.scalars(TIMESTAMP_KEY)[1]
    assert np.array_equal(ts, np.round(ts * 1e6) / 1e6)
    assert np.array_equal(ts, s.series(TIMESTAMP_KEY, "f64")[1])
    assert np.all(np.diff(ts) >= 0)


def float_of(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", b))[0])


any_float = st.integers(0, 2**64 - 1).map(float_of)  # every bit pattern: NaN payloads too
columns = st.one_of(
    st.lists(any_float, min_size=1, max_size=60),
    st.lists(st.floats(width=32), min_size=1, max_size=60),
    st.lists(st.floats(allow_nan=False, min_value=-1e6, max_value=1e6), min_size=1),
    st.integers(1, 200).flatmap(  # smooth: a schedule with a random start and slope
        lambda n: st.tuples(st.floats(-1e3, 1e3), st.floats(-1, 1)).map(
            lambda ab: [ab[0] + ab[1] * math.sin(i / 50) for i in range(n)]
        )
    ),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=60),
    st.lists(st.integers(-1000, 1000), min_size=1, max_size=60),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=columns, batch_max_rows=st.integers(1, 70), gaps=st.integers(1, 3))
def test_any_column_round_trips_bit_exactly(tmp_path_factory, values, batch_max_rows, gaps):
    run = steplog.init(dir=tmp_path_factory.mktemp("enc"), batch_max_rows=batch_max_rows)
    steps = [i * gaps + (i % 2) * (gaps - 1) for i in range(len(values))]
    for step, v in zip(steps, values):
        run.log({"x": v}, step=step, commit=True)
    run.finish()
    _, _, s = only_shard(run.dir)
    assert not s.damage and not s.bad_frames
    dtype = "i64" if isinstance(values[0], int) else "f64"
    got_steps, got = s.series("x", dtype)
    assert got_steps.tolist() == steps
    if dtype == "i64":
        assert got.tolist() == values
    else:
        assert np.array_equal(bits(got), bits(values))
    r_steps, r_values = steplog.open(run.dir).scalars("x")
    assert r_steps.tolist() == steps
    want = np.asarray(values, dtype=np.float64) if dtype == "i64" else values
    assert np.array_equal(bits(r_values), bits(want))


def as_array_form(col: list[Any]) -> list[Any]:
    """A column rewritten in steplog 0.1.0's form `[id, dtype, steps, values]`."""
    kid, dtype, steps, values, _ = _column(col)
    if dtype == "bool":
        values = values.astype(np.uint8)
    return [kid, dtype, steps.astype("<i8").tobytes(), values.tobytes()]


def test_files_with_steplog_0_1_columns_still_read(tmp_path):
    run_dir, logged = training_run(tmp_path, steps=1200)
    (path,) = Path(run_dir).glob("*" + SHARD_SUFFIX)
    before = steplog.open(run_dir)
    frames = []
    for f in decode_shard(path.read_bytes()).frames:
        raw = decode_payload(f.header, f.payload)
        if f.header.kind == KIND_BATCH:
            m = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            m["cols"] = [as_array_form(c) for c in m["cols"]]
            raw = msgpack.packb(m)
        frames.append((f.header.kind, f.header.codec, raw))
    path.write_bytes(renumber(frames))
    s = decode_shard(path.read_bytes())
    assert not s.bad_frames and {e[2:] for e in s.encodings} == {("plain", "plain")}
    after = steplog.open(run_dir, strict=True)
    assert after.rows == before.rows == 1200
    for key in [TIMESTAMP_KEY, *logged]:
        (s0, v0), (s1, v1) = before.scalars(key), after.scalars(key)
        assert np.array_equal(s0, s1) and np.array_equal(bits(v0), bits(v1)), key


def hostile_batch(cols: list[Any]) -> bytes:
    m = {"rows": 1, "keys": [[0, TIMESTAMP_KEY], [1, "x"]], "cols": cols, "vals": []}
    return msgpack.packb(m)


def progression(n: int, dtype: str = "i64", values: Any = None) -> list[Any]:
    free = ["delta", 0, 1, 0, b""]  # an arithmetic progression costs no bytes at all
    return [1, dtype, n, free, free if values is None else values]


@pytest.mark.parametrize(
    "cols",
    [
        [progression(MAX_BATCH_VALUES + 1)],
        [progression(MAX_BATCH_VALUES // 2 + 1), progression(1 << 24, "f64")],
        [progression(3, values=["trim", 0, bytes(8)])],  # planes hold 1 value, not 3
        [progression(3, values=["delta", 0, 1, 9, bytes(18)])],  # width over 8
        [progression(3, values=["xor", 0, b""])],  # unknown encoding
        [progression(3, "bool")],  # bools are plain
        [progression(3, values=["micros", 0, 1, 0, b""])],  # micros are f64 only
        [progression(3)[:4]],  # too short
    ],
)
def test_hostile_columns_are_refused(tmp_path, cols):
    run = steplog.init(dir=tmp_path)
    run.finish()
    (path,) = Path(run.dir).glob("*" + SHARD_SUFFIX)
    whole = path.read_bytes()
    seq = len(decode_shard(whole).frames)
    path.write_bytes(whole + encode_frame(KIND_BATCH, seq, hostile_batch(cols), CODEC_ZSTD))
    s = decode_shard(path.read_bytes())
    assert len(s.bad_frames) == 1 and s.rows == 0 and not s.missing
    with pytest.warns(steplog.SteplogWarning):
        reader = steplog.open(run.dir)
    assert "x" not in reader.keys() and len(reader.problems) == 1


def test_a_plain_field_inside_a_new_form_column_decodes():
    col = progression(2, values=np.array([5, -6], "<i8").tobytes())
    kid, dtype, steps, values, tags = _column(col)
    assert (kid, dtype, steps.tolist(), values.tolist(), tags) == (
        1,
        "i64",
        [0, 1],
        [5, -6],
        ("delta", "plain"),
    )
