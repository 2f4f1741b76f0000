"""An executor NAV log read as a snapshot in bounded pieces: memory follows the piece size and
the longest line or list element, never the size of the file.

`open_snapshot` refuses what `fs.read_bytes` refuses, with the same reasons and before reading a
byte: a file that is not a regular file (a FIFO, a device) or is over the cap. `Snapshot.pieces`
then yields the first `size` bytes (the size when it was opened) and, once they are all read,
checks that they are still the file's: unchanged since it was opened, or only grown (an executor
appending a line while a long log is parsed) with the bytes read still its first bytes (a
second read compared by digest). Anything else raises `Changed`, as `fs.read_bytes` refuses a
file that changed while it was read. The check runs before the caller's last step (the store
commits only what it could verify), so a torn read is never stored.

`lines` splits the pieces into lines, a line longer than `MAX_LINE_BYTES` dropped as it is read
(a crash-torn log may end in hundreds of MB of NUL bytes without a newline); `list_items` into
the JSON text of each element of one top-level JSON list (fs.ReadError when the text is not one
list).
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kpi_publisher import fs
from kpi_publisher.sources import TOO_DEEP

PIECE_BYTES = 1024 * 1024
# The longest line of a JSON-lines log that is parsed: a NAV line is under a few KB, so a longer
# one is damage (a crash's run of NUL bytes, two files run together). It is never held whole.
MAX_LINE_BYTES = 64 * 1024
CHANGED = fs.CHANGED_WHILE_READ


class Changed(fs.ReadError):
    """The file is no longer what was read (not an append); nothing read from it may be kept."""


def _digest() -> Any:
    return hashlib.sha1(usedforsecurity=False)  # tells a rewrite from an append, not a secret


@dataclass
class Snapshot:
    """One open log file and its stamp when opened; `pieces` reads it once."""

    path: Path
    fd: int
    opened: fs.FileStamp
    _read: Any = field(default_factory=_digest)

    @property
    def identity(self) -> str:
        """size:mtime_ns of what is read (the back-fill's record of an imported file)."""
        return f"{self.opened.size}:{self.opened.mtime_ns}"

    def pieces(self) -> Iterator[bytes]:
        """The file's first `opened.size` bytes, PIECE_BYTES at a time; raises `Changed` after the
        last piece when they are no longer the file's first bytes."""
        left = self.opened.size
        while left > 0:
            piece = os.read(self.fd, min(PIECE_BYTES, left))
            if not piece:  # truncated while being read
                raise Changed(CHANGED)
            self._read.update(piece)
            left -= len(piece)
            yield piece
        self._verify()

    def _verify(self) -> None:
        now = fs.FileStamp.of(os.fstat(self.fd))
        if now == self.opened:
            return
        if now.size < self.opened.size:
            raise Changed(CHANGED)
        again, left, offset = _digest(), self.opened.size, 0
        while left > 0:
            piece = os.pread(self.fd, min(PIECE_BYTES, left), offset)
            if not piece:
                raise Changed(CHANGED)
            again.update(piece)
            left -= len(piece)
            offset += len(piece)
        if again.digest() != self._read.digest():
            raise Changed(CHANGED)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_snapshot(path: Path, *, max_bytes: int) -> Snapshot:
    """Open `path` for `Snapshot.pieces`. FileNotFoundError when there is no file; fs.ReadError
    (nothing read) when it cannot be opened, is not a regular file or is over `max_bytes`."""
    fd, info = fs.open_regular(path, max_bytes=max_bytes)
    return Snapshot(path, fd, fs.FileStamp.of(info))


def lines(pieces: Iterator[bytes], max_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of the text, without their b"\\n" (those iterating the whole bytes gives); a
    line longer than a piece is joined once, not copied again for every piece. A line longer
    than `max_bytes` is None: its bytes are let go as they are read, so memory follows the
    cap and the piece size, never the line."""
    pending: list[bytes] = []
    held = 0  # the bytes of the line in `pending`; past `max_bytes` they are no longer kept
    for piece in pieces:
        parts = piece.split(b"\n")
        held += len(parts[0])
        if held <= max_bytes:
            pending.append(parts[0])
        else:
            pending.clear()
        if len(parts) == 1:
            continue
        yield b"".join(pending) if held <= max_bytes else None
        for line in itertools.islice(parts, 1, len(parts) - 1):
            yield line if len(line) <= max_bytes else None
        held = len(parts[-1])
        pending = [parts[-1]] if held <= max_bytes else []
    if held > max_bytes:
        yield None
    elif held:
        yield b"".join(pending)


# Only the extent of each element is wanted here: numbers and constants are not converted (an
# integer of 5,000 digits is the element decoder's to judge, not a reason to stop).
_EXTENT = json.JSONDecoder(parse_float=len, parse_int=len, parse_constant=len)
_NOT_SPACE = re.compile(r"[^ \t\n\r]")  # JSON's white space is these four


class _Text:
    """The text of the pieces as far as it is needed: `text[pos:]` is what is not yet taken."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._bytes_fed = 0
        self.taken = 0  # characters before `text`, for the reasons
        self.text = ""
        self.pos = 0
        self.ended = False

    def more(self) -> bool:
        """Read on until twice what is held and not yet taken is held (at least one more
        character, or all there is); False once the text has ended."""
        if self.ended:
            return False
        rest = self.text[self.pos :]
        self.taken += self.pos
        self.pos = 0
        held, size = [rest], len(rest)
        target = max(2 * size, size + 1)
        while size < target and not self.ended:
            text = self._decode(next(self._pieces, None))
            held.append(text)
            size += len(text)
        self.text = "".join(held)
        return True

    def _decode(self, piece: bytes | None) -> str:
        """The text of one more piece (None: the end; an unfinished character is then an error)."""
        pending, _flags = self._decoder.getstate()
        start = self._bytes_fed - len(pending)  # the file offset of what is decoded now
        if piece is None:
            self.ended = True
            piece = b""
        self._bytes_fed += len(piece)
        try:
            return self._decoder.decode(piece, final=self.ended)
        except UnicodeDecodeError as exc:
            raise fs.ReadError(f"not UTF-8 (byte {start + exc.start})") from None

    def next_char(self) -> str:
        """The next character that is not JSON white space ("" at the end), not taken."""
        while True:
            found = _NOT_SPACE.search(self.text, self.pos)
            self.pos = found.start() if found else len(self.text)
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos : self.pos + 1]

    def where(self, pos: int | None = None) -> str:
        return f"char {self.taken + (self.pos if pos is None else pos)}"


# The longest token whose cut prefix the parser reports at the token's start.
_LONGEST_LITERAL = len("-Infinity")
# The most a number's text can hold past a shorter valid number without being one: "e+".
_NUMBER_TAIL = len("e+")


def _cut_short(exc: json.JSONDecodeError, length: int) -> bool:
    """True when the error may be only the end of the text held (a string, a literal, an escape
    or a container cut by a piece boundary), not a fault of the text: the parser reports an
    unterminated string at its start, a cut literal at its start, anything else where the
    text ran out."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= length - _LONGEST_LITERAL


def _value_end(text: _Text) -> int:
    """Where the JSON value at `text.pos` ends, reading more while it may be cut short."""
    while True:
        try:
            _, end = _EXTENT.raw_decode(text.text, text.pos)
        except json.JSONDecodeError as exc:
            if _cut_short(exc, len(text.text)) and text.more():
                continue
            raise fs.ReadError(f"not valid JSON: {exc.msg} ({text.where(exc.pos)})") from None
        except RecursionError:
            raise fs.ReadError(TOO_DEEP) from None
        # A number at the end of the text may go on in the next piece ("1" of "12", of "1.5",
        # of "1e+9"): a value is complete once three characters follow it, or the text ended.
        if end + _NUMBER_TAIL < len(text.text) or not text.more():
            return end


def list_items(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The JSON text (UTF-8) of each element of the one JSON list the pieces hold. fs.ReadError
    names what is wrong: empty, not UTF-8, not a list, not valid JSON, text after the list."""
    text = _Text(pieces)
    text.more()
    if text.text.startswith("\ufeff"):
        raise fs.ReadError("starts with a UTF-8 byte-order mark")
    first = text.next_char()
    if not first:
        raise fs.ReadError("empty file")
    if first == "{":
        raise fs.ReadError("top level is an object, expected a list")
    if first != "[":
        raise fs.ReadError(f"not a JSON list (it begins {first!r})")
    text.pos += 1
    if text.next_char() == "]":
        text.pos += 1
    else:
        while True:
            end = _value_end(text)  # reading on keeps the value at text.pos
            yield text.text[text.pos : end].encode("utf-8")
            text.pos = end
            after = text.next_char()
            if after == "]":
                text.pos += 1
                break
            if after != ",":
                raise fs.ReadError(f"not valid JSON: expecting ',' or ']' ({text.where()})")
            text.pos += 1
            text.next_char()
    if text.next_char():
        raise fs.ReadError(f"not valid JSON: text after the list ({text.where()})")
