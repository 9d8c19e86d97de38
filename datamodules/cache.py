"""The loader's fast path: every pair decoded once into one memory-mapped file of uint8 pixels.

Decoding two 1280x720 PNGs to cut one 256x256 crop is where GOPRO training spends its loader
time. Here each image is decoded once, with the same `read_rgb` the plain loader uses, and its
`(H, W, 3)` uint8 pixels are appended to a flat file. A crop then reads only its own rows
(from the page cache, or from disk for datasets larger than memory), and the bytes are the
ones decoding gives, so samples are identical to the plain loader's.

The cache is keyed by the image paths, sizes and modification times: changed images get a new
cache file, and an old one can simply be deleted. GOPRO's training split takes 11.6 GB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.pairs import ImagePair, read_pair

log = logging.getLogger(__name__)

_VERSION = 1


def cache_key(pairs: Sequence[ImagePair]) -> str:
    """A digest of the pairs' paths, sizes and modification times, in order."""
    digest = hashlib.sha256(f"v{_VERSION}".encode())
    for pair in pairs:
        for path in (pair.blurry, pair.sharp):
            stat = Path(path).stat()
            digest.update(f"{Path(path).resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class DecodedPairCache:
    """Decoded pixels of a list of pairs, read from a memory-mapped file.

    Build or reuse one with `open_or_build`. `pair(i)` returns read-only `(H, W, 3)` uint8
    views; nothing is read until they are sliced. The file is opened lazily in each process, so
    the object is cheap to send to DataLoader workers.
    """

    def __init__(self, data_file: Path, entries: list[dict]) -> None:
        self.data_file = Path(data_file)
        self.entries = entries
        self._pixels: np.memmap | None = None

    @classmethod
    def open_or_build(cls, pairs: Sequence[ImagePair], cache_dir: str | Path) -> DecodedPairCache:
        """The cache of exactly these pairs under `cache_dir`, decoding them first if needed."""
        cache_dir = Path(cache_dir).expanduser()
        stem = cache_dir / f"pairs-{cache_key(pairs)}"
        data_file, index_file = stem.with_suffix(".u8"), stem.with_suffix(".json")
        cache = cls._open(data_file, index_file)
        if cache is None:
            cls._build(pairs, data_file, index_file)
            cache = cls._open(data_file, index_file)
            assert cache is not None, f"cache {data_file} was written but cannot be read back"
        return cache

    @classmethod
    def _open(cls, data_file: Path, index_file: Path) -> DecodedPairCache | None:
        if not index_file.is_file():
            return None
        index = json.loads(index_file.read_text())
        if not data_file.is_file() or data_file.stat().st_size != index["total_bytes"]:
            log.warning("decoded-image cache %s is incomplete or damaged: rebuilding it", data_file)
            index_file.unlink()
            return None
        return cls(data_file, index["entries"])

    @staticmethod
    def _build(pairs: Sequence[ImagePair], data_file: Path, index_file: Path) -> None:
        data_file.parent.mkdir(parents=True, exist_ok=True)
        needed = sum(3 * np.prod(Image.open(p).size) for pair in pairs for p in (pair.blurry, pair.sharp))
        free = shutil.disk_usage(data_file.parent).free
        if needed > free:
            raise OSError(
                f"the decoded-image cache needs {needed / 1e9:.1f} GB but {data_file.parent} has"
                f" {free / 1e9:.1f} GB free; point data.cache_dir at a larger disk or set it to null"
            )
        log.info("decoding %d pairs once into %s (%.1f GB)", len(pairs), data_file, needed / 1e9)
        # Written under temporary names and renamed when complete, so an interrupted build or a
        # second process building the same cache never leaves a half-written file in use.
        tmp_data = data_file.with_name(f"{data_file.name}.tmp-{os.getpid()}")
        entries, offset = [], 0
        try:
            with open(tmp_data, "wb") as out:
                for i, pair in enumerate(pairs):
                    blurry, sharp = read_pair(pair)
                    for image in (blurry, sharp):
                        out.write(np.ascontiguousarray(image).tobytes())
                    entries.append(
                        {
                            "blurry": str(pair.blurry),
                            "sharp": str(pair.sharp),
                            "shape": list(blurry.shape),
                            "offset": offset,
                        }
                    )
                    offset += 2 * blurry.nbytes
                    if (i + 1) % max(1, len(pairs) // 10) == 0:
                        log.info("decoded %d/%d pairs", i + 1, len(pairs))
            tmp_index = index_file.with_name(f"{index_file.name}.tmp-{os.getpid()}")
            tmp_index.write_text(json.dumps({"version": _VERSION, "total_bytes": offset, "entries": entries}))
            os.replace(tmp_data, data_file)
            os.replace(tmp_index, index_file)  # the index appears last: its presence means "complete"
        finally:
            tmp_data.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict:
        # Workers re-open the map themselves; pickling a memmap would copy all of its bytes.
        return {**self.__dict__, "_pixels": None}

    def matches(self, pairs: Sequence[ImagePair]) -> bool:
        """Whether this cache holds exactly `pairs`, in order."""
        return len(pairs) == len(self.entries) and all(
            (str(p.blurry), str(p.sharp)) == (e["blurry"], e["sharp"])
            for p, e in zip(pairs, self.entries, strict=True)
        )

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read-only `(H, W, 3)` uint8 views of the blurry and sharp image of pair `index`."""
        if self._pixels is None:
            self._pixels = np.memmap(self.data_file, dtype=np.uint8, mode="r")
        entry = self.entries[index]
        shape = tuple(entry["shape"])
        size = int(np.prod(shape))
        start = entry["offset"]
        blurry = self._pixels[start : start + size].reshape(shape)
        sharp = self._pixels[start + size : start + 2 * size].reshape(shape)
        return blurry, sharp
