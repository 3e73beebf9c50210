#!/usr/bin/env bash
# Side-by-side harness: ssdann vs Microsoft DiskANN (C++ diskannpy 0.7.0 and Rust
# diskannpy-rust 0.49.1) on the same data, machine and parameters, in one run.
#
#   benches/peer/run.sh --data ../shared/data/pypi-minilm-100k [--out DIR] [--nq 1000]
#                       [-L 20,30,40,50,75,100] [--threads 1,2] [--systems "cpp rust"]
#
# Builds all three indexes (R=64, L=100, α=1.2, 48 PQ bytes, 2 threads), runs the same query
# sweep (k=10, W=4, threads 1 and 2, node cache 0 and 1% of n), and writes the table, the
# ratios at recall@10 = 0.90/0.95/0.98, peer_report.json and recall_qps.png into --out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DATA="" OUT="$here/out" NQ=1000 LS=20,30,40,50,75,100 THREADS=1,2 SYSTEMS="cpp rust"
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$(cd "$2" && pwd); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --nq) NQ="$2"; shift 2 ;;
    -L) LS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --systems) SYSTEMS="$2"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$DATA" ] || { echo "--data DIR is required (base.fbin, query.fbin, gt.ibin)" >&2; exit 2; }
for f in base.fbin query.fbin gt.ibin; do [ -f "$DATA/$f" ] || { echo "$DATA/$f missing" >&2; exit 2; }; done
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
venv cpp "diskannpy==0.7.0"
venv rust "diskannpy-rust==0.49.1"
IMPORT=matplotlib venv report matplotlib numpy

echo "== building ssdann"
(cd "$root" && cargo build --release -q -p ssdann-tools)
SSDANN="$root/target/release/ssdann"
N=$(python3 -c "import struct,sys; print(struct.unpack('<I', open(sys.argv[1],'rb').read(4))[0])" "$DATA/base.fbin")
CACHE=$((N / 100))
PARAMS=(--R 64 --build-l 100 --alpha 1.2 --pq-bytes 48 --build-threads 2)

echo "== build: ssdann"
rm -rf "$OUT/work/ours"
/usr/bin/time -f "%e %M" -o "$OUT/ours_time.txt" "$SSDANN" build --data "$DATA/base.fbin" --out "$OUT/work/ours" \
  -R 64 -L 100 --alpha 1.2 --pq-bytes 48 --threads 2 -q | tee "$OUT/ours_build.txt"
read -r wall rss_kib < "$OUT/ours_time.txt"
bytes=$(du -sb "$OUT/work/ours" | cut -f1)
echo "{\"build_wall_s\": $wall, \"build_peak_rss_bytes\": $((rss_kib * 1024)), \"index_bytes\": $bytes, \"commit\": \"$(cd "$root" && git rev-parse --short HEAD)\"}" > "$OUT/ours_build.json"
for s in $SYSTEMS; do
  echo "== build: DiskANN $s"
  "$here/.venv-$s/bin/python" "$here/peer.py" build --system "$s" --data "$DATA" --work "$OUT/work" --out "$OUT/${s}_build.json" "${PARAMS[@]}" > "$OUT/${s}_build.log" 2>&1
  cat "$OUT/${s}_build.json"; echo
done

echo "== search: ssdann"
for c in 0 "$CACHE"; do
  "$SSDANN" eval --index "$OUT/work/ours" --queries "$DATA/query.fbin" --gt "$DATA/gt.ibin" -k 10 -W 4 -L "$LS" \
    --threads "$THREADS" --nq "$NQ" --cache-nodes "$c" --json "$OUT/ours_eval_c$c.json"
done
for s in $SYSTEMS; do
  echo "== search: DiskANN $s"
  "$here/.venv-$s/bin/python" "$here/peer.py" search --system "$s" --data "$DATA" --work "$OUT/work" --out "$OUT/${s}_search.json" \
    --L "$LS" --threads "$THREADS" --cache "0,$CACHE" --W 4 -k 10 --nq "$NQ" 2>&1 | grep -v '^\s*$' || true
done

"$here/.venv-report/bin/python" "$here/report.py" "$OUT" | tee "$OUT/report.txt"
