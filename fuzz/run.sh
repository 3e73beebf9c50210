#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each and fails on any crash, panic,
# over-allocation, timeout (10 s per input) or RSS above 2 GiB. Bounded: each target is killed
# SECONDS + 120 s after it starts whatever happens; FUZZ_JOBS targets (default: one per core)
# run at once, so the whole takes about ceil(targets / FUZZ_JOBS) × SECONDS plus the build.
# Usage, from anywhere:
#
#   fuzz/run.sh SECONDS [TARGET ...]
#
# Builds the targets with plain cargo on stable Rust (the coverage flags cargo-fuzz passes to
# rustc, no nightly, no cargo-fuzz needed); FUZZ_SANITIZER=address adds AddressSanitizer (uses
# RUSTC_BOOTSTRAP=1 on stable). The checked-in seeds in fuzz/corpus/<target>/ are read, never
# written: what a run discovers goes to a temporary corpus (kept under FUZZ_WORK when set).
# A crashing input is saved as fuzz/artifacts/<target>/crash-* (see fuzz/README.md to replay).
set -euo pipefail

secs=${1:?usage: fuzz/run.sh SECONDS [TARGET ...]}
shift
cd "$(dirname "$0")"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

triple=$(rustc -vV | sed -n 's/^host: //p')
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth"
flags+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
target_dir=target
case "${FUZZ_SANITIZER:-none}" in
  none) ;;
  address)
    export RUSTC_BOOTSTRAP=1
    flags+=" -Zsanitizer=address"
    target_dir=target/asan ;;
  *) echo "FUZZ_SANITIZER must be none or address" >&2; exit 2 ;;
esac

bins=()
for t in "${targets[@]}"; do
  [ -f "fuzz_targets/$t.rs" ] || { echo "no fuzz target $t (fuzz/fuzz_targets/$t.rs)" >&2; exit 2; }
  bins+=(--bin "$t")
done
echo "fuzz: building ${#targets[@]} targets ($triple, sanitizer ${FUZZ_SANITIZER:-none})"
built_from=$(date +%s)
# --target keeps the flags off build scripts and proc macros.
RUSTFLAGS="$flags" cargo build --release --quiet --target "$triple" \
  --target-dir "$target_dir" "${bins[@]}"
echo "fuzz: built in $(( $(date +%s) - built_from )) s"

work=${FUZZ_WORK:-$(mktemp -d)}
# The readers' temporary input files: in RAM where possible (several times more runs/s).
scratch=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
cleanup() { rm -rf "$scratch"; [ -n "${FUZZ_WORK:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

# One target: its libFuzzer log goes to $work/<target>.log, its exit status to .rc.
run_one() {
  local t=$1 start rc
  mkdir -p "$work/corpus/$t" "artifacts/$t"
  start=$(date +%s)
  # libFuzzer writes new inputs into the first folder only; corpus/$t is read-only seeds.
  set +e
  TMPDIR="$scratch" timeout --signal=KILL $((secs + 120)) \
    "$target_dir/$triple/release/$t" "$work/corpus/$t" "corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1
  rc=$?
  set -e
  echo "$rc $(( $(date +%s) - start ))" >"$work/$t.rc"
}

# Targets run FUZZ_JOBS at a time (default: one per core); each still gets SECONDS.
jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs_max" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
wait || true

passed=0
failed=()
for t in "${targets[@]}"; do
  read -r rc took <"$work/$t.rc" || { rc=255; took=0; }
  log="$work/$t.log"
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  printf 'fuzz: %-13s %s  %6s s  %10s runs  cov %s\n' "$t" \
    "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)" "$took" "${runs:-?}" "${cov:-?}"
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed+=("$t")
    echo "---- $t (exit $rc), last 60 lines of its log:"
    tail -n 60 "$log"
    echo "----"
  fi
done

echo "fuzz: ${passed} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: failing targets: ${failed[*]}" >&2; exit 1; }
