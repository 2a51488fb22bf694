"""The price table: which entry prices a model, and what a call cost.

Entries are a model's exact name or a glob pattern (fnmatch, case-sensitive) for dated
names (`claude-sonnet-4-5*` prices `claude-sonnet-4-5-20250929`). The most specific entry
wins: the exact name, else the longest matching pattern (`gpt-5-mini*` over `gpt-5*`).

`prices.json` beside this file is the table the gateway ships (migration 0008 loads it
into a new database); `aibridgectl prices import` takes a file of the same form.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from controlplane.errors import InvalidArgument

SHIPPED = Path(__file__).with_name("prices.json")
MODEL_MAX = 200
PRICE_MAX = 1_000_000.0  # USD per million tokens: beyond is a typo
_MATCHED_MAX = 10_000  # model names a table remembers the entry of (a batch's are fewer)

# Provider types whose input_tokens leave out the cached ones (Anthropic's usage); the
# OpenAI kinds count cached tokens inside input_tokens.
_CACHE_APART = frozenset({"anthropic", "bedrock", "vertex"})


@dataclass(frozen=True)
class PriceEntry:
    model: str
    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(
        self, provider_type: str, input_tokens: int, output_tokens: int,
        cache_read_tokens: int, cache_write_tokens: int,
    ) -> float:  # fmt: skip
        """USD for these token counts, as the provider's usage counts them."""
        uncached = input_tokens
        if provider_type not in _CACHE_APART:
            uncached = max(0, input_tokens - cache_read_tokens - cache_write_tokens)
        return (
            uncached * self.input
            + output_tokens * self.output
            + cache_read_tokens * self.cache_read
            + cache_write_tokens * self.cache_write
        ) / 1_000_000


class PriceTable:
    """Immutable; built from the prices table's rows."""

    def __init__(self, entries: Iterable[PriceEntry]) -> None:
        entries = list(entries)
        self._exact = {e.model: e for e in entries if not _is_pattern(e.model)}
        # Longest first: the first that matches is the most specific.
        self._patterns = sorted(
            (e for e in entries if _is_pattern(e.model)), key=lambda e: (-len(e.model), e.model)
        )
        # What a pattern lookup found, by model name: a batch's calls are of a few models,
        # and matching every pattern for each call is the costly part of pricing it.
        self._matched: dict[str, PriceEntry | None] = {}

    def find(self, model: str) -> PriceEntry | None:
        found = self._exact.get(model)
        if found is not None or not model:
            return found
        if model in self._matched:
            return self._matched[model]
        found = next((e for e in self._patterns if fnmatchcase(model, e.model)), None)
        if len(self._matched) < _MATCHED_MAX:
            self._matched[model] = found
        return found

    def cost(
        self, provider_type: str, model: str, input_tokens: int, output_tokens: int,
        cache_read_tokens: int, cache_write_tokens: int,
    ) -> float | None:  # fmt: skip
        """The call's cost in USD; None when it used tokens of a model with no price."""
        used = input_tokens or output_tokens or cache_read_tokens or cache_write_tokens
        if not used:
            return 0.0
        entry = self.find(model)
        if entry is None:
            return None
        return entry.cost(
            provider_type, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
        )


def _is_pattern(model: str) -> bool:
    return any(c in model for c in "*?[")


def validate_model(model: str, field: str = "model") -> str:
    if not model:
        raise InvalidArgument(field, "is required")
    if len(model) > MODEL_MAX:
        raise InvalidArgument(field, f"is longer than {MODEL_MAX} characters")
    if not model.isascii() or not model.isprintable() or " " in model:
        raise InvalidArgument(field, "must be printable ASCII without spaces")
    return model


def validate_price(value: float, field: str) -> float:
    if not math.isfinite(value) or value < 0 or value > PRICE_MAX:
        raise InvalidArgument(field, f"must be a number of USD from 0 to {PRICE_MAX:g}")
    return float(value)


def entry(
    model: str, input: float, output: float,
    cache_read: float | None = None, cache_write: float | None = None,
) -> PriceEntry:  # fmt: skip
    """A validated entry; a cache price left out is the input price."""
    input = validate_price(input, "input")
    return PriceEntry(
        model=validate_model(model),
        input=input,
        output=validate_price(output, "output"),
        cache_read=input if cache_read is None else validate_price(cache_read, "cache_read"),
        cache_write=input if cache_write is None else validate_price(cache_write, "cache_write"),
    )


_NUMBERS = ("input", "output", "cache_read", "cache_write")


def parse_file(text: str | bytes) -> list[PriceEntry]:
    """A price file: `{"prices": [{"model", "input", "output", "cache_read"?,
    "cache_write"?}, …]}` (or the list alone). Raises InvalidArgument naming the entry."""
    try:
        document: Any = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument("file", f"is not JSON: {exc}") from None
    items = document.get("prices") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise InvalidArgument("file", 'must hold a list of prices (under "prices")')
    entries: dict[str, PriceEntry] = {}
    positions: dict[str, int] = {}  # each model's entry number, to name a duplicate's first
    for n, item in enumerate(items, 1):
        try:
            if not isinstance(item, dict):
                raise InvalidArgument("entry", "must be an object")
            unknown = set(item) - {"model", "input", "output", "cache_read", "cache_write"}
            if unknown:
                raise InvalidArgument(sorted(unknown)[0], "is not a price field")
            for field in ("model", "input", "output"):
                if field not in item:
                    raise InvalidArgument(field, "is required")
            numbers = {k: item[k] for k in _NUMBERS if k in item}
            for field, value in numbers.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidArgument(field, "must be a number")
            if not isinstance(item["model"], str):
                raise InvalidArgument("model", "must be a string")
            e = entry(item["model"], **numbers)
        except InvalidArgument as exc:
            raise InvalidArgument(f"prices[{n}].{exc.field}", exc.message) from None
        if e.model in positions:  # which one was meant? keeping either would be a guess
            raise InvalidArgument(
                f"prices[{n}].model", f"{e.model!r} is also prices[{positions[e.model]}]"
            )
        positions[e.model] = n
        entries[e.model] = e
    return list(entries.values())


def shipped() -> list[PriceEntry]:
    """The table the gateway ships."""
    return parse_file(SHIPPED.read_bytes())


def shipped_as_of() -> str:
    return str(json.loads(SHIPPED.read_bytes())["as_of"])
