"""Money as the admin clients (aibridgectl, the console) print it: USD with a $, cents
always, and more decimals only when the amount has them (a price of $0.075 per million
tokens, not $0.07)."""

from __future__ import annotations

MAX_DECIMALS = 6


def usd(value: float) -> str:
    text = f"{value:,.{MAX_DECIMALS}f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"
