"""One frame of a video (MPEG-2, MPEG-4 AVC/H.264 or HEVC/H.265 transfer syntaxes: the
Pixel Data fragments hold the video stream) decoded with PyAV (FFmpeg's decoders, bundled in
its wheel) and drawn as a consumer image, for /rendered and /thumbnail of a Video
Photographic (Endoscopic, Microscopic) Image.

Frame 1 is decoded from the start; a later frame by seeking to the key frame before its time
and decoding forward, so a thumbnail never decodes a long video from the beginning. A stream
FFmpeg cannot decode raises VideoNotDrawable; callers draw `pdf_render.placeholder` then.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import pydicom
from PIL import Image
from pydicom.encaps import generate_fragments
from pydicom.uid import MPEGTransferSyntaxes

from tessera.storage.render import RenderOptions, encode_image, fit_to_viewport

VIDEO_TRANSFER_SYNTAXES = frozenset(str(uid) for uid in MPEGTransferSyntaxes)


class VideoNotDrawable(ValueError):
    """The video cannot be decoded, or has no such frame."""


def video_stream(fh: BinaryIO) -> bytes:
    """The video stream of a Part 10 file: its Pixel Data fragments, in order."""
    dataset = pydicom.dcmread(fh)
    if "PixelData" not in dataset:
        raise VideoNotDrawable("the instance holds no Pixel Data")
    try:
        return b"".join(generate_fragments(dataset.PixelData))
    except ValueError as exc:
        raise VideoNotDrawable(f"the Pixel Data is not encapsulated: {exc}") from exc


def video_frame(stream: bytes, number: int = 1) -> Image.Image:
    """Frame `number` (1-based) of the video stream as an RGB image."""
    try:
        import av
    except ImportError as exc:  # a dependency; only a broken install lacks it
        raise VideoNotDrawable("PyAV is not installed") from exc
    try:
        with av.open(io.BytesIO(stream), "r") as container:
            if not container.streams.video:
                raise VideoNotDrawable("the stream holds no video track")
            video = container.streams.video[0]
            target = 0.0
            if number > 1:
                rate = video.average_rate or video.guessed_rate
                if not rate or video.time_base is None:
                    raise VideoNotDrawable("the video has no frame rate to find a frame by")
                target = (number - 1) / float(rate)
                container.seek(int(target / float(video.time_base)), stream=video, backward=True)
            # Half a frame of tolerance: timestamps are rounded to the stream's time base.
            slack = 0.5 / float(video.average_rate or 25)
            for frame in container.decode(video):
                if frame.time is None or frame.time + slack >= target:
                    return frame.to_image().convert("RGB")
    except av.error.FFmpegError as exc:
        raise VideoNotDrawable(f"the video cannot be decoded: {exc}") from exc
    raise VideoNotDrawable(f"the video has no frame {number}")


def render_video_frame(fh: BinaryIO, number: int, options: RenderOptions) -> bytes:
    image = video_frame(video_stream(fh), number)
    return encode_image(fit_to_viewport(image, options), options)
