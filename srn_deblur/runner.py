"""What `deblur.py` does: deblur every collected photo and video, show progress, sum up.

A file that cannot be read is named and skipped and the run goes on; the summary says how many
files, megapixels and seconds per megapixel, and which files were skipped and why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datamodules.image_io import ImageDecodeError, read_photo, write_rgb
from srn_deblur.deblurrer import Deblurrer
from srn_deblur.photos import Item, Skipped, collect, side_by_side_path, still_path
from srn_deblur.video import (
    Selection,
    SharpestFrames,
    VideoError,
    deblur_video,
    frames,
    open_video,
    time_stamp,
)

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did: results written, pixels deblurred, time taken, files skipped."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    megapixels: float = 0.0
    frames: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        per_mp = f", {self.seconds / self.megapixels:.2f} s per megapixel" if self.megapixels else ""
        video = f", {self.frames} video frames" if self.frames else ""
        out = [
            f"{len(self.written)} files written, {self.megapixels:.2f} megapixels{video} in"
            f" {self.seconds:.1f} s{per_mp}"
        ]
        if self.skipped:
            out.append(f"{len(self.skipped)} skipped:")
            out += [f"  {s.path}: {s.reason}" for s in self.skipped]
        return out


@dataclass(frozen=True)
class RunOptions:
    """The run's choices (configs/deblur.yaml)."""

    recursive: bool = False
    side_by_side: bool = False
    stills: int = 0
    video: bool = True
    selection: Selection = Selection()
    max_pixels: int | None = None
    progress: bool = True


def _write(path: Path, pixels: np.ndarray, summary: Summary) -> None:
    write_rgb(path, pixels)
    summary.written.append(path)


class _TileBar:
    """A second progress bar for the tiles (or frames) of the file in hand."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.bar = tqdm(desc=label, unit="tile", leave=False, position=1, disable=not enabled)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _photo(item: Item, deblurrer: Deblurrer, options: RunOptions, summary: Summary) -> None:
    image = read_photo(item.source, options.max_pixels)
    bar = _TileBar(options.progress, item.relative.name)
    try:
        sharp = deblurrer(image.pixels, on_tile=bar)  # (H, W, 3) uint8
    finally:
        bar.close()
    _write(item.target, sharp, summary)
    if options.side_by_side:
        _write(side_by_side_path(item.target), np.concatenate([image.pixels, sharp], axis=1), summary)
    summary.megapixels += image.pixels.shape[0] * image.pixels.shape[1] / 1e6


def _video(item: Item, deblurrer: Deblurrer, options: RunOptions, summary: Summary) -> None:
    bar = tqdm(desc=item.relative.name, unit="frame", leave=False, position=1, disable=not options.progress)
    try:
        if options.video:
            result = deblur_video(
                item.source,
                item.target,
                deblurrer,
                options.selection,
                options.stills,
                lambda n: bar.update(1),
            )
            summary.written.append(item.target)
            summary.frames += result.frames
            summary.megapixels += result.frames * result.width * result.height / 1e6
            stills = result.stills
        else:  # stills only: score every frame, deblur only the chosen ones
            keep = SharpestFrames(options.stills, options.selection.every)
            container = open_video(item.source)
            try:
                for frame in frames(container, options.selection):
                    keep.offer(frame)
                    bar.update(1)
            finally:
                container.close()
            stills = [(frame, deblurrer(frame.pixels)) for frame, _ in keep.chosen()]
    finally:
        bar.close()
    for frame, sharp in stills:
        _write(still_path(item, time_stamp(frame.seconds)), sharp, summary)
        log.info("still at %.3f s (frame %d, sharpness %.1f)", frame.seconds, frame.index, frame.sharpness)
        if not options.video:  # else it was counted with the video's frames
            summary.megapixels += frame.pixels.shape[0] * frame.pixels.shape[1] / 1e6


def run(spec: str, output: str | Path, deblurrer: Deblurrer, options: RunOptions = RunOptions()) -> Summary:
    """Deblur everything `spec` names into `output`; never raises for one bad file."""
    items, skipped = collect(spec, output, options.recursive)
    summary = Summary(skipped=list(skipped))
    started = time.perf_counter()
    for item in tqdm(items, desc="files", unit="file", position=0, disable=not options.progress):
        try:
            (_video if item.is_video else _photo)(item, deblurrer, options, summary)
        except (ImageDecodeError, VideoError) as exc:
            summary.skipped.append(Skipped(item.source, str(exc)))
            log.warning("skipped %s: %s", item.source, exc)
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = ["RunOptions", "Summary", "run"]
