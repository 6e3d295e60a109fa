#!/usr/bin/env bash
# Builds the example's step components (wasm32-wasip2, release) and copies
# them to components/, where the manifests in steps/ name them. The build
# is reproducible (pinned toolchain, Cargo.lock, release profile; see
# docs/reproducible-builds.md), so the digests committed in steps/*.toml are
# the digests this produces.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
echo "== building the step components (wasm32-wasip2)"
# The same separate target directory the tests' artifact build uses, so
# either build warms the other. Host-only settings must not reach it.
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
  CARGO_TARGET_DIR="$target/wasm-steps" cargo build --release --target wasm32-wasip2 \
  -p cordon-step-csv-validate -p cordon-step-pseudonymize -p cordon-step-train -p cordon-step-sign-model
mkdir -p "$here/components"
for c in csv-validate pseudonymize train evaluate sign-model; do
  cp "$target/wasm-steps/wasm32-wasip2/release/$c.wasm" "$here/components/"
done
