"""Native test doubles for the runner's side of `secrets`, `report` and
`http`, so a step's logic is unit-tested with plain `python -m unittest`.

They behave as the runner does where a step can tell: a secret not granted
raises `NotGranted`, a use not granted `Denied`; tags are the real
HMAC-SHA256 of the value (signatures the real ed25519, when the
`cryptography` package is installed); a request nobody answers raises
`Refused`, like a request to a destination the manifest does not grant.

    from cordon_sdk import testing
    testing.reset()
    testing.grant_secret("report-key", b"0123456789abcdef", ["hmac"])
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
from dataclasses import dataclass
from typing import Dict, Iterable, List, Tuple

from .http import Refused, Response
from .secrets import Denied, NotGranted, Unavailable
from .step import Context, Mount

USES = ("hmac", "sign", "reveal", "http-header")

_secrets: Dict[str, Tuple[bytes, Tuple[str, ...]]] = {}
_routes: Dict[Tuple[str, str], Response] = {}
_sent: List["SentRequest"] = []
_metrics: Dict[str, float] = {}
_annotations: Dict[str, str] = {}


@dataclass
class SentRequest:
    """A request the step sent (headers as the step set them: a
    placeholder stays a placeholder)."""

    method: str
    url: str
    headers: List[Tuple[str, bytes]]
    body: bytes


def reset() -> None:
    """Forgets every grant, route, sent request and reported fact."""
    _secrets.clear()
    _routes.clear()
    _sent.clear()
    _metrics.clear()
    _annotations.clear()


def grant_secret(name: str, value: bytes | str, uses: Iterable[str]) -> None:
    """Grants secret `name` holding `value` for `uses` (`hmac`, `sign`,
    `reveal`, `http-header`), as a manifest's `[[secret]]` would."""
    uses = tuple(uses)
    for u in uses:
        if u not in USES:
            raise ValueError(f"unknown use {u!r}; one of {', '.join(USES)}")
    if isinstance(value, str):
        value = value.encode()
    _secrets[name] = (bytes(value), uses)


def respond(method: str, url: str, status: int = 200, body: bytes = b"", headers=None) -> None:
    """Answers `method url` (the exact URL) from now on."""
    hdrs = [(k.lower(), v.encode()) for k, v in (headers or {}).items()]
    _routes[(method.upper(), url)] = Response(status, hdrs, bytes(body))


def sent() -> List[SentRequest]:
    """Every request sent, oldest first (refused ones too)."""
    return list(_sent)


def metrics() -> Dict[str, float]:
    """The metrics reported so far."""
    return dict(_metrics)


def annotations() -> Dict[str, str]:
    """The annotations reported so far."""
    return dict(_annotations)


def placeholder(name: str) -> str:
    """The placeholder the double hands out for secret `name`."""
    return f"cordon-test-placeholder:{name}"


def context(args: Iterable[str] = (), mounts: Iterable[Tuple[str, str, bool]] = ()) -> Context:
    """A Context with these arguments and (guest, path, writable) mounts."""
    return Context(list(args), [Mount(g, p, w) for g, p, w in mounts])


class _Handle:
    def __init__(self, name: str) -> None:
        self._name = name

    def _value(self, use: str) -> bytes:
        if self._name not in _secrets:
            raise NotGranted()
        value, uses = _secrets[self._name]
        if use not in uses:
            raise Denied()
        return value

    def hmac_sha256(self, data: bytes) -> bytes:
        return _hmac.new(self._value("hmac"), data, hashlib.sha256).digest()

    def _signing_key(self):
        value = self._value("sign")
        seed = None
        if len(value) == 64:
            try:
                seed = bytes.fromhex(value.decode("ascii"))
            except ValueError:
                seed = None
        if seed is None and len(value) == 32:
            seed = value
        if seed is None:
            raise Unavailable("the secret is not an ed25519 seed (expected 64 hex characters or 32 raw bytes)")
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        except ImportError:
            raise Unavailable("the native test double signs with the `cryptography` package; pip install it") from None
        return Ed25519PrivateKey.from_private_bytes(seed)

    def sign_ed25519(self, data: bytes) -> bytes:
        return self._signing_key().sign(data)

    def public_key_ed25519(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._signing_key().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def reveal(self) -> bytes:
        return self._value("reveal")

    def http_header_placeholder(self) -> str:
        self._value("http-header")
        return placeholder(self._name)


def _secret_handle(name: str) -> _Handle:
    if name not in _secrets:
        raise NotGranted()
    return _Handle(name)


def _exchange(method: str, url: str, headers, body: bytes) -> Response:
    _sent.append(SentRequest(method, url, list(headers), body))
    resp = _routes.get((method, url))
    if resp is None:
        raise Refused()
    return resp

