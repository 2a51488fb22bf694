"""Cloud credentials for tests: real-looking AWS access keys and Google service-account
JSON with a fresh RSA key, each one new (common/clouds.py reads them)."""

from __future__ import annotations

import secrets
import string
import uuid

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat


def aws_credential(**fields: str) -> dict[str, str]:
    """A fresh, real-looking AWS credential (an access key id of 20, a secret of 40)."""
    upper = string.ascii_uppercase + string.digits
    credential = {
        "access_key_id": "AKIA" + "".join(secrets.choice(upper) for _ in range(16)),
        "secret_access_key": secrets.token_urlsafe(30)[:40],
    }
    return credential | fields


def service_account(project_id: str = "gateway-proj-1") -> dict[str, str]:
    """A service-account JSON as Google Cloud writes it, with a fresh RSA 2048 key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    account = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"gw-{uuid.uuid4().hex[:8]}@{project_id or 'p'}.iam.gserviceaccount.com",
        "client_id": "1" + "".join(secrets.choice(string.digits) for _ in range(20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "universe_domain": "googleapis.com",
    }
    if not project_id:
        del account["project_id"]
    return account
