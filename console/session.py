"""Sign-in sessions: kept in this process, named by a signed random id in an HttpOnly,
SameSite=Strict cookie. The credential stays on the server: the browser holds only the
id, and signing out forgets it here, so a copied cookie is dead after sign-out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

COOKIE = "aibridge_console"
# Before sign-in, the sign-in form's CSRF token is bound to this cookie's nonce.
SIGNIN_COOKIE = "aibridge_console_signin"


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
    def __init__(self, lifetime_seconds: float, secure_cookies: bool = False) -> None:
        self.lifetime = lifetime_seconds
        self.secure_cookies = secure_cookies
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}

    def create(self, role: str, credential: str) -> tuple[Session, str]:
        """A new session and the cookie value that names it."""
        self._forget_expired()
        session = Session(
            id=secrets.token_urlsafe(32),
            role=role,
            credential=credential,
            csrf=secrets.token_urlsafe(32),
            expires=time.monotonic() + self.lifetime,
        )
        self._sessions[session.id] = session
        return session, f"{session.id}.{self.sign(session.id)}"

    def find(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        sid, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature, self.sign(sid)):
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires <= time.monotonic():
            self._sessions.pop(sid, None)
            return None
        return session

    def drop(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def sign(self, value: str) -> str:
        digest = hmac.new(self._secret, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _forget_expired(self) -> None:
        now = time.monotonic()
        for sid in [s for s, session in self._sessions.items() if session.expires <= now]:
            del self._sessions[sid]
