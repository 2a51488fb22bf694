"""Text as every process can store and send it: the one rule, so that a recorded value
reads the same whether bridged or the controlplane cleaned it.

NUL cannot be stored in PostgreSQL's text (one would fail a whole usage batch, on every
retry), and a lone surrogate (half a character, from a JSON escape or from header bytes
that were not UTF-8) cannot be encoded to UTF-8, which protobuf and the databases need.
Both become U+FFFD, as invalid UTF-8 does when a body is decoded leniently.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with NUL and lone surrogates replaced by U+FFFD (itself when it has none)."""
    if "\x00" not in text:
        if text.isascii():  # a flag CPython keeps: no scan
            return text
        try:
            text.encode()  # several times faster than the search below, when it passes
            return text
        except UnicodeEncodeError:
            pass
    return _UNSTORABLE.sub(REPLACEMENT, text)
