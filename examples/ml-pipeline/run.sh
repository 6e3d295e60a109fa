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
  -p cordon-step-csv-validate -p cordon-step-pseudonymize -p cordon-step-train
mkdir -p "$here/components"
for c in csv-validate pseudonymize train evaluate; do
  cp "$root/target/wasm-steps/wasm32-wasip2/release/$c.wasm" "$here/components/"
done
cordon="$root/target/release/cordon"
for m in "$here"/steps/*.toml; do "$cordon" pin "$m"; done

if [ -z "${CORDON_SECRET_PSEUDONYM_KEY:-}" ]; then
  echo "== no CORDON_SECRET_PSEUDONYM_KEY set: using a demo key for this run"
  export CORDON_SECRET_PSEUDONYM_KEY="demo-pseudonym-key-$(whoami)"
fi

echo "== cordon plan"
"$cordon" plan "$here/pipeline.toml" --env dev
echo "== cordon run (first run)"
"$cordon" run "$here/pipeline.toml" --env dev --report json="$here/.cordon/last-run.json"
echo "== cordon run (second run: unchanged steps come from the cache)"
"$cordon" run "$here/pipeline.toml" --env dev
echo "== model metrics"
cat "$here/data/dev/evaluation/metrics.json"
