"""proxyd's certificate authority and the leaf certificates it makes for provider hosts.

Leaves satisfy strict verifiers: SAN (DNS or IP), AKI matching the CA's SKI, SKI,
serverAuth, at most 397 days. One key serves every leaf (as mitmproxy does): making a
key per host would cost more than it protects, since the CA key is on the same disk.
Contexts are cached per host with a bound.
"""

from __future__ import annotations

import collections
import datetime
import fcntl
import ipaddress
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from proxyd import metrics

log = logging.getLogger(__name__)

CA_CERT_FILE = "proxyd-ca.pem"
CA_KEY_FILE = "proxyd-ca.key"
LEAF_VALIDITY = datetime.timedelta(days=397)
BACKDATE = datetime.timedelta(days=1)


class CertificateAuthority:
    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cache_size: int):
        self.cert = cert
        self._key = key
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._cache: collections.OrderedDict[str, ssl.SSLContext] = collections.OrderedDict()
        self._cache_size = cache_size
        self._ca_ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(
        cls, cert_path: Path | None, key_path: Path | None, state_dir: Path, cache_size: int
    ) -> CertificateAuthority:
        if cert_path is None or key_path is None:
            cert_path, key_path = state_dir / CA_CERT_FILE, state_dir / CA_KEY_FILE
            _create_once(cert_path, key_path)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the proxy CA key must be an EC key")
        return cls(cert, key, cache_size)

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context presenting a leaf for `host` (cached, LRU)."""
        context = self._cache.get(host)
        if context is not None:
            self._cache.move_to_end(host)
            return context
        context = self._make_context(host)
        self._cache[host] = context
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
            metrics.LIMIT_HITS.labels("certificate_cache").inc()
        return context

    @property
    def cached(self) -> int:
        return len(self._cache)

    def _make_context(self, host: str) -> ssl.SSLContext:
        leaf = self._issue(host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.set_alpn_protocols(["http/1.1"])
        # One TLS 1.3 ticket per handshake, not OpenSSL's two: a resuming client uses one,
        # and each costs the handshake about 35 us (issue 17: 280 us -> 245 us).
        context.num_tickets = 1
        # ssl loads certificates from files only: a private directory, removed at once.
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "leaf.pem"
            path.write_bytes(
                leaf.public_bytes(serialization.Encoding.PEM)
                + self.cert_pem
                + self._leaf_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(path)
        return context

    def _issue(self, host: str) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        public_key = self._leaf_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + LEAF_VALIDITY)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ca_ski),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )


def _create_once(cert_path: Path, key_path: Path) -> None:
    """Generates the CA on first start; a lock keeps processes starting together in step."""
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(cert_path.parent / ".proxyd-ca.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cert_path.exists() and key_path.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _self_signed_ca(key)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        log.info("generated the proxy CA in %s", cert_path)


def _self_signed_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aibridge"),
            x509.NameAttribute(NameOID.COMMON_NAME, "aibridge proxyd CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """EC keys sign: the leaf its handshakes, the CA also certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
        crl_sign=signs_certificates, encipher_only=False, decipher_only=False,
    )  # fmt: skip
