#!/usr/bin/env bash
# Side-by-side harness: ssdann vs Microsoft DiskANN (C++ diskannpy 0.7.0 and Rust
# diskannpy-rust 0.49.1) on the same data, machine and parameters, in one run.
#
#   benches/peer/run.sh --data ../shared/data/pypi-minilm-100k [--out DIR] [--nq 1000]
#                       [-L 20,30,40,50,75,100] [--threads 1,2] [--systems "cpp rust"]
#                       [--pq-bytes 48] [--ssdann BIN] [--build-only] [--nav-nodes N]
#                       [--eval-flags "--termination-ratio 1.15 ..."] [--build-flags "--neighbor-codes"]
#                       [--repeats 3]
#
# Builds all three indexes (R=64, L=100, α=1.2, 48 PQ bytes, 2 threads), runs the same query
# sweep (k=10, W=4, threads 1 and 2, node cache 0 and 1% of n), and writes the table, the
# ratios at recall@10 = 0.90/0.95/0.98, peer_report.json and recall_qps.png into --out.
#
# Budgeted-build mode, --budget-gib G [--peer-budget-gib P] (--systems rust only): in one run,
# ssdann one-shot and with --memory-budget G; each peer one-shot (build_memory_maximum 8 GiB)
# and with build_memory_maximum P (small enough that it shards; default G); all with the same
# R/L/α/PQ bytes and 2 threads, each timed by /usr/bin/time (wall, peak RSS); each searched at
# -L (default 50,100; k=10, W=4, 1 thread, no cache); writes budget_report.md and .json.
# --ssdann BIN uses a built binary instead of running cargo. --build-only stops after the builds
# (wall time and peak RSS in OUT/*_build.json), for repeated build-time runs.
# The data directory holds base.EXT, query.EXT (EXT = fbin, u8bin or i8bin) and gt.ibin.
# --nav-nodes N searches ssdann with a navigation graph of N nodes built at open (eval --nav-nodes;
# 0 = none); without it, the index's own navigation.bin (the default);
# --eval-flags passes more `ssdann eval` switches (e.g. "--termination-ratio 1.15", or the hidden A/B levers "--no-dynamic-beam --no-look-ahead") for ablation runs;
# --build-flags more `ssdann build` switches (e.g. "--neighbor-codes"), ssdann only.
# --repeats N runs every search sweep N times, interleaved; the report gives median ratios
# with their spread. Every system's p99 is one call per query per thread (peer.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
REPEATS=1 EVAL_FLAGS="" BUILD_FLAGS="" NAV="" BUILD_ONLY="" DATA="" OUT="$here/out" NQ=1000 LS="" THREADS=1,2 SYSTEMS="" PQ=48 SSDANN="" BUDGET="" PEER_BUDGET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$(cd "$2" && pwd); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --nq) NQ="$2"; shift 2 ;;
    -L) LS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --systems) SYSTEMS="$2"; shift 2 ;;
    --pq-bytes) PQ="$2"; shift 2 ;;
    --ssdann) SSDANN="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --budget-gib) BUDGET="$2"; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --nav-nodes) NAV="$2"; shift 2 ;;
    --eval-flags) EVAL_FLAGS="$2"; shift 2 ;;
    --build-flags) BUILD_FLAGS="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --peer-budget-gib) PEER_BUDGET="$2"; shift 2 ;;
    -h|--help) sed -n 2,27p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$DATA" ] || { echo "--data DIR is required (base.EXT, query.EXT, gt.ibin; EXT = fbin, u8bin or i8bin)" >&2; exit 2; }
EXT=""
for e in fbin u8bin i8bin; do [ -f "$DATA/base.$e" ] && { EXT=$e; break; }; done
[ -n "$EXT" ] || { echo "$DATA: no base.fbin, base.u8bin or base.i8bin" >&2; exit 2; }
BASE="$DATA/base.$EXT" QUERY="$DATA/query.$EXT"
for f in "$QUERY" "$DATA/gt.ibin"; do [ -f "$f" ] || { echo "$f missing" >&2; exit 2; }; done
if [ -n "$BUDGET" ]; then
  LS=${LS:-50,100} SYSTEMS=${SYSTEMS:-rust} PEER_BUDGET=${PEER_BUDGET:-$BUDGET}
  for s in $SYSTEMS; do
    [ "$s" = rust ] || { echo "--budget-gib: --systems rust only (the C++ package's sharding is not checked)" >&2; exit 2; }
  done
else
  LS=${LS:-20,30,40,50,75,100} SYSTEMS=${SYSTEMS:-cpp rust}
