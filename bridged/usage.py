"""Token usage as each API reports it. Counts are recorded as each provider reports
them: OpenAI's input includes its cached tokens; Anthropic's input excludes cache reads
and writes, which are counted separately. (bridged/capture reads them from the response
as it streams past.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Usage:
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def tpm_tokens(self, family: str) -> int:
        """Every token of the call, as a tokens-per-minute limit counts it: all its input
        and its output. Anthropic's input_tokens leave out the cache reads and writes;
        OpenAI's include the cached tokens."""
        total = self.input_tokens + self.output_tokens
        if family == "anthropic":
            total += self.cache_read_tokens + self.cache_write_tokens
        return total

    def read_model(self, model: Any) -> None:
        if isinstance(model, str) and model:
            self.model = model

    def read_anthropic(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.input_tokens = _int(usage, "input_tokens", self.input_tokens)
        self.output_tokens = _int(usage, "output_tokens", self.output_tokens)
        self.cache_read_tokens = _int(usage, "cache_read_input_tokens", self.cache_read_tokens)
        self.cache_write_tokens = _int(
            usage, "cache_creation_input_tokens", self.cache_write_tokens
        )

    def read_responses(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.input_tokens = _int(usage, "input_tokens", self.input_tokens)
        self.output_tokens = _int(usage, "output_tokens", self.output_tokens)
        details = usage.get("input_tokens_details") or {}
        self.cache_read_tokens = _int(details, "cached_tokens", self.cache_read_tokens)

    def read_chat(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.input_tokens = _int(usage, "prompt_tokens", self.input_tokens)
        self.output_tokens = _int(usage, "completion_tokens", self.output_tokens)
        details = usage.get("prompt_tokens_details") or {}
        self.cache_read_tokens = _int(details, "cached_tokens", self.cache_read_tokens)


def _int(mapping: Any, key: str, default: int) -> int:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and value >= 0 else default
