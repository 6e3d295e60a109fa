"""A small blocking HTTP client over `wasi:http`, for steps with a
`[network]` grant (build against the `cordon:step/step-http` world; `cordon
build` does when the manifest has `[network]`). The runner checks every
request against the grant; a refused request raises `Refused`.

`GET` and `HEAD` follow redirects, a relative `Location` resolved per RFC
3986 (`urllib.parse.urljoin`). Natively, requests go to
`cordon_sdk.testing`, which answers the routes a test set and refuses every
other request, as the runner refuses an ungranted destination.

Put a secret in a header without holding it::

    token = secrets.get("deploy-token").http_header_placeholder()
    http.request("PUT", url, headers={"authorization": f"Bearer {token}"}, body=data)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from . import _runtime


class HttpError(Exception):
    """Why a request failed."""


class Refused(HttpError):
    """The runner refused the request (not in the grant, a secret sent to a
    host it is not bound to, or a limit reached); the record says which."""

    def __init__(self) -> None:
        super().__init__("request refused by the runner (see the step's record)")


class BadUrl(HttpError):
    """The URL is not `http(s)://host[:port]/path`."""


class TooManyRedirects(HttpError):
    """More redirects than the request allows."""


@dataclass
class Response:
    """A response: status, headers (names lower case) and the whole body."""

    status: int
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        """The first value of header `name`, as text."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v.decode("utf-8", "replace")
        return None


def request(
    method: str,
    url: str,
    headers: Optional[Dict[str, str]] = None,
    body: bytes = b"",
    redirects: int = 5,
) -> Response:
    """Sends a request and reads the whole response."""
    method = method.upper()
    hdrs = [(k.lower(), v.encode()) for k, v in (headers or {}).items()]
    follow = method in ("GET", "HEAD")
    for _ in range(redirects + 1):
        resp = _send_once(method, url, hdrs, bytes(body))
        location = resp.header("location")
        if follow and 300 <= resp.status < 400 and location is not None:
            url = urljoin(url, location.strip())
            continue
        return resp
    raise TooManyRedirects("too many redirects")


def get(url: str, headers: Optional[Dict[str, str]] = None) -> Response:
    """`GET url`."""
    return request("GET", url, headers)


def _send_once(method: str, url: str, headers: List[Tuple[str, bytes]], body: bytes) -> Response:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise BadUrl(f"not an http(s) URL: {url}")
    if not _runtime.IN_COMPONENT:
        from . import testing

        return testing._exchange(method, url, headers, body)
    return _wasi_send(method, parts, headers, body)


def _wasi_send(method, parts, headers, body) -> Response:
    from componentize_py_types import Err

    t = _runtime.imports("wasi_http_types")
    handler = _runtime.optional_import("outgoing_handler")
    if handler is None:
        raise HttpError(
            "this component has no wasi:http import: give the manifest a [network] grant "
            "and build it with `cordon build` (world cordon:step/step-http)"
        )
    streams = _runtime.imports("streams")
    methods = {
        "GET": t.Method_Get,
        "HEAD": t.Method_Head,
        "POST": t.Method_Post,
        "PUT": t.Method_Put,
        "DELETE": t.Method_Delete,
        "PATCH": t.Method_Patch,
        "OPTIONS": t.Method_Options,
    }
    fields = t.Fields.from_list(headers)
    req = t.OutgoingRequest(fields)
    req.set_method(methods[method]() if method in methods else t.Method_Other(method))
    req.set_scheme(t.Scheme_Https() if parts.scheme.lower() == "https" else t.Scheme_Http())
    req.set_authority(parts.netloc)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    req.set_path_with_query(target)
    out_body = req.body()
    try:
        pending = handler.handle(req, None)
    except Err as e:
        raise _failed(t, e.value) from None
    with out_body.write() as stream:
        for i in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[i : i + 4096])
    t.OutgoingBody.finish(out_body, None)
    while True:
        got = pending.get()
        if got is not None:
            break
        with pending.subscribe() as ready:
            ready.block()
    if isinstance(got, Err):
        raise HttpError("request failed: response taken twice")
    inner = got.value
    if isinstance(inner, Err):
        raise _failed(t, inner.value)
    resp = inner.value
    status = resp.status()
    with resp.headers() as h:
        entries = [(n.lower(), bytes(v)) for n, v in h.entries()]
    incoming = resp.consume()
    data = bytearray()
    with incoming.stream() as s:
        while True:
            try:
                data += s.blocking_read(64 * 1024)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise HttpError(f"request failed: reading the body: {e.value}") from None
    t.IncomingBody.finish(incoming)
    return Response(status, entries, bytes(data))


def _failed(t, code) -> HttpError:
    if isinstance(code, t.ErrorCode_HttpRequestDenied):
        return Refused()
    return HttpError(f"request failed: {type(code).__name__.removeprefix('ErrorCode_')}")
