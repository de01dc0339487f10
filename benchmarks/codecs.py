"""Codec timings for one 512x512 frame: decode and transcode of a JPEG 2000 lossless frame
to native (target under 30 ms), render to JPEG (target under 30 ms), and encoding to
each output syntax. Prints p50 (and p90) in milliseconds; never asserts.

    python benchmarks/codecs.py [--repeat 30]

The frame is a CT-like phantom (a body of soft tissue with organs, bone and realistic
noise), 16 bits allocated, 12 stored, so compressed sizes and codec times resemble a
real CT slice rather than pure noise or a flat image.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentile  # noqa: E402
from tessera.storage import syntaxes  # noqa: E402
from tessera.storage.pixels import PixelDescription  # noqa: E402
from tessera.storage.render import RenderOptions, render_frame  # noqa: E402
from tessera.storage.transcode import (  # noqa: E402
    decode_frame,
    encode_frame,
    output_syntaxes,
    transcode_frame,
)


def phantom(size: int = 512, seed: int = 1) -> np.ndarray:
    """Stored values of a CT slice (value = HU + 1024), 12 bits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    hu = np.full((size, size), -1000.0)
    body = (xx / 0.42) ** 2 + (yy / 0.34) ** 2 < 1
    hu[body] = 40
    for cx, cy, rx, ry, value in (
        (-0.15, 0, 0.1, 0.16, -800),
        (0.15, 0, 0.1, 0.16, -800),
        (0, 0.2, 0.05, 0.05, 700),
        (0.05, -0.1, 0.08, 0.06, 60),
    ):
        hu[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = value
    hu += rng.normal(0, 12, hu.shape) * body
    return np.clip(hu + 1024, 0, 4095).astype(np.uint16)


def header(pixel: PixelDescription) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntaxes.JPEG_2000_LOSSLESS
    ds.Rows, ds.Columns = pixel.rows, pixel.columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    return ds


def short(uid: str) -> str:
    return (
        syntaxes.UID(uid)
        .name.replace(" Image Compression", "")
        .replace("High-Throughput JPEG 2000", "HTJ2K")
        .replace(" (Lossless Only)", " Lossless")
    )


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    function()  # warm up (imports, caches)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(label: str, times: list[float], extra: str = "") -> None:
    print(
        f"{label:<46} p50 {percentile(times, 50):7.2f} ms   p90 {percentile(times, 90):7.2f} ms"
        f"{'   ' + extra if extra else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    repeat = args.repeat

    pixels = phantom()
    pixel = PixelDescription(512, 512, 1, 16, 12, 11, 0, "MONOCHROME2", 0, 1)
    j2k = encode_frame(pixels, pixel, syntaxes.JPEG_2000_LOSSLESS)
    native = pixels.tobytes()
    ds = header(pixel)
    print(
        f"512x512 16-bit CT phantom; J2K lossless frame {len(j2k) / 1024:.0f} KiB "
        f"(ratio {len(native) / len(j2k):.2f}); {repeat} runs each"
    )

    report(
        "decode J2K lossless frame",
        timed(lambda: decode_frame(j2k, syntaxes.JPEG_2000_LOSSLESS, pixel), repeat),
    )
    report(
        "transcode J2K lossless -> explicit VR LE",
        timed(
            lambda: transcode_frame(
                j2k, syntaxes.JPEG_2000_LOSSLESS, syntaxes.EXPLICIT_VR_LITTLE_ENDIAN, pixel
            ),
            repeat,
        ),
    )
    decoded = decode_frame(j2k, syntaxes.JPEG_2000_LOSSLESS, pixel)
    report(
        "render decoded frame -> JPEG (dataset window)",
        timed(lambda: render_frame(ds, decoded, RenderOptions("image/jpeg")), repeat),
    )
    report(
        "decode J2K + render -> JPEG",
        timed(
            lambda: render_frame(
                ds,
                decode_frame(j2k, syntaxes.JPEG_2000_LOSSLESS, pixel),
                RenderOptions("image/jpeg"),
            ),
            repeat,
        ),
    )
    report(
        "render -> PNG 128x128 thumbnail",
        timed(
            lambda: render_frame(ds, decoded, RenderOptions("image/png", viewport=(128, 128))),
            repeat,
        ),
    )
    for target in sorted(output_syntaxes()):
        if not syntaxes.can_encode_frames(target):
            continue
        encoded = encode_frame(pixels, pixel, target)
        times = timed(lambda target=target: encode_frame(pixels, pixel, target), repeat)
        report(
            f"encode -> {short(target)}",
            times,
            f"{len(encoded) / 1024:.0f} KiB",
        )
        if target.is_encapsulated:
            report(
                f"  decode {short(target)}",
                timed(
                    lambda target=target, encoded=encoded: decode_frame(encoded, target, pixel),
                    repeat,
                ),
            )


if __name__ == "__main__":
    main()
