"""An independent decoder of the steplog on-disk format (docs/FORMAT.md), part 1: framing.

Constants, CRC32C, frame headers, walking and resynchronising, payload decompression and
bounded msgpack decoding, and `encode_frame` to hand-make frames. Uses only msgpack,
zstandard, numpy and the standard library: never steplog's reader or `steplog._core`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import zstandard

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


def encode_frame(kind: int, seq: int, raw: bytes, codec: int = CODEC_NONE, **over: int) -> bytes:
    """Builds a frame (used to craft files a writer would not produce)."""
    payload = zstandard.ZstdCompressor().compress(raw) if codec == CODEC_ZSTD else raw
    f = {"payload_len": len(payload), "raw_len": len(raw), "payload_crc": crc32c(payload)}
    f.update(over)
    head = HEADER.pack(
        MAGIC, kind, codec, 0, seq, f["payload_len"], f["raw_len"], f["payload_crc"], 0
    )[:28]
    return head + struct.pack("<I", crc32c(head)) + payload
