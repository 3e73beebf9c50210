#!/usr/bin/env bash
# Scale benchmarks of issue 12 (docs/PERFORMANCE.md, "Memory-budgeted, partitioned build"):
#
#   SSDANN_LARGE_DATA=~/.cache/ssdann-data/pkg-lsa-860k benches/scale/run.sh real [BUDGET_GIB]
#       one-shot build vs --memory-budget (default 0.5 GiB) on the ~860K real set
#       (../shared/data/make_pkg_lsa.py makes it), same R/L/α/PQ; build wall time, peak RSS,
#       recall@10 / reads at L = 50, 100.
#   SSDANN_GEN_DIR=/tmp/gen10m benches/scale/run.sh generated [N] [BUDGET_GIB]
#       `ssdann generate` N points (default 10M, 96-d f32 clustered) into SSDANN_GEN_DIR (once),
#       exact ground truth, a budgeted build (default 2 GiB, below the raw 3.84 GB) with the
#       cheap parameters (R = 32, L = 50, one pass), the eval table and the RAM / time of open.
#
# Each run skips with a message when its data variable is unset or the data is absent. Logs
# and indexes go to ${SSDANN_SCALE_OUT:-/tmp/ssdann-scale}. Long: run it in the background.
# Not part of CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
OUT=${SSDANN_SCALE_OUT:-/tmp/ssdann-scale}
mode=${1:-}
B="$root/target/release/ssdann"
OPEN="$root/target/release/examples/open_memory"
compile() {
  mkdir -p "$OUT"
  (cd "$root" && cargo build --release -q -p ssdann-tools && cargo build --release -q -p ssdann-engine --example open_memory)
}

build() { # name data extra-args...
  local name=$1 data=$2; shift 2
  echo "== build $name ($(date -u +%FT%TZ), $(cd "$root" && git rev-parse --short HEAD))"
  /usr/bin/time -v "$B" build --data "$data" --out "$OUT/$name" --force "$@" > "$OUT/$name.build.log" 2> "$OUT/$name.time.log"
  grep -E "total|partitions|mean degree|peak RSS|RAM estimate" "$OUT/$name.build.log" || true
  grep -E "Elapsed|Maximum resident" "$OUT/$name.time.log"
}

case "$mode" in
  real)
    D=${SSDANN_LARGE_DATA:-}
    if [ -z "$D" ] || [ ! -f "$D/base.fbin" ] || [ ! -f "$D/gt.ibin" ]; then
      echo "skipped: set SSDANN_LARGE_DATA to the pkg-lsa-860k directory (../shared/data/make_pkg_lsa.py makes it)"
      exit 0
    fi
    budget=${2:-0.5}
    compile
    P=(-R 64 -L 100 --alpha 1.2 --pq-bytes 32 -q)
    build real-oneshot "$D/base.fbin" "${P[@]}"
    build real-budget "$D/base.fbin" "${P[@]}" --memory-budget "$budget"
    for name in real-oneshot real-budget; do
      echo "== eval $name"
      "$B" eval --index "$OUT/$name" --queries "$D/query.fbin" --gt "$D/gt.ibin" -L 50,100 --threads 1 --nq 2000 2>&1 | tail -3
    done
    ;;
  generated)
    G=${SSDANN_GEN_DIR:-}
    if [ -z "$G" ]; then
      echo "skipped: set SSDANN_GEN_DIR to a directory with room for the generated set (10M × 96 f32 = 3.84 GB)"
      exit 0
    fi
    n=${2:-10000000}
    budget=${3:-2}
    compile
    [ -f "$G/query.fbin" ] || "$B" generate --out "$G" -n "$n" --dim 96 --queries 1000 --clusters 1000 --seed 1 -q
    [ -f "$G/gt.ibin" ] || "$B" gt --base "$G/base.fbin" --queries "$G/query.fbin" -k 10 --out "$G/gt.ibin"
    build gen-budget "$G/base.fbin" -R 32 -L 50 --alpha 1.2 --passes 1 --pq-bytes 32 --memory-budget "$budget"
    "$B" eval --index "$OUT/gen-budget" --queries "$G/query.fbin" --gt "$G/gt.ibin" -L 50,100,200 --threads 1 2>&1 | tail -4
    for _ in 1 2 3; do "$OPEN" "$OUT/gen-budget"; done
    ;;
  *)
    sed -n 2,17p "$0"
    exit 2
    ;;
esac
