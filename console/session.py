"""Sign-in sessions: kept in this process, named by a signed random id in an HttpOnly,
SameSite=Strict cookie. The credential stays on the server: the browser holds only the
id, and signing out forgets it here, so a copied cookie is dead after sign-out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "aibridge_console"
# Before sign-in, the sign-in form's CSRF token is bound to this cookie's nonce.
SIGNIN_COOKIE = "aibridge_console_signin"
# Sessions kept at most per credential, and in all; beyond, the oldest is forgotten (a
# script signing in again and again cannot fill the process).
PER_CREDENTIAL = 50
OVERALL = 10_000


def matches(presented: str, expected: str) -> bool:
    """`presented` (a cookie's or a form's, anything a client sends) is `expected`, in
    constant time. As bytes: compare_digest refuses a str that is not ASCII."""
    return hmac.compare_digest(_bytes(presented), _bytes(expected))


def _bytes(text: str) -> bytes:
    # surrogatepass: a header's bytes that were not UTF-8 come as lone surrogates.
    return text.encode("utf-8", "surrogatepass")


@dataclass
class Session:
    id: str
    role: str  # "admin" or "viewer"
    credential: str
    csrf: str
    expires: float
    # Messages for the next page shown, and a new token's plaintext until it is shown once.
    flashes: list[tuple[str, str]] = field(default_factory=list)
    shown_once: dict[str, str] = field(default_factory=dict)

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def flash(self, message: str, kind: str = "info") -> None:
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class Sessions:
    """The live sessions, oldest first: each lives as long as every other, so the oldest
    is also the first to expire."""

    def __init__(
        self,
        lifetime_seconds: float,
        secure_cookies: bool = False,
        *,
        per_credential: int = PER_CREDENTIAL,
        overall: int = OVERALL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime_seconds
        self.secure_cookies = secure_cookies
        self.per_credential = per_credential
        self.overall = overall
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        # OrderedDicts: the oldest found and removed in O(1), however many went before.
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # by id
        self._by_credential: dict[str, OrderedDict[str, None]] = {}  # its sessions' ids

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, role: str, credential: str) -> tuple[Session, str]:
        """A new session and the cookie value that names it."""
        self._forget_expired()
        mine = self._by_credential.get(credential, OrderedDict())
        if len(mine) >= self.per_credential:
            self.drop(self._sessions[next(iter(mine))])
        if len(self._sessions) >= self.overall:
            self.drop(next(iter(self._sessions.values())))
        session = Session(
            id=secrets.token_urlsafe(32),
            role=role,
            credential=credential,
            csrf=secrets.token_urlsafe(32),
            expires=self._clock() + self.lifetime,
        )
        self._sessions[session.id] = session
        self._by_credential.setdefault(credential, OrderedDict())[session.id] = None
        return session, f"{session.id}.{self.sign(session.id)}"

    def find(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        sid, _, signature = cookie.partition(".")
        if not matches(signature, self.sign(sid)):
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires <= self._clock():
            if session is not None:
                self.drop(session)
            return None
        return session

    def drop(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        mine = self._by_credential.get(session.credential, OrderedDict())
        mine.pop(session.id, None)
        if not mine:
            self._by_credential.pop(session.credential, None)

    def sign(self, value: str) -> str:
        digest = hmac.new(self._secret, _bytes(value), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _forget_expired(self) -> None:
        """From the oldest on, until one is live: the expired ones since the last call."""
        now = self._clock()
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.expires > now:
                return
            self.drop(oldest)
