"""Key failover: which of a provider's keys to try next.

A 429 rests a key for the upstream's Retry-After (cooldowns outlive reloads: the rate
limit is the provider's, not the snapshot's). A 401/403 takes a key out until the next
snapshot, which may carry a fixed key.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Iterator, Mapping

from bridged.routes import ProviderKey

MAX_COOLDOWN = 300.0


class KeyHealth:
    def __init__(self, default_cooldown: float) -> None:
        self.default_cooldown = default_cooldown
        self._resting_until: dict[str, float] = {}
        self._revoked: set[str] = set()  # refused by the upstream; cleared by a new snapshot

    def new_snapshot(self) -> None:
        self._revoked.clear()

    def usable(self, keys: tuple[ProviderKey, ...]) -> Iterator[ProviderKey]:
        now = time.monotonic()
        for key in keys:
            if key.id in self._revoked:
                continue
            if self._resting_until.get(key.id, 0.0) > now:
                continue
            yield key

    def rate_limited(self, key: ProviderKey, headers: Mapping[str, str]) -> None:
        delay = retry_after_seconds(headers)
        if delay is None:
            delay = self.default_cooldown
        self._resting_until[key.id] = time.monotonic() + min(max(delay, 0.0), MAX_COOLDOWN)

    def refused(self, key: ProviderKey) -> None:
        self._revoked.add(key.id)

    def resting(self, keys: tuple[ProviderKey, ...]) -> bool:
        now = time.monotonic()
        return any(
            k.id not in self._revoked and self._resting_until.get(k.id, 0.0) > now for k in keys
        )

    def retry_after(self, keys: tuple[ProviderKey, ...]) -> int:
        """Whole seconds until the first resting key of `keys` may be tried again."""
        now = time.monotonic()
        waits = [
            self._resting_until[k.id] - now
            for k in keys
            if k.id not in self._revoked and self._resting_until.get(k.id, 0.0) > now
        ]
        return max(1, math.ceil(min(waits))) if waits else 1


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds or an HTTP date; OpenAI's retry-after-ms is more precise."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()
