"""The one Accept parser (PS3.18 §8.7) with headers as real clients send them."""

from __future__ import annotations

import pytest

from tessera.dicomweb.negotiation import (
    FRAMES,
    INSTANCES,
    AcceptError,
    Representation,
    acceptable,
    target_syntax,
)

ELE = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.90"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
RLE = "1.2.840.10008.1.2.5"


def everything(stored: str, target: str) -> bool:
    return True


def nothing(stored: str, target: str) -> bool:
    return False


@pytest.mark.parametrize(
    "header",
    [
        "multipart/related; type=application/octet-stream; transfer-syntax=*",  # OHIF
        'multipart/related; type="application/octet-stream"; transfer-syntax="*"',
        "multipart/related;type=application/octet-stream;transfer-syntax=*",
        'MULTIPART/RELATED; TYPE="application/octet-stream"; transfer-syntax=*',
    ],
)
def test_ohif_frame_accept(header: str) -> None:
    candidates = acceptable(header, FRAMES)
    assert candidates == [Representation("application/octet-stream", "*", True)]
    for stored in (ELE, J2K, RLE, JPEG_BASELINE):
        assert target_syntax(candidates, stored, nothing) == (candidates[0], stored)


def test_no_accept_and_browser_defaults() -> None:
    for header in (None, "", "*/*", "text/html,application/xhtml+xml,*/*;q=0.8"):
        candidates = acceptable(header, FRAMES)
        assert candidates[0] == Representation("application/octet-stream", None, True)
    assert acceptable("*/*", INSTANCES)[0].media_type == "application/dicom"


def test_q_values_order_candidates() -> None:
    header = (
        "multipart/related; type=image/jpeg; q=0.3, "
        "multipart/related; type=image/jp2; q=0.9, "
        "multipart/related; type=application/octet-stream; q=0.5"
    )
    types = [c.media_type for c in acceptable(header, FRAMES)]
    assert types == ["image/jp2", "application/octet-stream", "image/jpeg"]
    # Stored J2K: the first (jp2) passes through; stored RLE cannot make jp2 without
    # codecs, so octet-stream (decoding needed) is refused too and nothing fits.
    candidates = acceptable(header, FRAMES)
    assert target_syntax(candidates, J2K, nothing)[1] == J2K
    assert target_syntax(candidates, RLE, nothing) is None
    assert target_syntax(candidates, RLE, everything)[1] == J2K


def test_q_zero_excludes() -> None:
    assert acceptable("multipart/related; type=image/jp2; q=0", FRAMES) == []


@pytest.mark.parametrize(
    "header",
    [
        "multipart/related; type=application/octet-stream; q=high",
        "multipart/related; type=application/octet-stream; q=2",
        "garbage",
        "multipart/related; type=application/octet-stream; transfer-syntax=",
    ],
)
def test_malformed_headers(header: str) -> None:
    with pytest.raises(AcceptError):
        acceptable(header, FRAMES)


def test_commas_inside_quotes_do_not_split() -> None:
    header = 'multipart/related; type="application/dicom"; x="a,b", */*;q=0.1'
    candidates = acceptable(header, INSTANCES)
    assert len(candidates) == 2 and candidates[0].multipart


def test_instance_default_syntax_rules() -> None:
    default = acceptable("multipart/related; type=application/dicom", INSTANCES)
    assert target_syntax(default, ELE, nothing)[1] == ELE
    # Lossless compressed: Explicit VR Little Endian when it can be decoded, else as stored.
    assert target_syntax(default, RLE, everything)[1] == ELE
    assert target_syntax(default, RLE, nothing)[1] == RLE
    # Lossy stays lossy (PS3.18 §8.7.3.5.2).
    assert target_syntax(default, JPEG_BASELINE, everything)[1] == JPEG_BASELINE
    named = acceptable(
        f"multipart/related; type=application/dicom; transfer-syntax={J2K}", INSTANCES
    )
    assert target_syntax(named, J2K, nothing)[1] == J2K
    assert target_syntax(named, ELE, nothing) is None
    assert target_syntax(named, ELE, everything)[1] == J2K


def test_frame_media_type_families() -> None:
    jp2 = acceptable("multipart/related; type=image/jp2", FRAMES)
    assert target_syntax(jp2, J2K, nothing)[1] == J2K
    assert target_syntax(jp2, ELE, everything)[1] == J2K
    wrong = acceptable(f"multipart/related; type=image/jp2; transfer-syntax={RLE}", FRAMES)
    assert target_syntax(wrong, RLE, everything) is None
    octet_named = acceptable(
        f"multipart/related; type=application/octet-stream; transfer-syntax={ELE}", FRAMES
    )
    assert target_syntax(octet_named, "1.2.840.10008.1.2", nothing)[1] == ELE  # same bytes
    assert target_syntax(octet_named, J2K, nothing) is None
    assert target_syntax(octet_named, J2K, everything)[1] == ELE


def test_bare_types_are_single_part() -> None:
    (rep,) = acceptable("image/jp2", FRAMES)
    assert rep == Representation("image/jp2", None, False)
    (rep,) = acceptable("application/dicom", INSTANCES)
    assert not rep.multipart
    assert acceptable("image/png", FRAMES) == []
