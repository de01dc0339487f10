"""The shared rules both facades ask: transfer syntaxes (storage/syntaxes.py), q-values
(dicomweb/media_type.py) and size groups (dicomweb/grouping.py)."""

from __future__ import annotations

import pytest

from tessera.dicomweb.grouping import by_size
from tessera.dicomweb.media_type import QualityError, quality
from tessera.storage import syntaxes

EVRLE = syntaxes.EXPLICIT_VR_LITTLE_ENDIAN
IVRLE = syntaxes.IMPLICIT_VR_LITTLE_ENDIAN


def test_native_little_endian_frames_pass_through() -> None:
    assert syntaxes.passes_through(IVRLE, EVRLE)
    assert syntaxes.passes_through(syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, IVRLE)
    assert syntaxes.passes_through(syntaxes.JPEG_BASELINE, syntaxes.JPEG_BASELINE)
    assert not syntaxes.passes_through(syntaxes.EXPLICIT_VR_BIG_ENDIAN, EVRLE)
    assert not syntaxes.passes_through(syntaxes.JPEG_2000_LOSSLESS, EVRLE)


def test_lossy_syntaxes_follow_ps3_5() -> None:
    # Lossy by definition: the JPEG DCT processes, retired ones included.
    assert {syntaxes.JPEG_BASELINE, syntaxes.JPEG_EXTENDED, "1.2.840.10008.1.2.4.52"} <= (
        syntaxes.ALWAYS_LOSSY
    )
    # Lossy or lossless per codestream; lossless-only syntaxes are in neither set.
    assert syntaxes.JPEG_2000 in syntaxes.MAYBE_LOSSY
    assert syntaxes.ALLOWS_LOSSY == syntaxes.ALWAYS_LOSSY | syntaxes.MAYBE_LOSSY
    for lossless in (
        syntaxes.JPEG_LOSSLESS_SV1,
        syntaxes.JPEG_2000_LOSSLESS,
        syntaxes.RLE_LOSSLESS,
    ):
        assert lossless not in syntaxes.ALLOWS_LOSSY


def test_conversion_rules() -> None:
    assert syntaxes.can_convert(syntaxes.JPEG_BASELINE, EVRLE)
    assert not syntaxes.can_convert(EVRLE, syntaxes.JPEG_BASELINE)  # nothing lossy is produced
    assert syntaxes.can_convert(EVRLE, syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    # Deflated is a whole-instance syntax: frames cannot be produced in it.
    assert not syntaxes.can_convert_frames(
        syntaxes.JPEG_2000_LOSSLESS, syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    )
    assert syntaxes.can_convert_frames(IVRLE, syntaxes.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)


def test_sub_operation_syntaxes_prefer_as_stored_then_native() -> None:
    stored = syntaxes.JPEG_BASELINE
    assert syntaxes.send_syntaxes(stored, [IVRLE, stored]) == [stored]
    accepted = [syntaxes.JPEG_2000_LOSSLESS, IVRLE, EVRLE]
    assert syntaxes.send_syntaxes(stored, accepted) == [EVRLE, IVRLE, syntaxes.JPEG_2000_LOSSLESS]
    # A receiver that takes only what this server cannot produce gets nothing to try.
    assert syntaxes.send_syntaxes(EVRLE, [syntaxes.JPEG_BASELINE]) == []


def test_quality() -> None:
    assert quality({}) == 1.0
    assert quality({"q": "0.000"}) == 0
    assert quality({"q": "0.5"}) == 0.5
    for bad in ("abc", "2", "-0.1", "nan"):
        with pytest.raises(QualityError):
            quality({"q": bad})


def test_groups_by_size_and_count() -> None:
    assert list(by_size([5, 5, 5], lambda n: n, 10)) == [[5, 5], [5]]
    assert list(by_size([3, 20, 3], lambda n: n, 10)) == [[3], [20], [3]]
    assert list(by_size([1, 1, 1, 1, 1], lambda n: n, 100, max_count=2)) == [[1, 1], [1, 1], [1]]
    assert list(by_size([], lambda n: n, 10)) == []
