"""Secret handles. The value of a secret stays in the runner; a step can
only ask the runner to use it in the ways its manifest grants.

Natively (a step's unit tests) the runner's side is `cordon_sdk.testing`:
grant a secret there with `testing.grant_secret` and the same calls compute
the same tags the runner would.
"""

from __future__ import annotations

from . import _runtime


class SecretError(Exception):
    """Why the runner refused a secret operation. Every refusal is recorded."""


class NotGranted(SecretError):
    """The manifest grants no secret of this name."""

    def __init__(self) -> None:
        super().__init__("secret not granted by the step's manifest")


class Denied(SecretError):
    """The secret is granted, but not for this use."""

    def __init__(self) -> None:
        super().__init__("this use of the secret is not granted")


class Unavailable(SecretError):
    """The provider could not supply the secret (the message never holds
    its value)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"secret unavailable: {why}")
        self.why = why


def _error(value: object) -> SecretError:
    kind = type(value).__name__
    if kind.endswith("NotGranted"):
        return NotGranted()
    if kind.endswith("Denied"):
        return Denied()
    return Unavailable(str(getattr(value, "value", value)))


def _call(method, *args):
    """Calls a generated binding, turning its `Err` into a SecretError.
    (The native double raises SecretErrors itself.)"""
    if not _runtime.IN_COMPONENT:
        return method(*args)
    from componentize_py_types import Err

    try:
        return method(*args)
    except Err as e:
        raise _error(e.value) from None


class Secret:
    """A handle to a granted secret. `repr` shows the name only."""

    def __init__(self, handle: object, name: str) -> None:
        self._handle = handle
        self._name = name

    def __repr__(self) -> str:
        return f"Secret({self._name!r})"

    @property
    def name(self) -> str:
        """The name the secret was granted under."""
        return self._name

    def hmac_sha256(self, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` keyed with the secret (needs the `hmac`
        use). Returns the 32-byte tag."""
        return bytes(_call(self._handle.hmac_sha256, bytes(data)))

    def sign_ed25519(self, data: bytes) -> bytes:
        """Ed25519 signature of `data` with the secret as seed (needs the
        `sign` use). Returns the 64-byte signature."""
        return bytes(_call(self._handle.sign_ed25519, bytes(data)))

    def public_key_ed25519(self) -> bytes:
        """The 32-byte public key that verifies `sign_ed25519` signatures
        (needs the `sign` use)."""
        return bytes(_call(self._handle.public_key_ed25519))

    def reveal(self) -> bytes:
        """The secret's bytes (needs the `reveal` use). The runner still
        redacts the value from the step's output and fails the step if an
        output file contains it."""
        return bytes(_call(self._handle.reveal))

    def http_header_placeholder(self) -> str:
        """An opaque placeholder for the value (needs the `http-header`
        use): put it in a request header and the runner substitutes the
        value only on a request to a host the manifest binds it to."""
        return str(_call(self._handle.http_header_placeholder))


def get(name: str) -> Secret:
    """Opens the secret granted under `name`; raises NotGranted if the
    manifest grants no such secret."""
    if _runtime.IN_COMPONENT:
        wit = _runtime.imports("secrets")
        return Secret(_call(wit.get, name), name)
    from . import testing

    return Secret(testing._secret_handle(name), name)
