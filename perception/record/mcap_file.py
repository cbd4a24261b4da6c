"""Reading MCAP files defensively: finished files through their index, cut-off files linearly.

A finished file (footer + summary) is read through the `mcap` SeekingReader with chunk CRCs
checked. A file without a footer (a recorder killed with SIGKILL, a copy still being
written) is scanned record by record: every complete chunk is readable; if the file ends
inside a record the reader refuses with TruncatedRecordingError unless `recover=True`, in
which case it stops at the last complete record. Whatever the bytes, the result is messages
or a typed error naming the file, never a hang: record lengths are bounded by the file size.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError, UnsupportedCompressionError
from mcap.opcode import Opcode
from mcap.reader import SeekingReader
from mcap.records import Channel, Chunk, Message, Metadata, Schema
from mcap.stream_reader import MAGIC_SIZE, breakup_chunk

from perception.core.errors import MissingDependencyError, PerceptionError
from perception.record.errors import CorruptRecordingError, RecordingError, TruncatedRecordingError

MAGIC = b"\x89MCAP0\r\n"
_FOOTER_RECORD = 1 + 8 + 20  # opcode, length, summary_start, summary_offset_start, summary_crc
_RECORD_HEADER = 9
# what a damaged file makes the mcap package (or the decompressor) raise; each becomes CorruptRecordingError
# (OSError: a damaged offset makes a seek fail with EINVAL)
DAMAGE = (McapError, ValueError, struct.error, KeyError, IndexError, EOFError, OverflowError, OSError,
          zstandard.ZstdError, zlib.error, MemoryError)

MessageTuple = tuple[Schema | None, Channel, Message]


class McapRecording:
    """One open MCAP file. Use as a context manager; iterate `messages()` as often as needed."""

    def __init__(self, path: str | os.PathLike[str], *, recover: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(f"recording {str(self.path)!r} does not exist or is not a file",
                                 "check the path (a rosbag2 folder is read with rosbag:PATH)")
        self.size = self.path.stat().st_size
        self._file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - owned until close()
        try:
            self._check_magic()
            self.finished = self._has_footer()
            self.truncated_at: int | None = None
            self.schemas: dict[int, Schema] = {}
            self.channels: dict[int, Channel] = {}
            self.message_counts: dict[int, int] = {}
            self.start_ns = 0
            self.end_ns = 0
            self._metadata: list[Metadata] = []
            self._indexed = self.finished
            if self.finished:
                self._read_summary()
            else:
                self._scan_linear(recover)
        except BaseException:
            self._file.close()
            raise

    # -- opening ---------------------------------------------------------------------------------

    def _check_magic(self) -> None:
        head = self._file.read(MAGIC_SIZE)
        if head != MAGIC:
            kind = "empty" if not head else "not an MCAP file (bad magic bytes)"
            raise CorruptRecordingError(f"recording {str(self.path)!r} is {kind}",
                                        "give an .mcap file written by an MCAP writer (rosbag2, Foxglove, "
                                        "perception record)")

    def _has_footer(self) -> bool:
        if self.size < 2 * MAGIC_SIZE + _FOOTER_RECORD:
            return False
        self._file.seek(self.size - MAGIC_SIZE - _FOOTER_RECORD)
        tail = self._file.read(_FOOTER_RECORD + MAGIC_SIZE)
        return tail[0] == Opcode.FOOTER and tail[-MAGIC_SIZE:] == MAGIC

    def _check_summary_crc(self) -> None:
        """The footer's CRC of the summary section; mcap's reader trusts the summary without it.

        A flipped bit in a chunk index could otherwise skip a chunk silently.
        """
        footer_at = self.size - MAGIC_SIZE - _FOOTER_RECORD
        self._file.seek(footer_at + _RECORD_HEADER)
        summary_start, _offsets_start, summary_crc = struct.unpack("<QQI", self._file.read(20))
        if summary_start == 0 or summary_crc == 0:
            return  # no summary, or a writer that did not compute the CRC
        if not MAGIC_SIZE <= summary_start <= footer_at:
            raise self.corrupt(ValueError(f"footer points the summary at byte {summary_start}"))
        self._file.seek(summary_start)
        covered = self._file.read(footer_at + _RECORD_HEADER + 16 - summary_start)
        if zlib.crc32(covered) != summary_crc:
            raise self.corrupt(ValueError("summary section CRC mismatch"))

    def _read_summary(self) -> None:
        self._check_summary_crc()
        self._file.seek(0)
        self._reader = SeekingReader(self._file, validate_crcs=True, record_size_limit=self.size)
        try:
            summary = self._reader.get_summary()
            self._metadata = list(self._reader.iter_metadata())
        except DAMAGE as exc:
            raise self.corrupt(exc) from exc
        if summary is None or not summary.chunk_indexes:
            # no index (written without chunks or without a summary, or no messages): read linearly
            self._indexed = False
            self._scan_linear(recover=False)
            return
        self.schemas = dict(summary.schemas)
        self.channels = dict(summary.channels)
        if summary.statistics is not None:
            self.message_counts = dict(summary.statistics.channel_message_counts)
            self.start_ns = summary.statistics.message_start_time
            self.end_ns = summary.statistics.message_end_time
        else:  # a writer that skipped statistics: count once (decompresses every chunk)
            self.start_ns = min(c.message_start_time for c in summary.chunk_indexes)
            self.end_ns = max(c.message_end_time for c in summary.chunk_indexes)
            for _schema, channel, _message in self.messages():
                self.message_counts[channel.id] = self.message_counts.get(channel.id, 0) + 1

    def _scan_linear(self, recover: bool) -> None:
        """Walk top-level records to find where the complete part ends, then index it in one pass."""
        self._records: list[tuple[int, int, int]] = []  # (offset of body, opcode, length)
        offset = MAGIC_SIZE
        while offset < self.size:
            self._file.seek(offset)
            head = self._file.read(_RECORD_HEADER)
            if len(head) < _RECORD_HEADER:
                self.truncated_at = offset
                break
            opcode, length = struct.unpack("<BQ", head)
            if opcode == 0:
                raise CorruptRecordingError(f"recording {str(self.path)!r} has an invalid record at byte {offset}",
                                            "the file is damaged; re-record or restore it")
            if offset + _RECORD_HEADER + length > self.size:
                self.truncated_at = offset
                break
            if opcode in (Opcode.DATA_END, Opcode.FOOTER):
                break  # the data section ends here; a damaged footer does not hide good data
            self._records.append((offset + _RECORD_HEADER, opcode, length))
            offset += _RECORD_HEADER + length
        if self.truncated_at is not None and not recover:
            raise TruncatedRecordingError(
                f"recording {str(self.path)!r} ends inside a record at byte {self.truncated_at} of {self.size} "
                "(cut off: killed while writing, or an incomplete copy)",
                "replay its complete part with ?recover=1 (read_drive(path, recover=True))")
        if not self.finished:
            print(f"perception: recording {self.path} was not closed cleanly; reading its "
                  f"{sum(1 for r in self._records if r[1] == Opcode.CHUNK)} complete chunks", file=sys.stderr)
        first = True
        for _schema, channel, message in self._linear_messages():
            self.message_counts[channel.id] = self.message_counts.get(channel.id, 0) + 1
            self.start_ns = message.log_time if first else min(self.start_ns, message.log_time)
            self.end_ns = max(self.end_ns, message.log_time)
            first = False

    # -- reading ---------------------------------------------------------------------------------

    def corrupt(self, exc: BaseException) -> PerceptionError:
        if isinstance(exc, UnsupportedCompressionError):  # a codec that is not installed, not damage
            return MissingDependencyError(str(exc).rsplit(" ", 1)[-1], f"reading {str(self.path)!r}",
                                          "pip install lz4 (MCAP chunks compressed with lz4)")
        return CorruptRecordingError(f"recording {str(self.path)!r} is damaged ({type(exc).__name__}: {exc})",
                                     "the file fails its checks (bit flip, bad copy); re-record or restore it")

    @property
    def message_count(self) -> int:
        return sum(self.message_counts.values())

    def topics(self) -> dict[str, str]:
        """topic -> schema name of the channels that hold messages."""
        out: dict[str, str] = {}
        for channel in self.channels.values():
            if self.message_counts and not self.message_counts.get(channel.id):
                continue
            schema = self.schemas.get(channel.schema_id)
            out[channel.topic] = schema.name if schema is not None else f"({channel.message_encoding})"
        return out

    def metadata(self) -> dict[str, dict[str, str]]:
        return {record.name: dict(record.metadata) for record in self._metadata}

    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[MessageTuple]:
        """(schema, channel, message) in log-time order (file order for unfinished files).

        start_ns inclusive, end_ns exclusive, both in log time.
        """
        wanted = set(topics) if topics is not None else None
        if self._indexed:
            try:
                yield from self._reader.iter_messages(topics=None if wanted is None else sorted(wanted),
                                                      starting_at=start_ns, ending_before=end_ns)
            except DAMAGE as exc:
                raise self.corrupt(exc) from exc
            return
        for schema, channel, message in self._linear_messages():
            if wanted is not None and channel.topic not in wanted:
                continue
            if start_ns is not None and message.log_time < start_ns:
                continue
            if end_ns is not None and message.log_time >= end_ns:
                continue
            yield schema, channel, message

    def _linear_messages(self) -> Iterator[MessageTuple]:
        for body, opcode, length in self._records:
            if opcode not in (Opcode.CHUNK, Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE, Opcode.METADATA):
                continue
            self._file.seek(body)
            try:
                stream = ReadDataStream(io.BytesIO(self._file.read(length)))
                if opcode == Opcode.CHUNK:
                    records: list[object] = list(breakup_chunk(Chunk.read(stream), validate_crc=True))
                elif opcode == Opcode.SCHEMA:
                    records = [Schema.read(stream)]
                elif opcode == Opcode.CHANNEL:
                    records = [Channel.read(stream)]
                elif opcode == Opcode.METADATA:
                    metadata = Metadata.read(stream)
                    if metadata.name not in {m.name for m in self._metadata}:
                        self._metadata.append(metadata)
                    continue
                else:
                    records = [Message.read(stream, length)]
            except DAMAGE as exc:
                raise self.corrupt(exc) from exc
            for record in records:
                if isinstance(record, Schema):
                    self.schemas[record.id] = record
                elif isinstance(record, Channel):
                    self.channels[record.id] = record
                elif isinstance(record, Message):
                    channel = self.channels.get(record.channel_id)
                    if channel is None:
                        raise self.corrupt(KeyError(f"message on unknown channel {record.channel_id}"))
                    yield self.schemas.get(channel.schema_id), channel, record

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> McapRecording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
