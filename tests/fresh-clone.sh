#!/usr/bin/env bash
# Proves the README's first command on a fresh clone: it runs the example
# pipeline end to end (real grants, secret uses, signed records, verify),
# twice in a row, and leaves the checkout exactly as cloned.
#
# The clone is of HEAD (committed work only). It shares this checkout's
# target directory, so dependencies already built are reused, and gets a
# secrets home of its own, as a new user's machine would: the demo secrets
# and the signing key are created from nothing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d "${TMPDIR:-/tmp}/cordon-fresh-clone.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export CORDON_SECRETS_HOME="$work/home"

git clone --quiet --no-hardlinks "$root" "$work/cordon"
clone="$work/cordon"
for round in 1 2; do
  echo "-- fresh clone: run $round of examples/ml-pipeline/run.sh"
  log="$work/run-$round.log"
  if ! "$clone/examples/ml-pipeline/run.sh" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "error: examples/ml-pipeline/run.sh failed on a fresh clone (run $round); the log is above" >&2
    exit 1
  fi
  # The promotion into prod: refused first (prod's reviewer approved
  # nothing yet), then accepted, then consumed by a prod step.
  grep -q "refused; nothing was written into \`prod\`" "$log" || {
    tail -n 40 "$log"
    echo "error: run $round did not show the refused promotion into prod" >&2
    exit 1
  }
  grep -q "cordon: promoted /model of step \`train\`" "$log" || {
    tail -n 40 "$log"
    echo "error: run $round did not show the accepted promotion into prod" >&2
    exit 1
  }
  grep -q "signatures, chain and outputs hold" "$log" || {
    tail -n 20 "$log"
    echo "error: run $round did not end with a verified chain" >&2
    exit 1
  }
  dirty="$(git -C "$clone" status --porcelain --untracked-files=all)"
  if [ -n "$dirty" ]; then
    echo "$dirty"
    echo "error: examples/ml-pipeline/run.sh changed the checkout (run $round); every file it writes must be ignored or outside the repository" >&2
    exit 1
  fi
done
grep -q "come from the cache\|cache hit\|cached" "$work/run-2.log" || {
  echo "error: the second run of the second round served nothing from the cache" >&2
  exit 1
}
echo "-- fresh clone: both runs passed, verified, and left git status clean"
