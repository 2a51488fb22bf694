"""An incremental Server-Sent Events decoder over arbitrary byte chunks."""

from __future__ import annotations

from collections.abc import Iterator


class SSEDecoder:
    """Feed it chunks as they arrive; it yields (event, data) for each complete event."""

    def __init__(self, max_buffer: int = 16 * 1024 * 1024) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[bytes] = []
        self._max_buffer = max_buffer

    def feed(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        self._buffer += chunk
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_buffer:
                    self._buffer = b""  # not SSE, or a line we will never finish: stop hoarding
                return
            line = self._buffer[:end].rstrip(b"\r")
            self._buffer = self._buffer[end + 1 :]
            if not line:
                if self._data:
                    yield self._event, b"\n".join(self._data)
                self._event, self._data = "", []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode(errors="replace")
