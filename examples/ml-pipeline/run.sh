#!/usr/bin/env bash
# Runs the example churn-model pipeline end to end in the `dev` environment:
# builds the runner and the step components, checks that the committed
# manifests pin exactly the components this build produced, provides the
# demo secrets and the record-signing key (in the environment's encrypted
# store, outside the repository), runs the pipeline, then runs it again to
# show the action cache. Then it promotes the trained model into the
# protected `prod` environment: refused while prod's reviewer has approved
# none of the steps that made it, accepted once they have, and consumed in
# prod by a step whose input requires promotion. Last, it verifies every
# record.
#
# Nothing tracked by git changes: components, outputs, state and approvals
# go to ignored paths, secrets, keys and trust roots to the user's
# configuration (CORDON_SECRETS_HOME, else $XDG_CONFIG_HOME/cordon, else
# ~/.config/cordon).
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

# ---- Promotion into prod -------------------------------------------------
# prod decides what it lets in (docs/promotion.md). Its keys and trust
# roots live in the same user configuration as dev's secrets, never in the
# checkout: `cordon` finds them in the directory computed here.
secrets_home="${CORDON_SECRETS_HOME:-${XDG_CONFIG_HOME:+$XDG_CONFIG_HOME/cordon}}"
secrets_home="${secrets_home:-$HOME/.config/cordon}"
echo "== prod: its record-signing key and its own demo model-signing key (in prod's store)"
"$cordon" key generate --env prod --config "$config" --if-missing
existing="$("$cordon" secret list --env prod --config "$config" 2>/dev/null || true)"
if ! grep -q "^model-signing-key\b" <<<"$existing"; then
  echo "== creating demo secret model-signing-key in the prod store (random value)"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | "$cordon" secret set model-signing-key --env prod --config "$config"
fi
# prod trusts dev's record key for what it promotes from dev: a decision of
# prod's operator, separate from this user trusting it for `cordon verify`.
echo "== prod trusts dev's record key for promotions from dev ($secrets_home/trusted/prod/promote-from/dev/)"
mkdir -p "$secrets_home/trusted/prod/promote-from/dev"
cp "$secrets_home"/trusted/dev/*.pub "$secrets_home/trusted/prod/promote-from/dev/"
# prod is protected: only steps its reviewer approved may run there or
# make what comes in. The demo reviewer's key pair is kept with the user's
# configuration; prod trusts its public key from there.
reviewer_dir="$secrets_home/reviewers"
if [ ! -f "$reviewer_dir/prod-reviewer.key" ]; then
  echo "== creating the demo prod reviewer's key pair in $reviewer_dir"
  "$cordon" key reviewer prod-reviewer # into $secrets_home/reviewers, the default
fi
echo "== prod trusts the demo reviewer ($secrets_home/trusted/prod/reviewers/)"
mkdir -p "$secrets_home/trusted/prod/reviewers"
cp "$reviewer_dir/prod-reviewer.pub" "$secrets_home/trusted/prod/reviewers/"
# Every run of this script starts from manifests the reviewer has not yet
# approved, so every run shows the refusal: approvals of an earlier run
# (git-ignored files beside the manifests) are dropped.
rm -f "$here"/steps/*.approvals.json

run_id="$(python3 -c 'import json, os, sys; print(os.path.basename(json.load(open(sys.argv[1]))["pipeline_record"])[:-len(".json")])' "$here/.cordon/last-run.json")"
# Run from the example's directory, `cordon promote` uses its state
# directory (.cordon/ beside its cordon.toml), as every command there does.
promote=("$cordon" promote --run "$run_id" --from dev --to prod --artifact /model
  --config "$config")
echo "== cordon promote /model dev -> prod (refused: prod's reviewer has approved nothing yet)"
status=0
(cd "$here" && "${promote[@]}") || status=$?
if [ "$status" -ne 1 ]; then
  echo "error: the promotion was expected to be refused (exit 1), it exited $status" >&2
  exit 1
fi
echo "== prod's reviewer reads the manifests and approves them"
for s in validate pseudonymize train evaluate sign release; do
  "$cordon" approve "$here/steps/$s.toml" --key "$reviewer_dir/prod-reviewer.key"
done
echo "== cordon promote /model dev -> prod (accepted: copied by digest, VSA signed by prod)"
(cd "$here" && "${promote[@]}")
echo "== cordon run steps/release.toml --env prod (its /in requires a promoted model)"
# Named by its path from anywhere, the step finds the promotion in the
# workspace's state directory, not in one beside the manifest.
"$cordon" run "$here/steps/release.toml" --env prod --config "$config"

echo "== verifying every record (signatures, chain, outputs on disk)"
(cd "$here" && "$cordon" verify)
