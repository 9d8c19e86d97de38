"""Reading TensorFlow's V2 checkpoints ("tensor bundles") without TensorFlow.

A bundle is `PREFIX.index`, an SSTable (LevelDB's table format) mapping each variable name to a
`BundleEntryProto` (dtype, shape, shard, offset, size, masked crc32c), plus `PREFIX.data-*`
shards holding the raw little-endian bytes. Both formats are small and stable, so a few dozen
lines here spare users a 500 MB framework to convert 30 MB of weights.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)
_CRC_MASK_DELTA = 0xA282EAD8

# TensorFlow's DataType enum values for the dtypes a weight could plausibly have.
DTYPES = {1: ("float32", "<f4"), 2: ("float64", "<f8"), 3: ("int32", "<i4"), 9: ("int64", "<i8"),
          10: ("bool", "?"), 14: ("bfloat16", None), 19: ("float16", "<f2"), 7: ("string", None)}


# BundleEntryProto's integer fields (2 is the shape, 6 the crc32c, 7 the slices of a partitioned variable).
_ENTRY_INT_FIELDS = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size"}


class BundleError(ValueError):
    """A TensorFlow checkpoint that cannot be read; the message names the file and what to do."""


def masked_crc32c(data: bytes | memoryview) -> int:
    """TF's stored checksum: crc32c rotated right by 15 bits plus a constant (LevelDB's mask)."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a serialized protobuf message: varints as ints, the rest as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's `BundleEntryProto`: where its bytes are and their masked crc32c."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return DTYPES.get(self.dtype, (f"DataType {self.dtype}", None))[0]

    @classmethod
    def parse(cls, name: str, buf: bytes) -> BundleEntry:
        fields = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0, "sliced": False}
        shape: list[int] = []
        for field, value in _proto_fields(buf):
            if field == 2:  # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }
                for dim_field, dim in _proto_fields(value):
                    if dim_field == 2:
                        shape.append(next((v for f, v in _proto_fields(dim) if f == 1), 0))
            elif field == 6:
                fields["crc32c"] = struct.unpack("<I", value)[0]
            elif field == 7:
                fields["sliced"] = True
            elif field in _ENTRY_INT_FIELDS:
                fields[_ENTRY_INT_FIELDS[field]] = value
        return cls(name=name, shape=tuple(shape), **fields)


def _read_block(index: bytes, offset: int, size: int, path: Path) -> bytes:
    """One SSTable block's contents, its trailer's type and checksum verified."""
    end = offset + size
    if end + _BLOCK_TRAILER_SIZE > len(index):
        raise BundleError(f"{path} is truncated (a block runs past its end); copy the checkpoint again")
    contents, kind = index[offset:end], index[end]
    (stored,) = struct.unpack("<I", index[end + 1 : end + _BLOCK_TRAILER_SIZE])
    if kind != 0:
        raise BundleError(f"{path} uses block compression {kind}; only TensorFlow's uncompressed one is read")
    if masked_crc32c(index[offset : end + 1]) != stored:
        raise BundleError(f"{path} is corrupt (a block fails its checksum); copy the checkpoint again")
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of a block: keys share a prefix with the previous key (restart arrays
    only speed up seeking, so a full scan ignores them)."""
    (num_restarts,) = struct.unpack("<I", block[-4:])
    end, pos, key = len(block) - 4 - 4 * num_restarts, 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_length]
        pos += value_length


def _table_entries(path: Path) -> Iterator[tuple[bytes, bytes]]:
    index = path.read_bytes()
    if len(index) < _FOOTER_SIZE or struct.unpack("<Q", index[-8:])[0] != _TABLE_MAGIC:
        raise BundleError(f"{path} is not a TensorFlow checkpoint index (no SSTable footer); pass a .index")
    footer = index[-_FOOTER_SIZE:]
    _, pos = _varint(footer, _varint(footer, 0)[1])  # skip the metaindex handle
    offset, pos = _varint(footer, pos)
    size, _ = _varint(footer, pos)
    for _, handle in _block_entries(_read_block(index, offset, size, path)):
        block_offset, pos = _varint(handle, 0)
        block_size, _ = _varint(handle, pos)
        yield from _block_entries(_read_block(index, block_offset, block_size, path))


class TensorBundle:
    """The variables of the checkpoint at `prefix` (`.../deblur.model-523000`), read on demand."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        if not self.index_path.is_file():
            raise BundleError(f"{self.index_path} does not exist; pass an existing checkpoint prefix")
        self.num_shards, self.entries = 1, {}
        try:
            for key, value in _table_entries(self.index_path):
                if key == b"":  # BundleHeaderProto: num_shards = 1, endianness = 2 (0 = little)
                    header = dict(_proto_fields(value))
                    self.num_shards = header.get(1, 1)
                    if header.get(2, 0) != 0:
                        raise BundleError(f"{self.index_path} is big-endian; convert it where it was written")
                    continue
                name = key.decode()
                self.entries[name] = BundleEntry.parse(name, value)
        except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"{self.index_path} is corrupt ({exc}); copy the checkpoint again") from exc

    def data_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def read(self, name: str) -> np.ndarray:
        """The tensor `name` as a numpy array of its own dtype, after verifying its checksum."""
        entry = self.entries[name]
        numpy_dtype = DTYPES.get(entry.dtype, (None, None))[1]
        if numpy_dtype is None or entry.sliced:
            kind = "partitioned" if entry.sliced else entry.dtype_name
            raise BundleError(f"{name} in {self.index_path} is a {kind} tensor, which is not read here")
        path = self.data_path(entry.shard_id)
        if not path.is_file():
            raise BundleError(f"{path} is missing: {self.index_path.name} needs it; copy both files together")
        if path.stat().st_size < entry.offset + entry.size:
            raise BundleError(
                f"{path} is truncated ({path.stat().st_size:,} bytes, {name} needs up to byte"
                f" {entry.offset + entry.size:,}); the copy or download was cut short: fetch it again"
            )
        with path.open("rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.size)
        if masked_crc32c(data) != entry.crc32c:
            raise BundleError(
                f"{name} in {path} fails its checksum: the file is corrupt; fetch the checkpoint again"
            )
        return np.frombuffer(data, dtype=numpy_dtype).reshape(entry.shape)


def find_checkpoint(src: str | Path) -> Path:
    """The checkpoint prefix that `src` names: a prefix, one of its files, or a folder.

    In a folder, the `checkpoint` state file's latest entry wins (its path may be the authors'
    absolute one, so only its file name is used); without one, the single `*.index`, or the
    one with the highest step number.
    """
    src = Path(src).expanduser()
    if src.is_dir():
        state = src / "checkpoint"
        if state.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(), re.MULTILINE)
            if match and (src / f"{Path(match.group(1)).name}.index").is_file():
                return src / Path(match.group(1)).name
        indexes = sorted(src.glob("*.index"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)])
        if not indexes:
            raise BundleError(
                f"{src} holds no TensorFlow checkpoint (no *.index file); pass a release model folder"
                " such as checkpoints/lstm/ or a prefix such as checkpoints/lstm/deblur.model-523000"
            )
        return indexes[-1].with_suffix("")
    name = re.sub(r"\.(index|meta|data-\d{5}-of-\d{5})$", "", src.name)
    prefix = src.with_name(name)
    if not Path(f"{prefix}.index").is_file():
        raise BundleError(
            f"{src} is neither a folder nor a checkpoint prefix with a .index file; pass e.g."
            " checkpoints/lstm/ or checkpoints/lstm/deblur.model-523000"
        )
    return prefix
