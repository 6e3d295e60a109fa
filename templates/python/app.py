"""`{{name}}`: a Cordon step in Python.

Summarizes every file in its input mount (files, lines, bytes) into
`summary.json` in its output mount, tags the summary with HMAC-SHA256 under
a secret it never sees (`summary.json.hmac`), and reports the counts as
metrics in its execution record.

    {{name}} [--key SECRET]     (default: summary-key)
"""

import json
import os

import cordon_sdk as cordon


def summarize(directory: str) -> dict:
    """Counts the regular files directly in `directory`, their lines and bytes."""
    summary = {"files": 0, "lines": 0, "bytes": 0}
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        summary["files"] += 1
        summary["bytes"] += len(data)
        summary["lines"] += data.count(b"\n")
    return summary


def step(ctx: cordon.Context) -> None:
    """The step: reads /in, writes /out (as the manifest mounts them)."""
    summary = summarize(ctx.mount("/in").path)
    text = (json.dumps(summary, sort_keys=True) + "\n").encode()
    # The runner computes the tag; the key stays in the runner.
    key = cordon.secrets.get(ctx.option("--key") or "summary-key")
    out = ctx.output().path
    with open(os.path.join(out, "summary.json"), "wb") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json.hmac"), "w") as f:
        f.write(key.hmac_sha256(text).hex() + "\n")
    for name, value in summary.items():
        cordon.report.metric(name, value)
    print(f"summarized {summary['files']} files ({summary['lines']} lines)")


class Run:
    """The component's `wasi:cli/run` export (componentize-py finds it by name)."""

    def run(self) -> None:
        cordon.run(step)