fi
mkdir -p "$OUT/work"
OUT=$(cd "$OUT" && pwd)
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

venv() { # name pip-spec...
  local dir="$here/.venv-$1"; shift
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "import ${IMPORT:-diskannpy}" 2>/dev/null; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip >/dev/null
    "$dir/bin/pip" install -q "$@"
  fi
}
echo "== installing peers (once)"
for s in $SYSTEMS; do
  case "$s" in
    cpp) venv cpp "diskannpy==0.7.0" ;;
    rust) venv rust "diskannpy-rust==0.49.1" ;;
    *) echo "unknown system $s (cpp, rust)" >&2; exit 2 ;;
  esac
done
[ -n "$BUDGET" ] || IMPORT=matplotlib venv report matplotlib numpy

if [ -z "$SSDANN" ]; then
  echo "== building ssdann"
  (cd "$root" && cargo build --release -q -p ssdann-tools)
  SSDANN="$root/target/release/ssdann"
fi
N=$(python3 -c "import struct,sys; print(struct.unpack('<I', open(sys.argv[1],'rb').read(4))[0])" "$BASE")
CACHE=$((N / 100))
PARAMS=(--R 64 --build-l 100 --alpha 1.2 --pq-bytes "$PQ" --build-threads 2)

if [ -n "$BUDGET" ]; then
  # shellcheck source=budget.sh
  source "$here/budget.sh"
  exit 0
fi

# DiskANN-Rust logs two INFO lines per search call (tracing, to stderr), ~10^5 a run, inside
# the per-query latency loop: warnings only, so that its latencies time the search alone.
export RUST_LOG="${RUST_LOG:-warn}"

echo "== build: ssdann"
rm -rf "$OUT/work/ours"
/usr/bin/time -f "%e %M" -o "$OUT/ours_time.txt" "$SSDANN" build --data "$BASE" --out "$OUT/work/ours" \
  -R 64 -L 100 --alpha 1.2 --pq-bytes "$PQ" --threads 2 -q $BUILD_FLAGS | tee "$OUT/ours_build.txt"
read -r wall rss_kib < "$OUT/ours_time.txt"
bytes=$(du -sb "$OUT/work/ours" | cut -f1)
echo "{\"build_wall_s\": $wall, \"build_peak_rss_bytes\": $((rss_kib * 1024)), \"index_bytes\": $bytes, \"commit\": \"$(cd "$root" && git rev-parse --short HEAD)\"}" > "$OUT/ours_build.json"
for s in $SYSTEMS; do
  echo "== build: DiskANN $s"
  "$here/.venv-$s/bin/python" "$here/peer.py" build --system "$s" --data "$DATA" --work "$OUT/work" --out "$OUT/${s}_build.json" "${PARAMS[@]}" > "$OUT/${s}_build.log" 2>&1
  cat "$OUT/${s}_build.json"; echo
done
[ -z "$BUILD_ONLY" ] || { echo "== builds only: wall s / peak RSS in $OUT/*_build.json"; exit 0; }

# --repeats N: every system's whole search sweep N times, interleaved (ours, peers, ours, ...),
# into *_r1.json ... *_rN.json; the report takes medians and shows the spread.
rm -f "$OUT"/ours_eval_c*.json "$OUT"/*_search*.json
for rep in $(seq 1 "$REPEATS"); do
  sfx=""; [ "$REPEATS" -gt 1 ] && sfx="_r$rep"
  echo "== search: ssdann (repeat $rep/$REPEATS)"
  for c in 0 "$CACHE"; do
    "$SSDANN" eval --index "$OUT/work/ours" --queries "$QUERY" --gt "$DATA/gt.ibin" -k 10 -W 4 -L "$LS" \
      --threads "$THREADS" --nq "$NQ" --cache-nodes "$c" ${NAV:+--nav-nodes "$NAV"} $EVAL_FLAGS --json "$OUT/ours_eval_c$c$sfx.json"
  done
  for s in $SYSTEMS; do
    echo "== search: DiskANN $s (repeat $rep/$REPEATS)"
    "$here/.venv-$s/bin/python" "$here/peer.py" search --system "$s" --data "$DATA" --work "$OUT/work" --out "$OUT/${s}_search$sfx.json" \
      --L "$LS" --threads "$THREADS" --cache "0,$CACHE" --W 4 -k 10 --nq "$NQ" 2>&1 | grep -v '^\s*$' || true
  done
done

"$here/.venv-report/bin/python" "$here/report.py" "$OUT" "$PQ" | tee "$OUT/report.txt"
