"""Finding (blurry, sharp) pairs in the GOPRO folder layout, with errors that say what to fix.

    <root>/<split>/<sequence>/<blur_dir>/<frame>.png   (blur_dir: blur or blur_gamma)
    <root>/<split>/<sequence>/sharp/<frame>.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DatasetLayoutError(ValueError):
    """The data folder does not hold what the config says it should."""


@dataclass(frozen=True)
class ImagePair:
    blurry: Path
    sharp: Path
    sequence: str


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_gopro_pairs(root: str | Path, split: str, blur_dir: str = "blur") -> list[ImagePair]:
    """All pairs of `root/split`, sorted by sequence then frame name.

    Raises `DatasetLayoutError` naming the folder or file at fault: a missing split folder, a
    sequence without `blur_dir/` or `sharp/`, a blurry frame without its sharp twin, or no
    pairs at all.
    """
    split_dir = Path(root).expanduser() / split
    if not split_dir.is_dir():
        raise DatasetLayoutError(
            f"data folder {split_dir} does not exist. Expected the GOPRO layout"
            f" <data_dir>/{split}/<sequence>/{{{blur_dir},sharp}}/*.png: set data.data_dir"
            " (or paths.data_dir) to the folder that holds train/ and test/."
        )
    pairs: list[ImagePair] = []
    for seq_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        blur_folder, sharp_folder = seq_dir / blur_dir, seq_dir / "sharp"
        if not blur_folder.is_dir() or not sharp_folder.is_dir():
            missing = blur_folder if not blur_folder.is_dir() else sharp_folder
            raise DatasetLayoutError(
                f"sequence folder {seq_dir} has no {missing.name}/ folder; every sequence needs"
                f" both {blur_dir}/ and sharp/ (is data.blur_dir={blur_dir!r} right?)"
            )
        sharp_by_name = {p.name: p for p in _images(sharp_folder)}
        for blurry in _images(blur_folder):
            sharp = sharp_by_name.get(blurry.name)
            if sharp is None:
                raise DatasetLayoutError(
                    f"blurry image {blurry} has no sharp twin {sharp_folder / blurry.name};"
                    " add it or remove the blurry image"
                )
            pairs.append(ImagePair(blurry, sharp, seq_dir.name))
    if not pairs:
        raise DatasetLayoutError(
            f"no image pairs found under {split_dir}: expected <sequence>/{blur_dir}/*.png with"
            " matching <sequence>/sharp/*.png files"
        )
    return pairs
