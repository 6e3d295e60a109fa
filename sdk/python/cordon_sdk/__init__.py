"""cordon-sdk: what a Python Cordon step uses.

A Python step is a component built by componentize-py from the
`cordon:step/step` world (`cordon build` runs it). Its module defines a
class `Run` whose `run` method is the component's `wasi:cli/run` export::

    import cordon_sdk as cordon

    def step(ctx: cordon.Context) -> None:
        rows = open(f"{ctx.mount('/in').path}/rows.csv").read().splitlines()
        tag = cordon.secrets.get(ctx.option("--key") or "report-key").hmac_sha256(b"...")
        cordon.report.metric("rows", len(rows))

    class Run:
        def run(self) -> None:
            cordon.run(step)

Errors match the Rust SDK's: `secrets.NotGranted`, `secrets.Denied`,
`secrets.Unavailable`; `http.Refused`, `http.BadUrl`, `http.TooManyRedirects`;
`MountError`.
"""

from . import http, report, secrets, testing
from .step import Context, Mount, MountError, run

__all__ = ["Context", "Mount", "MountError", "http", "report", "run", "secrets", "testing"]
