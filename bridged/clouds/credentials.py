"""The provider's credential on a cloud call: Bedrock requests signed with SigV4
(botocore's signer), Vertex requests with an access token google-auth mints from the
key's service account at its own token_uri.

Tokens are cached per key until shortly before they expire (google-auth's threshold,
3 min 45 s), one mint at a time per key however many requests wait for it. Minting is
blocking HTTP (google-auth's requests transport): it runs in a thread. Credentials are
kept by key id, which a changed key does not keep, and dropped when a reload removes
their key.

botocore's signer and google-auth take about 0.1 s each to import: they are imported
when a first cloud call needs them, not by every bridged at its start.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from yarl import URL

from bridged.routes import ProviderKey, Route
from common.clouds import BEDROCK, aws_credential, service_account

if TYPE_CHECKING:
    import requests
    from botocore.credentials import Credentials as AwsCredentials


SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
SIGNATURE_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


class KeyRefused(Exception):
    """The cloud would not give this key's credential a token: the next key may serve."""


class TokenEndpointUnreachable(Exception):
    pass


class CloudCredentials:
    def __init__(self, timeout: float, ca_file: str | None = None) -> None:
        self._timeout = timeout
        self._ca_file = ca_file
        self._aws: dict[str, AwsCredentials] = {}
        self._vertex: dict[str, _VertexToken] = {}
        self._session: requests.Session | None = None

    async def headers(
        self, route: Route, key: ProviderKey, method: str, url: URL, body: bytes | bytearray
    ) -> dict[str, str]:
        """What authorizes this call with `key`; raises KeyRefused or
        TokenEndpointUnreachable (Vertex)."""
        if route.type == BEDROCK:
            return self._signature(route, key, method, url, body)
        return {"Authorization": f"Bearer {await self._token(key)}"}

    def refused(self, key: ProviderKey, sent: dict[str, str]) -> bool:
        """The cloud answered 401 to the token `sent` with `key`: it is forgotten (unless
        another request has already replaced it). True for a Vertex key, whose next try
        gets a token that was not refused."""
        token = self._vertex.get(key.id)
        if token is None:
            return False
        token.forget(sent.get("Authorization", "").removeprefix("Bearer "))
        return True

    def keep_only(self, keys: Iterable[str]) -> None:
        """After a reload: the credentials of keys no route has any more go."""
        wanted = set(keys)
        self._aws = {k: v for k, v in self._aws.items() if k in wanted}
        self._vertex = {k: v for k, v in self._vertex.items() if k in wanted}

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def _signature(
        self, route: Route, key: ProviderKey, method: str, url: URL, body: bytes | bytearray
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials as AwsCredentials

        credentials = self._aws.get(key.id)
        if credentials is None:
            aws = aws_credential(key.secret)  # checked when the route was built
            credentials = AwsCredentials(
                aws.access_key_id, aws.secret_access_key, aws.session_token or None
            )
            self._aws[key.id] = credentials
        # Signed: host, x-amz-date (and the session token), and the body's hash; the
        # other headers may change on the way without voiding the signature.
        request = AWSRequest(method=method, url=str(url), data=bytes(body))
        SigV4Auth(credentials, "bedrock", route.region).add_auth(request)
        return {h: request.headers[h] for h in SIGNATURE_HEADERS if h in request.headers}

    async def _token(self, key: ProviderKey) -> str:
        token = self._vertex.get(key.id)
        if token is None:
            token = self._vertex[key.id] = _VertexToken(key.secret)
        return await token.get(self._mint_transport)

    def _mint_transport(self) -> Any:
        import requests

        if self._session is None:
            session = requests.Session()
            session.trust_env = False  # like bridged's other upstream calls: no proxy from env
            if self._ca_file is not None:
                session.verify = self._ca_file
            self._session = session
        return _transport_class()(self._session, self._timeout)


class _VertexToken:
    def __init__(self, secret: str) -> None:
        from google.oauth2 import service_account as google_service_account

        info = service_account(secret)  # checked when the route was built
        self._credentials = google_service_account.Credentials.from_service_account_info(
            info, scopes=SCOPES
        )
        self._lock = asyncio.Lock()

    async def get(self, transport: Any) -> str:
        if self._credentials.valid:
            return str(self._credentials.token)
        async with self._lock:  # one mint for every request waiting on this key
            if not self._credentials.valid:
                await asyncio.to_thread(self._mint, transport())
            return str(self._credentials.token)

    def _mint(self, transport: Any) -> None:
        from google.auth import exceptions as google_errors

        try:
            self._credentials.refresh(transport)
        except google_errors.TransportError as exc:
            raise TokenEndpointUnreachable(type(exc).__name__) from None
        except google_errors.RefreshError as exc:
            # Its message is the token endpoint's answer: an error code, never a secret.
            raise KeyRefused(str(exc)[:300]) from None

    def forget(self, refused: str) -> None:
        # Requests that sent the same token get their 401s one after another: only the
        # first forgets it, and the token minted since is kept.
        if self._credentials.token == refused:
            self._credentials.token = None


@functools.cache
def _transport_class() -> Any:
    """google-auth's transport with bridged's connect timeout (its own is 120 s); made on
    first use, since it subclasses what google-auth defines."""
    from google.auth.transport import requests as google_requests

    class Transport(google_requests.Request):
        def __init__(self, session: Any, timeout: float) -> None:
            super().__init__(session)
            self.timeout = timeout

        def __call__(self, url: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = self.timeout
            return super().__call__(url, method, *args, **kwargs)

    return Transport
