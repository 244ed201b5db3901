"""TFRecord files and ``tf.train.Example`` records, without TensorFlow.

Framing of one record (all integers little-endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

with ``masked_crc32c(x) = (rotr15(crc32c(x)) + 0xA282EAD8) mod 2**32``. A GZIP file is the whole
framed stream compressed as one gzip member (as TensorFlow's ``TFRecordOptions('GZIP')``).
The ``tfrecord`` package's reader checks no CRC, so records are framed and verified here.

Examples are parsed with the ``tfrecord`` package's protobuf (``tfrecord.example_pb2``), one
feature at a time: the top level of the message is split by a tiny wire-format walker, so a
CLEVR record's million one-byte ``bytes_list`` entries are never materialised as a million
Python objects (``uint8_values`` reads them straight from the wire as ``0A 01 xx`` triples).

Sharding: with ``n`` readers in total (DataLoader workers times DDP ranks), record index ``i``
belongs to reader ``w`` iff ``i % n == w``, so readers never duplicate or drop records.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import crc32c
import numpy as np
import torch.distributed as dist
from tfrecord import example_pb2
from torch.utils.data import get_worker_info

from cutslots.data.errors import DatasetFormatError

Compression = Literal["gzip"] | None

_MASK_DELTA = 0xA282EAD8
_HEADER = 12  # uint64 length + uint32 crc
# Errors the gzip/zlib layer raises on a damaged or non-gzip stream.
_STREAM_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record framed exactly as TensorFlow writes it."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def write_tfrecord(path: Path, records: Iterable[bytes], compression: Compression = None) -> None:
    """Write ``records`` to a plain or GZIP TFRecord file at ``path``."""
    _check_compression(compression)
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "wb") as f:
        for data in records:
            f.write(frame_record(data))


def _check_compression(compression: Compression) -> None:
    if compression not in (None, "gzip"):
        raise ValueError(f"compression must be None or 'gzip', got {compression!r}")


def iter_records(
    path: Path,
    compression: Compression = None,
    keep: Callable[[int], bool] | None = None,
    stop: int | None = None,
) -> Generator[tuple[int, bytes], None, int]:
    """Yield ``(index, data)`` for the records of a TFRecord file, in file order.

    Records with ``keep(index)`` false are stepped over: their length CRC is checked but their
    data is not read (plain files seek past it), as another reader owns it. Every yielded
    record has both CRCs verified; any damage raises ``DatasetFormatError`` naming the file
    and the record index. With ``stop``, reading ends before record ``stop`` and a file with
    fewer records is an error. The generator returns the number of records it passed.
    """
    _check_compression(compression)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFRecord file not found: {path}")
    size = path.stat().st_size
    with gzip.open(path, "rb") if compression == "gzip" else open(path, "rb") as f:
        index = 0
        while stop is None or index < stop:
            header = _read(f, _HEADER, path, index)
            if not header:
                if stop is not None:
                    raise DatasetFormatError(f"{path}: holds only {index} records, expected at least {stop}")
                break
            if len(header) < _HEADER:
                raise DatasetFormatError(f"{path}: record {index}: truncated record header")
            length_bytes, (length_crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != length_crc:
                raise DatasetFormatError(f"{path}: record {index}: corrupt length (CRC mismatch)")
            (length,) = struct.unpack("<Q", length_bytes)
            if keep is None or keep(index):
                body = _read(f, length + 4, path, index)
                if len(body) < length + 4:
                    raise DatasetFormatError(f"{path}: record {index}: truncated record data")
                data, (data_crc,) = body[:length], struct.unpack("<I", body[length:])
                if masked_crc32c(data) != data_crc:
                    raise DatasetFormatError(f"{path}: record {index}: corrupt data (CRC mismatch)")
                yield index, data
            else:
                _skip(f, length + 4, compression is None, size, path, index)
            index += 1
    return index


class _Readable(Protocol):
    """What the record reader needs of a plain or GZIP file."""

    def read(self, n: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


def _read(f: _Readable, n: int, path: Path, index: int) -> bytes:
    """Read up to ``n`` bytes (fewer only at end of file); GZIP damage names file/record."""
    try:
        return f.read(n)
    except _STREAM_ERRORS as e:
        raise DatasetFormatError(f"{path}: record {index}: damaged GZIP stream ({e})") from e


def _skip(f: _Readable, n: int, seekable: bool, size: int, path: Path, index: int) -> None:
    if seekable:
        if f.seek(n, 1) > size:
            raise DatasetFormatError(f"{path}: record {index}: truncated record data")
        return
    remaining = n
    while remaining:
        chunk = _read(f, min(remaining, 1 << 24), path, index)
        if not chunk:
            raise DatasetFormatError(f"{path}: record {index}: truncated record data")
        remaining -= len(chunk)


# ---------------------------------------------------------------- tf.train.Example parsing


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a protobuf varint at ``pos``; returns ``(value, next_pos)``."""
    value = shift = 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("malformed varint")


