"""MP4 video as Video Photographic Image Storage (PS3.3 A.32.7) in an MPEG-4 AVC/H.264
transfer syntax: the MP4 file's bytes unchanged, in one Pixel Data fragment (the
non-fragmentable MPEG-4 transfer syntaxes allow one), as dcm4che's jpg2dcm does.

What the header says is read from the MP4 boxes (ISO/IEC 14496-12) without decoding: the
video track's size (avc1 sample entry), frame count (stsz), duration (mdhd) and H.264
profile and level (avcC). The transfer syntax follows the level: up to 4.1 is
"High Profile / Level 4.1" (Baseline and Main streams decode as High), 4.2 is "High
Profile / Level 4.2 For 2D Video"; a higher level, or a codec other than H.264, is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, MPEG4HP422D, VideoPhotographicImageStorage

from tessera.storage.documents.common import DocumentDescription, new_document_dataset

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
MAX_FRAGMENT = 0xFFFFFFFE  # one fragment's length must fit 32 bits, even


class UnreadableVideo(ValueError):
    """The MP4 cannot be read, or holds a video DICOM has no transfer syntax for."""


@dataclass(frozen=True)
class VideoTrack:
    columns: int
    rows: int
    frames: int
    duration_seconds: float
    profile: int
    level: int


def _boxes(data: bytes, start: int, end: int):
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position : position + 8])
        header = 8
        if size == 1:
            if position + 16 > end:
                return
            size = struct.unpack(">Q", data[position + 8 : position + 16])[0]
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            return
        yield kind, position + header, position + size
        position += size


def _find(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, body, stop in _boxes(data, start, end):
        if found == kind:
            return body, stop
    return None


def read_video_track(data: bytes) -> VideoTrack:
    moov = _find(data, 0, len(data), b"moov")
    if moov is None:
        raise UnreadableVideo("the MP4 file has no movie header (moov box)")
    for kind, body, stop in _boxes(data, *moov):
        if kind != b"trak":
            continue
        mdia = _find(data, body, stop, b"mdia")
        if mdia is None:
            continue
        hdlr = _find(data, *mdia, b"hdlr")
        if hdlr is None or data[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
            continue
        return _video_track(data, mdia)
    raise UnreadableVideo("the MP4 file holds no video track")


def _video_track(data: bytes, mdia: tuple[int, int]) -> VideoTrack:
    mdhd = _find(data, *mdia, b"mdhd")
    minf = _find(data, *mdia, b"minf")
    stbl = _find(data, *minf, b"stbl") if minf else None
    if mdhd is None or stbl is None:
        raise UnreadableVideo("the MP4 video track is incomplete")
    version = data[mdhd[0]]
    if version == 1:
        timescale, duration = struct.unpack(">IQ", data[mdhd[0] + 20 : mdhd[0] + 32])
    else:
        timescale, duration = struct.unpack(">II", data[mdhd[0] + 12 : mdhd[0] + 20])
    stsd = _find(data, *stbl, b"stsd")
    stsz = _find(data, *stbl, b"stsz")
    if stsd is None or stsz is None:
        raise UnreadableVideo("the MP4 video track has no sample description or sizes")
    entry_start = stsd[0] + 8
    entries = list(_boxes(data, entry_start, stsd[1]))
    if not entries:
        raise UnreadableVideo("the MP4 video track has no sample description")
    codec, body, stop = entries[0]
    if codec not in (b"avc1", b"avc3"):
        raise UnreadableVideo(
            f"the video is coded as {codec.decode('latin-1')!r}; only H.264 (avc1) MP4 is "
            "stored as DICOM video"
        )
    columns, rows = struct.unpack(">HH", data[body + 24 : body + 28])
    avcc = _find(data, body + 78, stop, b"avcC")
    if avcc is None:
        raise UnreadableVideo("the H.264 track has no decoder configuration (avcC)")
    profile, level = data[avcc[0] + 1], data[avcc[0] + 3]
    frames = struct.unpack(">I", data[stsz[0] + 8 : stsz[0] + 12])[0]
    if not (columns and rows and frames and timescale):
        raise UnreadableVideo("the MP4 video track has no size, frames or time scale")
    return VideoTrack(columns, rows, frames, duration / timescale, profile, level)


def transfer_syntax_for(track: VideoTrack) -> str:
    if track.profile not in (66, 77, 100):
        raise UnreadableVideo(
            f"H.264 profile {track.profile} is not Baseline, Main or High; DICOM has no "
            "transfer syntax for it"
        )
    if track.level <= 41:
        return MPEG4HP41
    if track.level == 42:
        return MPEG4HP422D
    raise UnreadableVideo(
        f"H.264 level {track.level / 10:.1f} is above 4.2, the highest DICOM allows"
    )


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def video_photographic_image(
    study: Dataset, mp4: bytes, description: DocumentDescription
) -> tuple[Dataset, str]:
    track = read_video_track(mp4)
    syntax = transfer_syntax_for(track)
    if len(mp4) > MAX_FRAGMENT:
        raise UnreadableVideo("the video is larger than one Pixel Data fragment can hold (4 GiB)")
    ds = new_document_dataset(study, VideoPhotographicImageStorage, "XC", description)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Laterality = ""
    ds.PatientOrientation = ""
    ds.AcquisitionDateTime = ds.ContentDate + ds.ContentTime
    ds.BurnedInAnnotation = "NO"
    ds.AcquisitionContextSequence = []
    # Required for video (Type 1C); an uploaded clip says nothing of where it was taken.
    ds.AnatomicRegionSequence = [_code("87100004", "SCT", "Topography unknown")]
    ds.ImageComments = description.title
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.Rows = track.rows
    ds.Columns = track.columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_14496_10"
    ds.NumberOfFrames = track.frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    frame_time = 1000.0 * track.duration_seconds / track.frames
    ds.FrameTime = f"{frame_time:.4f}"[:16]
    ds.CineRate = max(1, round(1000.0 / frame_time)) if frame_time > 0 else 1
    ds.RecommendedDisplayFrameRate = ds.CineRate
    ds.StartTrim = 1
    ds.StopTrim = track.frames
    ds.ActualFrameDuration = max(1, round(frame_time))
    ds.PixelData = encapsulate([mp4 if len(mp4) % 2 == 0 else mp4 + b"\x00"], has_bot=False)
    ds["PixelData"].VR = "OB"
    return ds, syntax
