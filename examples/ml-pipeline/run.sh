#!/usr/bin/env bash
# Runs the example churn-model pipeline end to end in the `dev` environment:
# builds the runner and the step components, pins the components' digests
# into the manifests, provides the demo secret, runs the pipeline, then runs
# it again to show the action cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
echo "== building the cordon runner"
cargo build --release -p cordon
echo "== building the step components (wasm32-wasip2)"
CARGO_TARGET_DIR="$root/target/wasm-steps" cargo build --release --target wasm32-wasip2 \
  -p cordon-step-csv-validate -p cordon-step-pseudonymize -p cordon-step-train -p cordon-step-sign-model
mkdir -p "$here/components"
for c in csv-validate pseudonymize train evaluate sign-model; do
  cp "$root/target/wasm-steps/wasm32-wasip2/release/$c.wasm" "$here/components/"
done
cordon="$root/target/release/cordon"
for m in "$here"/steps/*.toml; do "$cordon" pin "$m"; done

config="$here/cordon.toml"
# The demo secrets live in the embedded encrypted store of the `dev`
# environment (outside the repository; see docs/secrets.md). Create them
# once, with random values nobody ever sees.
# The listing is read whole before it is searched: `grep -q` stops at the
# first match, and under `pipefail` the listing's broken pipe would then
# read as "absent".
existing="$("$cordon" secret list --env dev --config "$config" 2>/dev/null || true)"
for name in pseudonym-key model-signing-key; do
  if ! grep -q "^$name\b" <<<"$existing"; then
    echo "== creating demo secret $name in the dev store (random value)"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | "$cordon" secret set "$name" --env dev --config "$config"
  fi
done
# Records of the dev environment are signed with its own key.
if [ ! -f "$here/keys/dev.key" ]; then
  echo "== generating the dev record-signing key"
  "$cordon" key generate --env dev --config "$config"
fi

echo "== cordon plan"
"$cordon" plan "$here/pipeline.toml" --env dev
echo "== cordon check (policy; cordon run checks too, and runs nothing on a violation)"
"$cordon" check "$here/pipeline.toml" --env dev
echo "== cordon run (first run)"
"$cordon" run "$here/pipeline.toml" --env dev --report json="$here/.cordon/last-run.json"
echo "== cordon run (second run: unchanged steps come from the cache)"
"$cordon" run "$here/pipeline.toml" --env dev
echo "== model metrics"
cat "$here/data/dev/evaluation/metrics.json"
echo "== verifying every record (signatures, chain, outputs on disk)"
(cd "$here" && "$cordon" verify --state "$here/.cordon")
