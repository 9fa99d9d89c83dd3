"""`steplog.open` on damaged copies of a real shard: truncations, bit flips, inserted junk and
random bytes (hypothesis). It never raises anything but the documented errors (with
`strict=True`, `CorruptRunError`), warns only with `SteplogWarning`, never reports a value that
was not logged, and reads a truncated shard back as exactly the batches written before the
cut. A damaged byte costs only the rows of the batch frame it hits (at most 8,192), never the
run, and is reported: checked on random single-byte damage to a 300,000-row shard."""

import os
import shutil
import struct
import tempfile
import warnings

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steplog

from .decoder_frames import encode_frame
from .decoder_shard import decode_shard as independent_decode

# Rows of each batch frame (one flush per group). Every key is logged in the first row, so
# the first batch is the first to use them all.
GROUPS = [range(0, 10), range(10, 25), range(25, 26), range(26, 60)]
ALL = set(range(60))
KIND_BATCH = 2

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def row(i: int) -> dict:
    d = {"x": i, "y": i * 0.5}
    if i % 7 == 0:
        d["t"] = f"s{i}"
    return d


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("original")
    run = steplog.init(dir=root, flush_interval_s=1000)
    for group in GROUPS:
        for i in group:
            run.log(row(i))
        run.flush()
    run.finish()
    [shard] = [f for f in os.listdir(run.dir) if f.endswith(".steplog")]
    with open(os.path.join(run.dir, shard), "rb") as f:
        data = f.read()
    frames = []  # (start, end, kind)
    pos = 0
    while pos < len(data):
        kind = data[pos + 4]
        (plen,) = struct.unpack_from("<I", data, pos + 16)
        frames.append((pos, pos + 32 + plen, kind))
        pos += 32 + plen
    batches = [(s, e) for s, e, k in frames if k == KIND_BATCH]
    assert len(batches) == len(GROUPS)
    return Original((run.dir, shard, data, frames, batches))


class Original(tuple):
    """(run_dir, shard name, shard bytes, frames, batch frames), shown briefly in failures."""

    def __repr__(self) -> str:
        return f"<shard of {len(self[2])} bytes, frames {self[3]}>"


def read(original, shard_bytes: bytes):
    """Reads a copy of the run whose shard is `shard_bytes`; returns (reader, warnings)."""
    run_dir, shard, *_ = original
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(run_dir, "run.json"), d)
        with open(os.path.join(d, shard), "wb") as f:
            f.write(shard_bytes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reader = steplog.open(d)
            steps = check_values(reader)
        assert all(issubclass(w.category, steplog.SteplogWarning) for w in caught), caught
        try:
            strict = steplog.open(d, strict=True)
            assert not strict.problems
        except steplog.CorruptRunError:
            assert reader.problems
    return reader, steps


def check_values(reader) -> set:
    """Every value read is the one logged at its step; returns the steps of `x`."""
    steps: set = set()
    keys = reader.keys()
    assert set(keys) <= {"x", "y", "t"}
    if "x" in keys:
        s, v = reader.scalars("x")
        assert v.tolist() == s.tolist()
        assert len(set(s.tolist())) == len(s)
        steps = set(s.tolist())
    if "y" in keys:
        s, v = reader.scalars("y")
        assert v.tolist() == [i * 0.5 for i in s.tolist()]
    if "t" in keys:
        assert all(v == f"s{s}" for s, v in reader.history("t"))
    # The rest of the API works on whatever survived.
    reader.summary, reader.metrics, reader.shards, reader.nonfinite, reader.to_pandas()
    # Every row logged x: the rows read are exactly the steps of x read.
    assert reader.dropped == 0 and reader.rows == len(steps)
    return steps


def groups_in(batches_kept) -> set:
    return {i for n, g in enumerate(GROUPS) if n in batches_kept for i in g}


@given(st.data())
@SETTINGS
def test_a_truncated_shard_reads_back_the_batches_before_the_cut(original, data):
    *_, raw, _frames, batches = original
    cut = data.draw(st.integers(0, len(raw)))
    reader, steps = read(original, raw[:cut])
    assert steps == groups_in({n for n, (_, end) in enumerate(batches) if end <= cut})
    assert steps == set(range(len(steps))), "a prefix"
    assert all(p["torn_tail"] for p in reader.problems), reader.problems


@given(st.data())
@SETTINGS
def test_bit_flips_cost_only_the_frames_they_touch(original, data):
    *_, raw, frames, batches = original
    flip = st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255))
    flips = data.draw(st.lists(flip, min_size=1, max_size=4, unique_by=lambda f: f[0]))
    damaged = bytearray(raw)
    for at, mask in flips:
        damaged[at] ^= mask
    hit = {n for n, (start, end) in enumerate(batches) for at, _ in flips if start <= at < end}
    reader, steps = read(original, bytes(damaged))
    # Exactly the rows of the batches hit are lost, whichever they are (the first included).
    assert steps == groups_in(set(range(len(GROUPS))) - hit)
    touched = {n for n, (lo, hi, _) in enumerate(frames) for at, _ in flips if lo <= at < hi}
    serious = [p for p in reader.problems if not p["torn_tail"]]
    assert len(serious) <= len(touched)
    if hit:
        assert serious, "lost rows are reported"


@given(st.data())
@SETTINGS
def test_inserted_junk_and_random_bytes_never_raise(original, data):
    raw = original[2]
    at = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.binary(max_size=300))
    _, steps = read(original, raw[:at] + junk + raw[at:])
    assert steps <= ALL
    _, steps = read(original, data.draw(st.binary(max_size=3000)))
    assert steps == set()


def test_an_empty_shard_and_a_lone_header_read_as_no_rows(original):
    raw, frames = original[2], original[3]
    for shard in [b"", raw[: frames[0][1]]]:
        reader, steps = read(original, shard)
        assert steps == set() and reader.rows == 0


