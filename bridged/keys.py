"""Key failover: which of a provider's keys to try next.

A key rests when the upstream turns it away, and a later request tries it again:
- 429 rests it for the upstream's Retry-After (the rate limit is the provider's);
- 401 on a recorded endpoint rests it for a cooldown that doubles while it keeps
  failing (60 s to an hour by default) and is forgotten once the key is answered again;
- 403, and 401 on a pass-through endpoint (a restricted key may lack the scope to list
  models, say), rest nothing: they concern this request, so the request fails over to
  the next key and the key serves the others.
No single request can take a key away from every caller for longer than a cooldown.
Rests are by key id and outlive reloads: the provider's opinion of a key does not
change with the snapshot, and a replaced key has a new id.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

from bridged.routes import ProviderKey

MAX_COOLDOWN = 300.0  # longest rest a 429's Retry-After can ask for
UNAUTHORIZED_BACKOFF_STEPS = 6  # 60 s doubled six times is about an hour


class KeyHealth:
    def __init__(self, default_cooldown: float, unauthorized_cooldown: float = 60.0) -> None:
        self.default_cooldown = default_cooldown
        self.unauthorized_cooldown = unauthorized_cooldown
        self._rate_limited_until: dict[str, float] = {}
        self._unauthorized_until: dict[str, float] = {}
        self._unauthorized_streak: dict[str, int] = {}  # consecutive 401s, by key id

    def usable(self, keys: tuple[ProviderKey, ...]) -> list[ProviderKey]:
        """The keys not resting, in failover order."""
        if not self._rate_limited_until and not self._unauthorized_until:
            return list(keys)  # the usual case: nothing rests
        now = time.monotonic()
        return [
            k
            for k in keys
            if self._rate_limited_until.get(k.id, 0.0) <= now
            and self._unauthorized_until.get(k.id, 0.0) <= now
        ]

    def rate_limited(self, key: ProviderKey, headers: Mapping[str, str]) -> None:
        delay = retry_after_seconds(headers)
        if delay is None:
            delay = self.default_cooldown
        self._rate_limited_until[key.id] = time.monotonic() + min(max(delay, 0.0), MAX_COOLDOWN)

    def unauthorized(self, key: ProviderKey) -> float:
        """Rests a key the upstream answered 401; returns for how long it rests. The rest
        doubles only when a try after a rest fails again: the 401s of requests that were
        in flight together count as one."""
        now = time.monotonic()
        until = self._unauthorized_until.get(key.id, 0.0)
        if until > now:
            return until - now
        streak = self._unauthorized_streak.get(key.id, 0)
        self._unauthorized_streak[key.id] = streak + 1
        rest = self.unauthorized_cooldown * 2 ** min(streak, UNAUTHORIZED_BACKOFF_STEPS)
        self._unauthorized_until[key.id] = now + rest
        return rest

    def answered(self, key: ProviderKey) -> None:
        """The upstream took the key (neither 401 nor 429): its 401 streak is over."""
        if self._unauthorized_streak:
            self._unauthorized_streak.pop(key.id, None)
            self._unauthorized_until.pop(key.id, None)

    def rate_limit_retry_after(self, keys: tuple[ProviderKey, ...]) -> int | None:
        """Whole seconds until the first rate-limited key of `keys` may be tried again;
        None if none of them is resting for a rate limit."""
        now = time.monotonic()
        rests = [t - now for k in keys if (t := self._rate_limited_until.get(k.id, 0.0)) > now]
        return max(1, math.ceil(min(rests))) if rests else None

    def forget_expired(self) -> None:
        """Keeps the maps small (after each snapshot): rests that are over go, and a 401
        streak no request has tried for as long as the longest rest."""
        now = time.monotonic()
        longest = self.unauthorized_cooldown * 2**UNAUTHORIZED_BACKOFF_STEPS
        self._rate_limited_until = {k: t for k, t in self._rate_limited_until.items() if t > now}
        self._unauthorized_until = {
            k: t for k, t in self._unauthorized_until.items() if t + longest > now
        }
        self._unauthorized_streak = {
            k: n for k, n in self._unauthorized_streak.items() if k in self._unauthorized_until
        }


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
