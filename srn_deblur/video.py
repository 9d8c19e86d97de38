"""Videos in and out through PyAV (FFmpeg in its wheel): decode frame by frame, deblur, encode,
and carry the audio over; and the sharpest frames of a clip, for "a photo from a video".

Frames stream through one at a time (plus the encoder's small look-ahead), so memory does not
grow with the clip's length.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO

import av
import cv2
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
# FFmpeg demuxer names of the containers above; anything else FFmpeg happens to probe (text as
# ANSI art, single images) is not a video here.
VIDEO_CONTAINERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi")
_VIDEO_ENCODER = {".webm": "libvpx-vp9"}  # else libx264 (H.264, yuv420p)
_AUDIO_ENCODER = {".webm": "libopus"}  # else aac
# Audio codecs each output container takes as they are (packets copied, no re-encoding).
_AUDIO_COPY = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
    ".mkv": {"aac", "mp3", "ac3", "eac3", "opus", "vorbis", "flac", "pcm_s16le", "alac"},
    ".webm": {"opus", "vorbis"},
    ".avi": {"mp3", "ac3", "pcm_s16le", "aac"},
}


class VideoError(ValueError):
    """A clip that cannot be used; `reason`: `not_video`, `no_video_stream`, `too_long` or `corrupt`."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Selection:
    """Which frames count: those timed in [`start`, `end`) seconds (end None = to the last),
    and among them every `every`-th as a candidate still."""

    start: float = 0.0
    end: float | None = None
    every: int = 1

    def __post_init__(self) -> None:
        if self.start < 0 or self.every < 1 or (self.end is not None and self.end <= self.start):
            got = f"start={self.start} end={self.end} every={self.every}"
            raise ValueError(f"need 0 <= start < end and every >= 1, got {got}")

    def contains(self, seconds: float) -> bool:
        return seconds >= self.start - 1e-6 and (self.end is None or seconds < self.end - 1e-6)


@dataclass
class Frame:
    """One decoded frame: its index among the selected frames, time stamp (s) and RGB pixels."""

    index: int
    seconds: float
    pixels: np.ndarray  # (H, W, 3) uint8
    sharpness: float = field(default=0.0)


