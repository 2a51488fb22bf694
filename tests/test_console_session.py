"""The console's sessions and its count of failed sign-ins, on their own (no browser, no
process): what they keep, for how long, and how much."""

from __future__ import annotations

from console.security import FailedSignins
from console.session import Sessions

HOUR = 3600.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_credential_keeps_its_newest_sessions_only() -> None:
    sessions = Sessions(HOUR, per_credential=3)
    cookies = [sessions.create("admin", "the-admin-credential")[1] for _ in range(4)]
    _, viewers = sessions.create("viewer", "the-viewer-credential")
    assert sessions.find(cookies[0]) is None  # the oldest, forgotten
    assert all(sessions.find(cookie) for cookie in cookies[1:])
    assert sessions.find(viewers) is not None  # another credential's are its own
    assert len(sessions) == 4


def test_sessions_in_all_are_capped_the_oldest_forgotten() -> None:
    sessions = Sessions(HOUR, overall=3)
    cookies = [sessions.create("admin", f"credential-{i}")[1] for i in range(5)]
    assert [sessions.find(cookie) is not None for cookie in cookies] == [
        False, False, True, True, True,
    ]  # fmt: skip
    assert len(sessions) == 3


def test_expired_sessions_are_forgotten_at_the_next_sign_in() -> None:
    clock = Clock()
    sessions = Sessions(HOUR, clock=clock)
    old = [sessions.create("admin", "credential")[1] for _ in range(3)]
    clock.now += HOUR / 2
    _, newer = sessions.create("admin", "credential")
    clock.now += HOUR / 2  # the first three have expired; the newer one has not
    sessions.create("viewer", "another")
    assert len(sessions) == 2  # without looking any of them up
    assert all(sessions.find(cookie) is None for cookie in old)
    assert sessions.find(newer) is not None


def test_a_dropped_session_is_gone_and_frees_its_credential_s_place() -> None:
    sessions = Sessions(HOUR, per_credential=1)
    session, cookie = sessions.create("admin", "credential")
    sessions.drop(session)
    assert sessions.find(cookie) is None and len(sessions) == 0
    _, again = sessions.create("admin", "credential")
    assert sessions.find(again) is not None


def test_a_cookie_that_is_not_ascii_finds_no_session() -> None:
    sessions = Sessions(HOUR)
    session, cookie = sessions.create("admin", "credential")
    sid = cookie.partition(".")[0]
    for forged in (f"{sid}.é", "é.é", f"{sid}.\udcff", "\ud800.x"):
        assert sessions.find(forged) is None
    assert sessions.find(cookie) is session


def test_failed_sign_ins_block_an_address_for_the_window() -> None:
    clock = Clock()
    failures = FailedSignins(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert not failures.blocked("192.0.2.1")
        failures.failed("192.0.2.1")
        clock.now += 10
    assert failures.blocked("192.0.2.1")
    assert not failures.blocked("192.0.2.2")  # another address tries on
    clock.now += 31  # the first failure is over a minute old: one more try
    assert not failures.blocked("192.0.2.1")
    failures.failed("192.0.2.1")
    assert failures.blocked("192.0.2.1")
    clock.now += 60
    assert not failures.blocked("192.0.2.1")
