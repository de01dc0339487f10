"""The streaming multipart/related parser: the same parts whatever the chunking, including
a delimiter split across chunks and part bytes that look like the start of a delimiter."""

from __future__ import annotations

import random

import pytest

from tessera.dicomweb import multipart_writer
from tessera.dicomweb.multipart import (
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
)

BOUNDARY = "b0und4ry"


def parse(chunks: list[bytes]) -> tuple[list[tuple[dict[str, str], bytes]], bool]:
    parser = MultipartParser(BOUNDARY)
    parts: list[tuple[dict[str, str], bytes]] = []
    current = bytearray()
    headers: dict[str, str] = {}
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, PartStart):
                headers, current = event.headers, bytearray()
            elif isinstance(event, PartData):
                current += event.data
            elif isinstance(event, PartEnd):
                parts.append((headers, bytes(current)))
    return parts, parser.finished


# Part bodies that end in, or hold, every prefix of the delimiter (but never all of it).
TRICKY = [
    b"",
    b"\r",
    b"\r\n",
    b"\r\n-",
    b"plain bytes",
    b"x\r\n--b0und4r",
    b"\r\r\n\r\n--\r\n--b0und4",
    b"--b0und4ry at the start but not after a CRLF",
    bytes(range(256)) * 40,
]


def split_at(body: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(cuts), len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def test_every_two_way_split_gives_the_same_parts() -> None:
    payloads = TRICKY[:8]
    body = multipart_writer.body(BOUNDARY, payloads)
    for cut in range(len(body) + 1):
        parts, finished = parse(split_at(body, [cut]))
        assert [data for _, data in parts] == payloads, cut
        assert finished
        assert all(h["content-type"].startswith("application/dicom") for h, _ in parts)


@pytest.mark.parametrize("seed", range(20))
def test_random_chunking_gives_the_same_parts(seed: int) -> None:
    rng = random.Random(seed)
    payloads = [rng.choice(TRICKY) + rng.randbytes(rng.randrange(0, 3000)) for _ in range(6)]
    body = b"a preamble to drop\r\n" + multipart_writer.body(BOUNDARY, payloads) + b"epilogue"
    cuts = [rng.randrange(len(body) + 1) for _ in range(rng.randrange(1, 60))]
    parts, finished = parse(split_at(body, cuts))
    assert [data for _, data in parts] == payloads
    assert finished


def test_one_byte_at_a_time() -> None:
    payloads = TRICKY
    body = multipart_writer.body(BOUNDARY, payloads)
    parts, finished = parse([body[i : i + 1] for i in range(len(body))])
    assert [data for _, data in parts] == payloads
    assert finished


def test_a_truncated_body_is_not_finished() -> None:
    body = multipart_writer.body(BOUNDARY, [b"one", b"two"])
    parts, finished = parse([body[:-10]])
    assert [data for _, data in parts] == [b"one"]
    assert not finished


def test_garbage_after_a_delimiter_is_refused() -> None:
    parser = MultipartParser(BOUNDARY)
    with pytest.raises(MultipartError, match="after a boundary delimiter"):
        list(parser.feed(b"--b0und4ry junk\r\n\r\npayload"))


def test_endless_part_headers_are_refused() -> None:
    parser = MultipartParser(BOUNDARY)
    with pytest.raises(MultipartError, match="16 KiB"):
        list(parser.feed(b"--b0und4ry\r\nX-Long: " + b"a" * 17000))
