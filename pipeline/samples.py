"""A bucket's rolling sample: its storage format in Redis, and reading it back.

`<p>dur:<bucket id>` is a STRING holding a ring of float32 durations:

    bytes 0-3   count: samples held, at most windowSize (uint32, little endian)
    bytes 4-7   next: the slot the next sample goes to; once the ring is full (count =
                slots = windowSize), also the oldest sample's slot
    bytes 8-    slots: one float32 (little endian) each, a duration in milliseconds

A filling ring holds its samples in slots [0, count), oldest first, and has up to a quarter
more slots than samples (zeros); when a batch does not fit, ingest.lua SETs the ring again
with a quarter more, up to windowSize. A full ring has exactly windowSize slots and each new
sample overwrites the oldest (SETRANGE). pipeline/ingest/ingest.lua is the only writer.

Why not a LIST of decimal strings (LPUSH + LTRIM, what the design first had): recompute
reads every sample of every dirty bucket each window, and LRANGE turns 1000 samples into
1000 reply strings, which Redis serialises and the client allocates one by one; clearing
10k buckets took ~3.8 s, nearly all of it that. A GET of one 4 KB string per bucket takes a
tenth of it, numpy reads the floats without parsing, and Redis keeps ~4.2 bytes per sample
(at most ~5.3 while a ring fills) instead of ~5.3. float32 keeps 24 significant bits:
0.01 us at 150 ms, 40 ms at a week. Why not APPEND while filling: Redis then reserves up to
twice the string's length, 7.3 bytes per sample for a ring filled a sample at a time.

A LIST left by an older version is still read (`decode_legacy`), and ingest.lua converts it
to a ring the first time it adds to it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Sequence
from typing import cast

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pipeline.keys import Keys

log = logging.getLogger(__name__)

HEADER_BYTES = 8
SAMPLE_BYTES = 4
SAMPLE_DTYPE = np.dtype("<f4")
EMPTY = np.empty(0, dtype=np.float64)

pack_ms = struct.Struct("<f").pack
"""One duration (ms) as ingest.lua stores it."""


class MalformedSamples(ValueError):
    """The key holds a string that is not a sample ring (wrong length)."""


def encode(values_ms: Iterable[float]) -> bytes:
    """A ring holding exactly `values_ms`, oldest first (no free slots)."""
    body = np.asarray(list(values_ms), dtype=SAMPLE_DTYPE).tobytes()
    return struct.pack("<II", len(body) // SAMPLE_BYTES, 0) + body


def is_ring(raw: bytes) -> bool:
    return len(raw) >= HEADER_BYTES and (len(raw) - HEADER_BYTES) % SAMPLE_BYTES == 0


def _slots(raw: bytes) -> tuple[int, int, np.ndarray]:
    if not is_ring(raw):
        raise MalformedSamples(f"{len(raw)} bytes is not an 8-byte header plus 4-byte slots")
    count, nxt = struct.unpack_from("<II", raw)
    slots = np.frombuffer(raw, dtype=SAMPLE_DTYPE, offset=HEADER_BYTES)
    return min(count, slots.size), nxt, slots


def decode(raw: bytes | None) -> np.ndarray:
    """The samples of a ring, in milliseconds (float64), in slot order: statistics need no
    other. Missing key: no samples."""
    if not raw:
        return EMPTY
    count, _nxt, slots = _slots(raw)
    return slots[:count].astype(np.float64)


def in_order(raw: bytes) -> np.ndarray:
    """The samples of a ring, oldest first (what inspection wants)."""
    count, nxt, slots = _slots(raw)
    if count < slots.size:
        return slots[:count].astype(np.float64)
    nxt = nxt if nxt < slots.size else 0
    return np.concatenate((slots[nxt:], slots[:nxt])).astype(np.float64)


def decode_legacy(raw: Sequence[bytes | str]) -> np.ndarray:
    """A LIST of integer microseconds (newest first), as versions before the ring stored."""
    if not raw:
        return EMPTY
    return np.array(raw, dtype=np.bytes_).astype(np.int64)[::-1] / 1000.0


async def fetch(redis: Redis, keys: Keys, bucket_ids: Sequence[str]) -> list[np.ndarray | None]:
    """Every bucket's samples (ms, float64), one pipelined GET per bucket. The client must
    return bytes (no decode_responses): the rings are binary.

    A key that still holds a LIST from an older version is read with LRANGE instead. None
    for a key holding anything else (logged): no baseline can come from it."""
    async with redis.pipeline(transaction=False) as pipe:
        for bucket_id in bucket_ids:
            pipe.get(keys.dur(bucket_id))
        replies = await pipe.execute(raise_on_error=False)
    out: list[np.ndarray | None] = []
    for bucket_id, reply in zip(bucket_ids, replies, strict=True):
        if isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE"):
            if await redis.type(keys.dur(bucket_id)) in (b"list", "list"):
                out.append(decode_legacy(await redis.lrange(keys.dur(bucket_id), 0, -1)))
                continue
        elif isinstance(reply, Exception):
            raise reply
        elif reply is None or is_ring(reply):
            out.append(decode(reply))
            continue
        log.warning("event=bad_samples key=%r action=skip error=%r", keys.dur(bucket_id),
                    "not a sample ring (pipeline/samples.py)")
        out.append(None)
    return out


async def read(redis: Redis, keys: Keys, bucket_id: str) -> np.ndarray:
    """One bucket's samples, oldest first (tests, inspection)."""
    key = keys.dur(bucket_id)
    if await redis.type(key) in (b"list", "list"):
        return decode_legacy(await redis.lrange(key, 0, -1))
    raw = cast(bytes | None, await redis.get(key))  # binary: the client must not decode
    return in_order(raw) if raw else EMPTY