def sharpness(pixels: np.ndarray) -> float:
    """Variance of the Laplacian of the grey frame: blur removes the high frequencies it measures."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def time_stamp(seconds: float) -> str:
    """`HH-MM-SS.mmm`: sortable, and safe in file names."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}-{ms // 60_000 % 60:02d}-{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def open_video(
    source: str | Path | IO[bytes], name: str = "", max_seconds: float | None = None
) -> av.container.InputContainer:
    """Open a clip for reading; `VideoError` if it is not a video, has no video stream or is too long."""
    label = f"'{name or source}'"
    try:
        container = av.open(source if not isinstance(source, Path) else str(source), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{label} cannot be read as a video ({exc})", "not_video") from exc
    if container.format.name not in VIDEO_CONTAINERS:
        container.close()
        raise VideoError(f"{label} is not an MP4, MOV, MKV, WebM or AVI video", "not_video")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{label} has no video stream (audio only?)", "no_video_stream")
    if max_seconds is not None and duration(container) > max_seconds:
        seconds = duration(container)
        container.close()
        raise VideoError(f"{label} lasts {seconds:.1f} s, over the limit of {max_seconds:g} s", "too_long")
    return container


def duration(container: av.container.InputContainer) -> float:
    """The clip's length in seconds (container header, else the video stream's)."""
    if container.duration is not None:
        return container.duration / av.time_base
    stream = container.streams.video[0]
    return float(stream.duration * stream.time_base) if stream.duration else 0.0


def _seconds(frame: av.VideoFrame, stream: av.VideoStream) -> float:
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return (frame.time or 0.0) - start


def frames(container: av.container.InputContainer, selection: Selection = Selection()) -> Iterator[Frame]:
    """The selected frames of the first video stream, decoded one at a time."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    index = 0
    try:
        for frame in container.decode(stream):
            seconds = _seconds(frame, stream)
            if selection.end is not None and seconds >= selection.end - 1e-6:
                break
            if selection.contains(seconds):
                yield Frame(index, seconds, frame.to_ndarray(format="rgb24"))
                index += 1
    except av.FFmpegError as exc:
        raise VideoError(f"the video is corrupt at {index} frames in ({exc})", "corrupt") from exc


class SharpestFrames:
    """The `k` sharpest frames offered so far (a heap: memory for `k` frames, whatever the clip)."""

    def __init__(self, k: int, every: int = 1) -> None:
        self.k, self.every = k, every
        self._heap: list[tuple[float, int, Frame, np.ndarray | None]] = []

    def offer(self, frame: Frame, result: np.ndarray | None = None) -> None:
        """Consider `frame` (every `every`-th only), keeping `result` (its deblurred pixels) with it."""
        if self.k < 1 or frame.index % self.every:
            return
        frame.sharpness = sharpness(frame.pixels)
        item = (frame.sharpness, -frame.index, frame, result)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def chosen(self) -> list[tuple[Frame, np.ndarray | None]]:
        """The kept frames in time order, each with the result offered with it."""
        return [(f, r) for _, _, f, r in sorted(self._heap, key=lambda item: item[2].index)]


@dataclass
class VideoResult:
    frames: int
    rate: Fraction
    seconds: float
    stills: list[tuple[Frame, np.ndarray | None]]
    audio: str  # "copied", "re-encoded" or "none"
    width: int
    height: int


def deblur_video(
    source: str | Path,
    target: str | Path,
    deblur_frame: Callable[[np.ndarray], np.ndarray],
    selection: Selection = Selection(),
    stills: int = 0,
    on_frame: Callable[[int], None] | None = None,
    crf: int = 18,
) -> VideoResult:
    """Deblur every selected frame of `source` into `target` (same size, rate and time stamps,
    shifted to start at 0), copying or re-encoding its audio; keep the `stills` sharpest.

    `deblur_frame` maps `(H, W, 3)` uint8 RGB to the same; `on_frame(n)` is called after each frame.
    """
    source, target = Path(source), Path(target)
    started = time.perf_counter()
    container = open_video(source)
    vin = container.streams.video[0]
    vin.thread_type = "AUTO"
    ain = container.streams.audio[0] if container.streams.audio else None
    suffix = target.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(target), "w")
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    vout = out.add_stream(_VIDEO_ENCODER.get(suffix, "libx264"), rate=rate, options={"crf": str(crf)})
    vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
    vout.pix_fmt = "yuv420p"
    # AVI stores one tick per frame; the others keep the input's clock (variable frame rates too).
    frame_clock = suffix == ".avi"
    vout.time_base = 1 / Fraction(rate) if frame_clock else vin.time_base
    audio, aout = "none", None
    if ain is not None:
        copy = ain.codec_context.name in _AUDIO_COPY.get(suffix, set())
        if copy:
            aout = out.add_stream_from_template(ain)
        else:
            encoder = _AUDIO_ENCODER.get(suffix, "aac")
            aout = out.add_stream(
                encoder, rate=48000 if encoder == "libopus" else ain.codec_context.sample_rate
            )
        audio = "copied" if copy else "re-encoded"
    keep = SharpestFrames(stills, selection.every)
    start_pts = None
    count = 0
    try:
        for packet in container.demux(*(s for s in (vin, ain) if s is not None)):
            if packet.stream is vin:
                for frame in packet.decode():
                    seconds = _seconds(frame, vin)
                    if not selection.contains(seconds):
                        continue
                    start_pts = frame.pts if start_pts is None else start_pts
                    pixels = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                    result = deblur_frame(pixels)
                    keep.offer(Frame(count, seconds, pixels), result)
                    sharp = av.VideoFrame.from_ndarray(result, format="rgb24")
                    sharp.pts = count if frame_clock else frame.pts - start_pts
                    sharp.time_base = vout.time_base
                    out.mux(vout.encode(sharp))
                    count += 1
                    if on_frame is not None:
                        on_frame(count)
            elif aout is not None:
                _audio_packet(packet, ain, aout, out, selection, audio == "copied")
        out.mux(vout.encode(None))
        if aout is not None and audio == "re-encoded":
            out.mux(aout.encode(None))
    except av.FFmpegError as exc:
        raise VideoError(
            f"cannot go on at frame {count} of {source} ({exc}): is it corrupt?", "corrupt"
        ) from exc
    finally:
        out.close()
        container.close()
    seconds = time.perf_counter() - started
    return VideoResult(count, Fraction(rate), seconds, keep.chosen(), audio, vout.width, vout.height)


def _audio_packet(
    packet: av.Packet,
    ain: av.AudioStream,
    aout: av.AudioStream,
    out: av.container.OutputContainer,
    selection: Selection,
    copy: bool,
) -> None:
    """Carry one audio packet over: copied (time stamps shifted to the cut's start) or re-encoded."""
    base = ain.time_base
    if copy:
        if packet.pts is None or packet.dts is None:  # the demuxer's end-of-stream marker
            return
        seconds = float(packet.pts * base) - (float(ain.start_time * base) if ain.start_time else 0.0)
        if not selection.contains(seconds):
            return
        shift = round(selection.start / base) + (ain.start_time or 0)
        packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
        packet.stream = aout
        out.mux(packet)
        return
    for frame in packet.decode():
        if frame.time is not None and selection.contains(frame.time):
            frame.pts = None
            out.mux(aout.encode(frame))


__all__ = [
    "VIDEO_CONTAINERS",
    "VIDEO_SUFFIXES",
    "Frame",
    "Selection",
    "SharpestFrames",
    "VideoError",
    "VideoResult",
    "deblur_video",
    "duration",
    "frames",
    "open_video",
    "sharpness",
    "time_stamp",
]
