#!/usr/bin/env bash
# The test command (the README's second command, and all that CI runs).
#
# On a fresh machine with only rustup and python3 it installs what the tests
# need into project-local places under target/ (the pinned toolchain and its
# wasm32-wasip2 target through rustup; Python tools into target/tools/venv;
# sarif-multitool, the SARIF 2.1.0 schema and action-validator into
# target/tools/), then
# checks, in order:
#
#   1. formatting        cargo fmt --all --check
#   2. lints             cargo clippy --workspace --all-targets -- -D warnings
#   3. the tests         cargo test --workspace (with the runner's fault
#                        points built in, for the crash tests)
#   4. pinned digests    the committed example manifests pin exactly the
#                        components a clean build produces (cordon pin --check)
#   5. a fresh clone     the README's first command on a clone of HEAD, twice,
#                        leaves `git status --porcelain` empty
#
# CORDON_TEST_SKIP_FRESH_CLONE=1 skips stage 5 (it builds the release runner)
# for quick local runs; CI never sets it. Extra arguments go to `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
started=$SECONDS
stage() { echo "== [$((SECONDS - started))s] $*"; }

stage "toolchain (rust-toolchain.toml) and the wasm32-wasip2 target"
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add wasm32-wasip2 >/dev/null

stage "cargo fetch: every package of the lock, for every platform"
# The architecture test reads `cargo metadata --offline`, which needs the
# packages of other platforms too (object_store's chrono pulls in macOS,
# Windows and Android time-zone crates that a Linux build never downloads).
cargo fetch --locked --quiet

stage "Python tools into $target/tools/venv"
venv="$target/tools/venv"
requirements="$root/tests/tools/requirements.txt"
if [ ! -x "$venv/bin/python3" ]; then
  python3 -m venv "$venv" || {
    echo "error: python3 cannot create a virtual environment" >&2
    echo "  fix: install the venv module (Debian: apt-get install python3-venv), then run ./test.sh again" >&2
    exit 1
  }
fi
# Reinstall only when the pinned list changed.
if ! cmp -s "$requirements" "$venv/.requirements"; then
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.requirements"
fi
# The tests find `bao`, `in-toto-verify`, `weed`, `zizmor` and `python3`
# (with jsonschema) here.
export PATH="$venv/bin:$PATH"

stage "sarif-multitool and the SARIF 2.1.0 schema into $target/tools/sarif-multitool"
multitool="$target/tools/sarif-multitool"
if [ ! -x "$multitool/Sarif.Multitool" ] || [ ! -f "$target/sarif-2.1.0.json" ]; then
  command -v npm >/dev/null || {
    echo "error: npm is needed once to fetch sarif-multitool and the SARIF 2.1.0 schema (@microsoft/sarif-multitool-linux)" >&2
    echo "  fix: install Node.js and npm, then run ./test.sh again" >&2
    exit 1
  }
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @microsoft/sarif-multitool-linux@5.7.0 >/dev/null)
  rm -rf "$multitool.tmp" && mkdir -p "$multitool.tmp"
  tar -xzf "$tmp/microsoft-sarif-multitool-linux-5.7.0.tgz" -C "$multitool.tmp" --strip-components=1
  chmod u+x "$multitool.tmp/Sarif.Multitool"
  cp "$multitool.tmp/sarif-2.1.0.json" "$target/sarif-2.1.0.json.tmp"
  mv "$target/sarif-2.1.0.json.tmp" "$target/sarif-2.1.0.json"
  rm -rf "$multitool" && mv "$multitool.tmp" "$multitool"
  rm -rf "$tmp"
fi

stage "action-validator into $target/tools/action-validator"
# Validates the exported GitHub Actions workflow against GitHub's schema
# (tests/e2e/store.rs); pinned like the other tools.
validator="$target/tools/action-validator"
if [ ! -x "$validator/node_modules/.bin/action-validator" ]; then
  command -v npm >/dev/null || {
    echo "error: npm is needed once to fetch @action-validator/cli" >&2
    echo "  fix: install Node.js and npm, then run ./test.sh again" >&2
    exit 1
  }
  rm -rf "$validator.tmp" && mkdir -p "$validator.tmp"
  npm install --silent --no-audit --no-fund --prefix "$validator.tmp" \
    @action-validator/cli@0.6.0 @action-validator/core@0.6.0 >/dev/null
  rm -rf "$validator" && mv "$validator.tmp" "$validator"
fi

stage "cargo fmt --all --check"
cargo fmt --all --check

# The crash tests stop the runner at chosen points of a step's commit; the
# points exist only with this feature (never in release builds). Lints see
# the same code.
features=(--features cordon/fault-injection)

stage "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --quiet --workspace --all-targets "${features[@]}" -- -D warnings

stage "cargo test --workspace"
cargo test --workspace "${features[@]}" "$@"

stage "committed manifests pin the components a clean build produces"
"$root/examples/ml-pipeline/build-components.sh" >/dev/null
"$target/debug/cordon" pin --check "$root"/examples/*/steps/*.toml

if [ "${CORDON_TEST_SKIP_FRESH_CLONE:-}" = 1 ]; then
  stage "fresh clone: skipped (CORDON_TEST_SKIP_FRESH_CLONE=1)"
else
  stage "the README's first command on a fresh clone of HEAD, twice"
  "$root/tests/fresh-clone.sh"
fi
stage "all checks passed"
