"""Finding (blurry, sharp) pairs, with errors that say what to fix.

The GOPRO folder layout, or a list file of `sharp_path blur_path` lines as the release ships:

    <root>/<split>/<sequence>/<blur_dir>/<frame>.png   (blur_dir: blur or blur_gamma)
    <root>/<split>/<sequence>/sharp/<frame>.png

A pair's sequence is the video it was cut from; splits for validation keep sequences whole.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.image_io import read_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DatasetLayoutError(ValueError):
    """The data folder does not hold what the config says it should."""


@dataclass(frozen=True)
class ImagePair:
    """A blurry image, its sharp twin, and the sequence (video or scene) they belong to."""

    blurry: Path
    sharp: Path
    sequence: str


def read_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    """Decoded `(H, W, 3)` uint8 blurry and sharp images of `pair`, checked to have one size."""
    blurry, sharp = read_rgb(pair.blurry), read_rgb(pair.sharp)
    if blurry.shape != sharp.shape:
        raise ValueError(
            f"blurry image {pair.blurry} is {blurry.shape[1]}x{blurry.shape[0]} but its sharp"
            f" twin {pair.sharp} is {sharp.shape[1]}x{sharp.shape[0]}; a pair must have one size"
        )
    return blurry, sharp


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


def read_pair_list(list_file: str | Path, root: str | Path | None = None) -> list[ImagePair]:
    """Pairs from a list file of `sharp_path blur_path` lines, the release's `datalist_gopro.txt`.

    Relative paths are resolved against `root` (default: the list file's folder); the release
    writes them relative to the training folder (`GOPR0372_07_00/sharp/000047.png ...`).
    Blank lines and lines starting with `#` are skipped. The sequence of a pair is the folder
    above its `sharp/` folder. Raises `DatasetLayoutError` naming the file and line of a
    malformed entry or a missing image.
    """
    list_file = Path(list_file).expanduser()
    if not list_file.is_file():
        raise DatasetLayoutError(
            f"pair list {list_file} does not exist; set data.train_list / data.test_list to a file"
            " of 'sharp_path blur_path' lines, or to null to scan the folders"
        )
    base = Path(root).expanduser() if root is not None else list_file.parent
    pairs: list[ImagePair] = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise DatasetLayoutError(
                f"{list_file}:{number}: expected 'sharp_path blur_path', got {line.strip()!r}"
                " (paths with spaces are not supported)"
            )
        sharp, blurry = (base / f for f in fields)
        for path in (sharp, blurry):
            if not path.is_file():
                raise DatasetLayoutError(
                    f"{list_file}:{number}: image {path} does not exist; fix the line or set the"
                    f" folder the list's paths are relative to (now {base})"
                )
        pairs.append(ImagePair(blurry, sharp, sharp.parent.parent.name or sharp.parent.name))
    if not pairs:
        raise DatasetLayoutError(f"pair list {list_file} holds no 'sharp_path blur_path' lines")
    return pairs


HIDE_TEST_SUBSETS = ("test-close-ups", "test-long-shot")


def _hide_sequence(stem: str) -> str:
    # HIDE names a frame `<n>from<source video>`: frames of one video form a sequence.
    number, sep, video = stem.partition("from")
    return video if sep and number.isdigit() and video else stem


def find_hide_pairs(
    root: str | Path, split: str, subsets: Sequence[str] = HIDE_TEST_SUBSETS
) -> list[ImagePair]:
    """HIDE's pairs: blurry `root/train/*` or `root/test/<subset>/*`, sharp `root/GT/<same name>`.

    A test pair's sequence is its subset (close-ups or long shots, which papers report apart);
    a training pair's is the video named in its file name. Raises `DatasetLayoutError` naming a
    missing folder or a blurry image without its sharp twin.
    """
    root = Path(root).expanduser()
    gt = root / "GT"
    folders = [root / "train"] if split == "train" else [root / "test" / subset for subset in subsets]
    for folder in (gt, *folders):
        if not folder.is_dir():
            raise DatasetLayoutError(
                f"HIDE folder {folder} does not exist. Expected <data_dir>/GT/, <data_dir>/train/ and"
                f" <data_dir>/test/{{{','.join(HIDE_TEST_SUBSETS)}}}/: set data.data_dir to the"
                " HIDE_dataset folder"
            )
    pairs = []
    for folder in folders:
        for blurry in _images(folder):
            sharp = gt / blurry.name
            if not sharp.is_file():
                raise DatasetLayoutError(
                    f"blurry image {blurry} has no sharp twin {sharp}; add it or remove the blurry image"
                )
            pairs.append(
                ImagePair(blurry, sharp, folder.name if split != "train" else _hide_sequence(blurry.stem))
            )
    if not pairs:
        raise DatasetLayoutError(f"no images found in {', '.join(map(str, folders))}")
    return pairs


def count_sequences(pairs: Sequence[ImagePair]) -> dict[str, int]:
    """Pairs per sequence, in order of first appearance."""
    return dict(Counter(p.sequence for p in pairs))


def describe(pairs: Sequence[ImagePair]) -> str:
    """`'2103 pairs in 22 sequences'`, for logs."""
    n_seq = len(count_sequences(pairs))
    return f"{len(pairs)} pairs in {n_seq} sequence{'s' if n_seq != 1 else ''}"


def split_by_sequence(
    pairs: Sequence[ImagePair], val_sequences: int | float | Sequence[str], seed: int = 0
) -> tuple[list[ImagePair], list[ImagePair]]:
    """Hold whole sequences out for validation, so no frame of one leaks into the other side.

    Consecutive frames of a sequence are near-duplicates: a frame-wise split would let the
    network be validated on frames it has almost seen.

    Args:
        val_sequences: a list of sequence names; an int, that many sequences; a float in
            (0, 1), that fraction of the sequences (at least one). Counted choices are drawn
            with `seed`, so a run is reproducible.

    Returns: (train pairs, validation pairs), each in the original order.
    """
    names = list(count_sequences(pairs))
    if isinstance(val_sequences, str):
        val_sequences = [val_sequences]
    if isinstance(val_sequences, (int, float)) and not isinstance(val_sequences, bool):
        if isinstance(val_sequences, float):
            if not 0.0 < val_sequences < 1.0:
                raise ValueError(f"a fraction of sequences must be in (0, 1), got {val_sequences}")
            count = max(1, round(val_sequences * len(names)))
        else:
            count = val_sequences
        if not 0 < count < len(names):
            raise DatasetLayoutError(
                f"cannot hold out {count} of {len(names)} sequences for validation: at least one"
                " must stay on each side; lower data.val_sequences"
            )
        order = np.random.default_rng(seed).permutation(len(names))
        held_out = {names[i] for i in order[:count]}
    else:
        held_out = set(val_sequences)
        unknown = sorted(held_out - set(names))
        if unknown:
            raise DatasetLayoutError(
                f"validation sequences {unknown} are not among the training sequences"
                f" ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
            )
        if not held_out or held_out == set(names):
            raise DatasetLayoutError("data.val_sequences must name some, but not all, training sequences")
    train = [p for p in pairs if p.sequence not in held_out]
    val = [p for p in pairs if p.sequence in held_out]
    return train, val


def find_folder_pairs(
    root: str | Path,
    sharp_dir: str = "sharp",
    blurred_dir: str = "blurred",
    name_pattern: str | None = r"(.+?)(?:_[SMF])?",
) -> list[ImagePair]:
    """Pairs of `root/blurred_dir/*` and `root/sharp_dir/*` matched by file name, sorted by name.

    `name_pattern` is a regular expression whose first group, matched against the whole file
    stem, is the key two files are paired by; `None` pairs by the stem itself. The default also
    drops the `_S`/`_M`/`_F` type tag of the mobile-photo blur dataset
    (`0_IPHONE-SE_S.JPG` pairs with `0_IPHONE-SE_M.JPG`). Each pair is its own sequence.
    """
    root = Path(root).expanduser()
    folders = {}
    for name in (sharp_dir, blurred_dir):
        folder = root / name
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DatasetLayoutError(
                f"folder {folder} does not exist (found: {', '.join(present) or 'nothing'}); set"
                " data.data_dir to the folder holding the sharp and blurred folders, and"
                " data.sharp_dir / data.blurred_dir to their names"
            )
        folders[name] = _keyed_images(folder, name_pattern)
    sharp_by_key = folders[sharp_dir]
    pairs = []
    for key, blurry in sorted(folders[blurred_dir].items()):
        sharp = sharp_by_key.get(key)
        if sharp is None:
            raise DatasetLayoutError(
                f"blurred image {blurry} has no sharp twin in {root / sharp_dir} (looked for the"
                f" name key {key!r}); add it, remove the blurred image, or change data.name_pattern"
            )
        pairs.append(ImagePair(blurry, sharp, key))
    if not pairs:
        raise DatasetLayoutError(f"no images found in {root / blurred_dir}")
    return pairs


def _keyed_images(folder: Path, name_pattern: str | None) -> dict[str, Path]:
    pattern = re.compile(name_pattern) if name_pattern else None
    keyed: dict[str, Path] = {}
    for path in _images(folder):
        match = pattern.fullmatch(path.stem) if pattern else None
        if pattern and (match is None or not match.groups()):
            raise DatasetLayoutError(
                f"file name {path.name} does not match data.name_pattern {name_pattern!r} (its first"
                " group must capture the part both images of a pair share)"
            )
        key = match.group(1) if match else path.stem
        if key in keyed:
            raise DatasetLayoutError(
                f"{keyed[key].name} and {path.name} in {folder} share the name key {key!r}; set"
                " data.name_pattern so that every image of a folder has its own key"
            )
        keyed[key] = path
    return keyed