# --- the damage experiment: one random byte of a 300,000-row shard --------------------------

BIG_ROWS = 300_000
FRAME_MAX_ROWS = 8192
TRIALS = 50


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 300,000-row shard as `steplog demo` logs it (5 scalars a row, default settings), and
    for each frame (start, end, steps of its rows)."""
    root = tmp_path_factory.mktemp("big")
    run = steplog.init(dir=root)
    rng = np.random.default_rng(7)
    loss = 2.5 * np.exp(-np.arange(BIG_ROWS) / 6e4) + 0.05 * rng.standard_normal(BIG_ROWS)
    loss_l = loss.astype(np.float32).tolist()
    log = run.log
    for i in range(BIG_ROWS):
        x = loss_l[i]
        log({"train/loss": x, "train/acc": 1 - x / 3, "lr": 1e-3 / (1 + i), "x": i, "e": i // 9})
    run.finish()
    [shard] = [f for f in os.listdir(run.dir) if f.endswith(".steplog")]
    with open(os.path.join(run.dir, shard), "rb") as f:
        data = f.read()
    rows_of = independent_decode(data).batch_rows  # offset of each batch frame -> rows
    frames, pos, first_step = [], 0, 0
    while pos < len(data):
        (plen,) = struct.unpack_from("<I", data, pos + 16)
        n = rows_of.get(pos, 0)
        frames.append((pos, pos + 32 + plen, range(first_step, first_step + n)))
        first_step += n
        pos += 32 + plen
    assert first_step == BIG_ROWS
    return run.dir, shard, data, frames


def test_one_damaged_byte_costs_at_most_the_rows_of_its_frame(big):
    run_dir, shard, data, frames = big
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(run_dir, "run.json"), d)
        for _ in range(TRIALS):
            at = int(rng.integers(len(data)))
            damaged = bytearray(data)
            damaged[at] ^= int(rng.integers(1, 256))
            with open(os.path.join(d, shard), "wb") as f:
                f.write(damaged)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", steplog.SteplogWarning)
                reader = steplog.open(d)
            steps, values = reader.scalars("x")
            assert np.array_equal(steps, values.astype(np.int64)), at
            [hit] = [r for start, end, r in frames if start <= at < end]
            kept = np.zeros(BIG_ROWS, bool)
            kept[steps] = True
            lost = np.flatnonzero(~kept)
            assert len(lost) <= FRAME_MAX_ROWS, (at, len(lost))
            assert set(lost.tolist()) == set(hit), f"byte {at}: exactly its frame's rows"
            assert reader.rows == BIG_ROWS - len(hit)
            assert reader.keys() == ["train/loss", "train/acc", "lr", "x", "e"], at
            assert reader.problems, f"byte {at}: the damage is reported"


# --- hand-made frames: the reader's views agree on any input ----------------------------------


def batch_frame(seq: int, table: list, steps: list, cols: list, vals: list = ()) -> bytes:
    """A batch frame (codec 0) of rows at `steps`: key table `table`, an f64 column holding
    the step for each id in `cols`, and text values `vals` of (step, id)."""

    def f64(xs):
        return struct.pack(f"<{len(xs)}d", *xs)

    columns = [[0, "f64", struct.pack(f"<{len(steps)}q", *steps), f64(steps)]]
    for kid in cols:
        columns.append([kid, "f64", struct.pack(f"<{len(steps)}q", *steps), f64(steps)])
    m = {
        "rows": len(steps),
        "keys": table,
        "cols": columns,
        "vals": [[step, kid, "text", f"t{step}"] for step, kid in vals],
    }
    return encode_frame(KIND_BATCH, seq, msgpack.packb(m, use_bin_type=True))


@pytest.mark.parametrize("case", ["conflicting", "undefined", "mixed"])
def test_views_agree_on_hand_made_key_tables(tmp_path, case):
    ts = [0, "_timestamp"]
    frames = {
        # Id 1 is "a" in one batch and "b" in the next: each batch goes by its own table.
        "conflicting": [
            batch_frame(0, [ts, [1, "a"]], [0, 1], [1]),
            batch_frame(1, [ts, [1, "b"]], [2], [1], [(2, 1)]),
        ],
        # Id 2 is named nowhere: that batch is lost whole, its good column with it.
        "undefined": [
            batch_frame(0, [ts, [1, "a"]], [0], [1]),
            batch_frame(1, [ts, [3, "c"]], [1, 2], [3, 2]),
        ],
        # An id listed only by an earlier batch (the older layout), then renamed.
        "mixed": [
            batch_frame(0, [ts, [1, "a"]], [0], [1]),
            batch_frame(1, [ts], [1], [1]),
            batch_frame(2, [ts, [1, "z"]], [2], [], [(2, 1)]),
        ],
    }[case]
    (tmp_path / "s-1.steplog").write_bytes(b"".join(frames))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", steplog.SteplogWarning)
        reader = steplog.open(tmp_path)
    want = {
        "conflicting": {"a": [(0, 0.0), (1, 1.0)], "b": [(2, 2.0), (2, "t2")]},
        "undefined": {"a": [(0, 0.0)]},
        "mixed": {"a": [(0, 0.0), (1, 1.0)], "z": [(2, "t2")]},
    }[case]
    assert reader.keys() == list(want)
    for key in reader.keys():  # every key listed can be read, and holds what was written
        assert sorted(reader.history(key), key=repr) == sorted(want[key], key=repr)
    assert reader.rows == {"conflicting": 3, "undefined": 1, "mixed": 3}[case]
    assert reader.problems  # a renamed id, or a batch lost
    with pytest.raises(steplog.CorruptRunError):
        steplog.open(tmp_path, strict=True)
