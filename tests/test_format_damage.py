"""The independent decoder on damaged and hand-made shards: torn tails, resynchronisation,
unknown kinds and fields, limits, the worked example of FORMAT.md, and open rows.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zstandard

import steplog

from .decoder_frames import (
    CODEC_NONE,
    CODEC_ZSTD,
    HEADER_LEN,
    KIND_BATCH,
    KIND_CLOSE,
    KIND_OPEN,
    MAX_DEPTH,
    MAX_PAYLOAD,
    MAX_RAW,
    SHARD_SUFFIX,
    TIMESTAMP_KEY,
    Damage,
    FrameError,
    FrameHeader,
    crc32c,
    decode_payload,
    encode_frame,
    parse_header,
    unpack,
)
from .decoder_shard import (
    decode_shard,
)
from .format_model import (
    bits,
    renumber,
    small_run,
)

# --- damage, limits and versioning --------------------------------------------------------------


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