def _length_fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(field_number, payload)`` for the length-delimited fields of a message,
    stepping over fields of other wire types."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("length-delimited field runs past the end of the message")
            yield field, buf[pos : pos + n]
            pos += n
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("field runs past the end of the message")


class ExampleView:
    """Typed access to the features of one serialized ``tf.train.Example``.

    ``where`` (e.g. ``"file.tfrecord: record 7"``) prefixes every error message.
    """

    def __init__(self, record: bytes, where: str) -> None:
        self.where = where
        self._features: dict[str, bytes] = {}
        try:
            # Example{features=1: Features{feature=1: map entry{key=1, value=2: Feature}}}
            for field, features in _length_fields(record):
                if field != 1:
                    continue
                for field2, entry in _length_fields(features):
                    if field2 != 1:
                        continue
                    parts = dict(_length_fields(entry))
                    self._features[parts.get(1, b"").decode("utf-8")] = parts.get(2, b"")
        except (ValueError, UnicodeDecodeError) as e:
            raise DatasetFormatError(f"{where}: not a tf.train.Example ({e})") from e

    def keys(self) -> list[str]:
        """Feature names present in the record."""
        return list(self._features)

    def _raw(self, key: str) -> bytes:
        if key not in self._features:
            raise DatasetFormatError(f"{self.where}: missing feature {key!r} (present: {sorted(self._features)})")
        return self._features[key]

    def _feature(self, key: str, kind: str) -> example_pb2.Feature:
        feature, raw = example_pb2.Feature(), self._raw(key)
        try:
            feature.ParseFromString(raw)
        except Exception as e:  # protobuf's DecodeError
            raise DatasetFormatError(f"{self.where}: feature {key!r} is malformed ({e})") from e
        found = feature.WhichOneof("kind")
        if found != kind:
            raise DatasetFormatError(f"{self.where}: feature {key!r} is a {found}, expected {kind}")
        return feature

    def bytes_values(self, key: str) -> list[bytes]:
        """The entries of a ``bytes_list`` feature (e.g. one PNG per video frame)."""
        return list(self._feature(key, "bytes_list").bytes_list.value)

    def float_values(self, key: str, count: int | None = None) -> np.ndarray:
        """A ``float_list`` feature as float32 ``(N,)``; ``count`` checks N."""
        values = np.asarray(self._feature(key, "float_list").float_list.value, np.float32)
        return self._check_count(key, values, count)

    def int64_values(self, key: str, count: int | None = None) -> np.ndarray:
        """An ``int64_list`` feature as int64 ``(N,)``; ``count`` checks N."""
        values = np.asarray(self._feature(key, "int64_list").int64_list.value, np.int64)
        return self._check_count(key, values, count)

    def uint8_values(self, key: str, count: int | None = None) -> np.ndarray:
        """A ``bytes_list`` with one ONE-BYTE entry per value (multi_object_datasets' string
        features) as uint8 ``(N,)``, NUL bytes included; ``count`` checks N."""
        raw = self._raw(key)
        try:
            lists = [p for f, p in _length_fields(raw) if f == 1]
        except ValueError as e:
            raise DatasetFormatError(f"{self.where}: feature {key!r} is malformed ({e})") from e
        if len(lists) != 1:
            raise DatasetFormatError(f"{self.where}: feature {key!r} is not a single bytes_list")
        # Each entry is encoded as tag 0x0A (field 1, length-delimited), length 0x01, byte.
        wire = np.frombuffer(lists[0], np.uint8)
        triples = wire.reshape(-1, 3) if wire.size % 3 == 0 else None
        if triples is None or not ((triples[:, 0] == 0x0A).all() and (triples[:, 1] == 1).all()):
            raise DatasetFormatError(f"{self.where}: feature {key!r} does not hold one byte per bytes_list entry")
        return self._check_count(key, triples[:, 2].copy(), count)

    def _check_count(self, key: str, values: np.ndarray, count: int | None) -> np.ndarray:
        if count is not None and values.size != count:
            raise DatasetFormatError(f"{self.where}: feature {key!r} has {values.size} values, expected {count}")
        return values


# ---------------------------------------------------------------- sharding


@dataclass(frozen=True)
class Shard:
    """Reader ``index`` of ``count``: owns record ``i`` iff ``i % count == index``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard needs 0 <= index < count, got {self.index} of {self.count}")

    def owns(self, record_index: int) -> bool:
        return record_index % self.count == self.index


def current_shard() -> Shard:
    """The shard of the calling process: DDP rank r of R and DataLoader worker k of K give
    reader ``r * K + k`` of ``R * K``."""
    rank, world = 0, 1
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return Shard(rank * workers + worker, world * workers)
