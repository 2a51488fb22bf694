"""An incremental Server-Sent Events decoder over arbitrary byte chunks."""

from __future__ import annotations

from collections.abc import Iterator


class SSEDecoder:
    """Feed it chunks as they arrive; it yields (event, data) for each complete event."""

    def __init__(self, max_buffer: int = 16 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._event = ""
        self._data: list[bytes] = []
        self._max_buffer = max_buffer

    def feed(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        self._buffer += chunk
        start = 0
        try:
            while True:
                end = self._buffer.find(b"\n", start)
                if end < 0:
                    if len(self._buffer) - start > self._max_buffer:
                        start = len(self._buffer)  # not SSE, or a line that never ends
                    return
                line = bytes(self._buffer[start:end]).rstrip(b"\r")
                start = end + 1
                if not line:
                    if self._data:
                        yield self._event, b"\n".join(self._data)
                    self._event, self._data = "", []
                elif line.startswith(b"data:"):
                    self._data.append(line[5:].removeprefix(b" "))
                elif line.startswith(b"event:"):
                    self._event = line[6:].strip().decode(errors="replace")
        finally:
            del self._buffer[:start]  # once per chunk, not once per line
