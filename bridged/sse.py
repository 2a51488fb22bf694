"""An incremental Server-Sent Events decoder over arbitrary byte chunks."""

from __future__ import annotations

from collections.abc import Iterator

# What may be left of a stream after its last line's end, when the stream is complete.
_WHOLE_LAST_LINES = (b"", b"data: [DONE]", b"data:[DONE]")


class SSEDecoder:
    """Feed it chunks as they arrive; it yields (event, data) for each complete event."""

    def __init__(self, max_buffer: int = 16 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._event = ""
        self._data: list[bytes] = []
        self._data_size = 0
        self._max_buffer = max_buffer
        self.dropped = False  # a line or an event longer than max_buffer was left out

    @property
    def pending(self) -> bool:
        """An event begun and not ended: a stream that stops here was cut short."""
        return bool(self._data) or bool(self._buffer.strip())

    def end(self) -> Iterator[tuple[str, bytes]]:
        """The stream ended: its last event, if whole though no blank line closed it (its
        lines all ended, or it is Chat Completions' `data: [DONE]`, sent by some without
        even a line's end). A line cut short stays pending."""
        if self._buffer.strip() in _WHOLE_LAST_LINES:
            yield from self.feed(b"\n\n")

    def feed(self, chunk: bytes) -> Iterator[tuple[str, bytes]]:
        self._buffer += chunk
        start = 0
        try:
            while True:
                end = self._buffer.find(b"\n", start)
                if end < 0:
                    if len(self._buffer) - start > self._max_buffer:
                        start = len(self._buffer)  # not SSE, or a line that never ends
                        self.dropped = True
                    return
                line = bytes(self._buffer[start:end]).rstrip(b"\r")
                start = end + 1
                if not line:
                    if self._data:
                        yield self._event, b"\n".join(self._data)
                    self._event, self._data, self._data_size = "", [], 0
                elif line.startswith(b"data:"):
                    if self._data_size + len(line) > self._max_buffer:
                        self.dropped = True  # an event that never ends: its data stops here
                        continue
                    self._data.append(line[5:].removeprefix(b" "))
                    self._data_size += len(line)
                elif line.startswith(b"event:"):
                    self._event = line[6:].strip().decode(errors="replace")
        finally:
            del self._buffer[:start]  # once per chunk, not once per line
