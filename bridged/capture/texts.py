"""Recorded texts, bounded: each cut to the settings' max_text_bytes of UTF-8 at a
character boundary, all of a record's texts together to RECORD_TEXT_BYTES. Whatever is
cut or replaced marks the record partial."""

from __future__ import annotations

from typing import Any

from bridged.capture.settings import RECORD_TEXT_BYTES
from common.text import storable


class Bounds:
    """One record's allowance of text, and whether anything was left out of it."""

    __slots__ = ("text_left", "partial")

    def __init__(self, text_bytes: int = RECORD_TEXT_BYTES) -> None:
        self.text_left = text_bytes
        self.partial = False

    def utf8(self, text: str) -> bytes:
        """`text` in UTF-8, storable (common/text.py): NUL and lone surrogates (a JSON
        escape of half a character) become U+FFFD, and the record partial."""
        clean = storable(text)
        if clean is not text:  # storable() gives back the very string when it had none
            self.partial = True
        return clean.encode()

    def short(self, value: Any, limit: int) -> str:
        """A short string field (an id, a name, a reason), cut to `limit` characters."""
        if not isinstance(value, str):
            return ""
        if len(value) > limit:
            self.partial = True
            value = value[:limit]
        if value.isascii() and "\x00" not in value:
            return value
        return self.utf8(value).decode()


class BoundedText:
    """A text assembled from pieces (a stream's deltas), kept up to its limit: past it,
    pieces are dropped, not held."""

    __slots__ = ("_bounds", "_limit", "_data", "truncated")

    def __init__(self, limit: int, bounds: Bounds) -> None:
        self._bounds = bounds
        self._limit = limit
        self._data = bytearray()
        self.truncated = False

    def append(self, piece: Any) -> None:
        if not isinstance(piece, str) or not piece or self.truncated:
            return
        room = min(self._limit - len(self._data), self._bounds.text_left)
        if len(piece) > room:  # a character is a byte at least: only these can be kept
            piece = piece[: max(room, 0) + 1]  # one more, so that the cut is seen
        data = self._bounds.utf8(piece)
        if len(data) > room:
            data = cut(data, room)
            self.truncated = self._bounds.partial = True
        self._data += data
        self._bounds.text_left -= len(data)

    def set(self, text: Any) -> None:
        self.clear()
        self.append(text)

    def clear(self) -> None:
        """Empty again, its bytes given back to the record's allowance."""
        self._bounds.text_left += len(self._data)
        self._data = bytearray()
        self.truncated = False

    def __bool__(self) -> bool:
        return bool(self._data)

    def text(self) -> str:
        return self._data.decode()  # cut at character boundaries only: always valid


def cut(data: bytes, size: int) -> bytes:
    """The first `size` bytes of UTF-8 `data` or fewer: never half a character."""
    if size <= 0:
        return b""
    while size < len(data) and data[size] & 0xC0 == 0x80:  # a continuation byte
        size -= 1
    return data[:size]
