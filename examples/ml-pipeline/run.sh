#!/usr/bin/env bash
# Runs the example churn-model pipeline end to end in the `dev` environment:
# builds the runner and the step components, checks that the committed
# manifests pin exactly the components this build produced, provides the
# demo secrets and the record-signing key (in the environment's encrypted
# store, outside the repository), runs the pipeline, then runs it again to
# show the action cache, and verifies every record.
#
# Nothing tracked by git changes: components, outputs and state go to
# ignored directories, secrets and keys to the user's configuration
# (CORDON_SECRETS_HOME, else ~/.config/cordon).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"

echo "== building the cordon runner"
cargo build --release -p cordon
cordon="$target/release/cordon"
"$here/build-components.sh"
echo "== checking that the manifests pin the components just built"
"$cordon" pin --check "$here"/steps/*.toml

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
# Records of the dev environment are signed with its own key, kept in the
# same encrypted store; its public key is trusted for this user.
echo "== the dev record-signing key"
"$cordon" key generate --env dev --config "$config" --if-missing

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
