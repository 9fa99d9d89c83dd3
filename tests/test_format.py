"""The independent decoder (`decoder_frames`, `decoder_shard`) held against what steplog
writes and what `steplog.open` reads back: every value, key tables, frame bounds, repeats,
run, summary, metrics, header and close frames.
"""

from __future__ import annotations

import base64
import json
import math
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import steplog

from .decoder_frames import (
    CODEC_NONE,
    CODEC_ZSTD,
    DTYPES,
    FRAME_MAX_BYTES,
    FRAME_MAX_ROWS,
    HEADER,
    HEADER_LEN,
    KIND_BATCH,
    KIND_CLOSE,
    KIND_HEADER,
    KIND_METRICS,
    KIND_RUN,
    KIND_SUMMARY,
    MAGIC,
    RUN_FILE,
    SHARD_SUFFIX,
    TIMESTAMP_KEY,
    crc32c,
    decode_payload,
    parse_header,
    unpack,
)
from .decoder_shard import (
    Hist,
    decode_shard,
)
from .format_model import (
    bits,
    only_shard,
    same_other,
    small_run,
    write_mixed_run,
)


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
