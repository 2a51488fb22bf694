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
        now = time.monotonic()  # forget cooldowns that are over, so the map stays small
        self._resting_until = {k: t for k, t in self._resting_until.items() if t > now}

    def usable(self, keys: tuple[ProviderKey, ...]) -> Iterator[ProviderKey]:
        now = time.monotonic()
        for key in keys:
            if key.id not in self._revoked and self._rest_left(key, now) <= 0:
                yield key

    def rate_limited(self, key: ProviderKey, headers: Mapping[str, str]) -> None:
        delay = retry_after_seconds(headers)
        if delay is None:
            delay = self.default_cooldown
        self._resting_until[key.id] = time.monotonic() + min(max(delay, 0.0), MAX_COOLDOWN)

    def refused(self, key: ProviderKey) -> None:
        self._revoked.add(key.id)

    def resting(self, keys: tuple[ProviderKey, ...]) -> bool:
        return bool(self._rests(keys))

    def retry_after(self, keys: tuple[ProviderKey, ...]) -> int:
        """Whole seconds until the first resting key of `keys` may be tried again."""
        rests = self._rests(keys)
        return max(1, math.ceil(min(rests))) if rests else 1

    def _rest_left(self, key: ProviderKey, now: float) -> float:
        return self._resting_until.get(key.id, 0.0) - now

    def _rests(self, keys: tuple[ProviderKey, ...]) -> list[float]:
        """Seconds of rest left for each of `keys` that is resting (refused ones aside)."""
        now = time.monotonic()
        left = [self._rest_left(k, now) for k in keys if k.id not in self._revoked]
        return [r for r in left if r > 0]


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
