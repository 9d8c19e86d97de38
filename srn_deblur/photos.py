"""Which files a `deblur.py` run takes and where each result goes.

`input` is one file, a folder (optionally recursive) or a glob; every result lands under
`output` at the input's relative path, as PNG for photos and in the same container for videos,
and never over an input.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from srn_deblur.video import VIDEO_SUFFIXES

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One input file, its path relative to the input root, and the result's path."""

    source: Path
    relative: Path
    target: Path

    @property
    def is_video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Skipped:
    """A file that produced no result, and why (the run's summary lists these)."""

    path: Path
    reason: str


def _root_and_files(spec: str, recursive: bool) -> tuple[Path, list[Path]]:
    """The folder results are made relative to, and the files `spec` names (sorted)."""
    if _GLOB_CHARS & set(spec):
        prefix = []
        for part in Path(spec).parts:
            if _GLOB_CHARS & set(part):
                break
            prefix.append(part)
        root = Path(*prefix) if prefix else Path(".")
        return root, sorted(Path(p) for p in glob.glob(spec, recursive=recursive) if Path(p).is_file())
    path = Path(spec).expanduser()
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return path, sorted(p for p in path.glob(pattern) if p.is_file() and not p.name.startswith("."))
    raise FileNotFoundError(
        f"input={spec} is neither a file, a folder nor a glob that matches anything: pass a photo,"
        " a video, a folder (recursive=true for sub-folders) or a quoted glob such as 'photos/*.jpg'"
    )


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def collect(spec: str, output: str | Path, recursive: bool = False) -> tuple[list[Item], list[Skipped]]:
    """The files to deblur and their targets, plus the files refused before any work.

    Files already under `output` are left out (a re-run inside the input folder must not take
    its own results as inputs); a target that would replace an input is refused.
    """
    output = Path(output).expanduser()
    root, files = _root_and_files(spec, recursive)
    inputs = {f.resolve() for f in files}
    items: list[Item] = []
    skipped: list[Skipped] = []
    taken: set[Path] = set()
    for source in files:
        if output.exists() and _inside(source, output) and not _inside(root, output):
            continue
        relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
        video = source.suffix.lower() in VIDEO_SUFFIXES
        target = output / (relative if video else relative.with_suffix(".png"))
        if target.resolve() in taken:  # photo.jpg and photo.png: the second keeps its suffix
            target = output / relative.with_name(relative.name + ".png")
        if target.resolve() in inputs:
            skipped.append(
                Skipped(source, f"its result {target} would replace an input: choose another output")
            )
            continue
        taken.add(target.resolve())
        items.append(Item(source, relative, target))
    return items, skipped


def still_path(item: Item, stamp: str) -> Path:
    """Where a video's still goes: beside its deblurred video, named by the frame's time stamp."""
    return item.target.with_name(f"{item.target.stem}_{stamp}.png")


def side_by_side_path(target: Path) -> Path:
    return target.with_name(f"{target.stem}_side_by_side.png")


__all__ = ["Item", "Skipped", "collect", "side_by_side_path", "still_path"]
