# Budgeted-build mode of the peer harness (issue 12), sourced by run.sh --budget-gib G.
# Uses run.sh's DATA OUT NQ LS SYSTEMS PQ SSDANN BUDGET PEER_BUDGET N PARAMS here root.
#
# Four builds (with --systems rust), same R/L/α/PQ bytes, 2 threads, each under
# /usr/bin/time: ours-oneshot, ours-budget (--memory-budget G), rust-oneshot
# (build_memory_maximum 8 GiB), rust-budget (build_memory_maximum P). Then each is searched at
# -L with k=10, W=4, 1 thread, no cache, and budget_report.py writes the table.
DIM=$(python3 -c "import struct,sys; print(struct.unpack('<II', open(sys.argv[1],'rb').read(8))[1])" "$BASE")
builds=()
# The tree the ssdann binary was just built from (HEAD may move while the builds run).
commit=$(cd "$root" && git rev-parse --short HEAD)
(cd "$root" && git diff --quiet HEAD -- . ':(exclude)benches') || commit="$commit+uncommitted"

# timed NAME SYSTEM MODE BUDGET_GIB|null INDEX_DIR COMMAND...: runs COMMAND under /usr/bin/time,
# its output in NAME_build.log; writes NAME_build.json (wall s, peak RSS bytes, index bytes).
timed() {
  local name=$1 system=$2 mode=$3 budget=$4 dir=$5 wall rss_kib
  shift 5
  echo "== build: $name (budget GiB: $budget)"
  if ! /usr/bin/time -f "%e %M" -o "$OUT/${name}_time.txt" "$@" > "$OUT/${name}_build.log" 2>&1; then
    echo "build $name failed; the end of $OUT/${name}_build.log:" >&2
    tail -20 "$OUT/${name}_build.log" >&2
    exit 1
  fi
  read -r wall rss_kib < <(tail -1 "$OUT/${name}_time.txt")
  printf '{"system": "%s", "mode": "%s", "budget_gib": %s, "build_wall_s": %s, "build_peak_rss_bytes": %d, "index_bytes": %d}\n' \
    "$system" "$mode" "$budget" "$wall" "$((rss_kib * 1024))" "$(du -sb "$dir" | cut -f1)" > "$OUT/${name}_build.json"
  cat "$OUT/${name}_build.json"
  builds+=("$name")
}

for mode in oneshot budget; do
  rm -rf "$OUT/work/ours-$mode" "$OUT/work/.ours-$mode.partitioned"
  extra=() budget=null
  if [ "$mode" = budget ]; then extra=(--memory-budget "$BUDGET"); budget=$BUDGET; fi
  timed "ours-$mode" ours "$mode" "$budget" "$OUT/work/ours-$mode" "$SSDANN" build --data "$BASE" \
    --out "$OUT/work/ours-$mode" -R 64 -L 100 --alpha 1.2 --pq-bytes "$PQ" --threads 2 -q "${extra[@]}"
  grep -E "partitions|RAM estimate|peak RSS|total" "$OUT/ours-${mode}_build.log" || true
done

for s in $SYSTEMS; do
  for mode in oneshot budget; do
    mem=8.0 budget=null
    if [ "$mode" = budget ]; then mem=$PEER_BUDGET; budget=$PEER_BUDGET; fi
    timed "$s-$mode" "$s" "$mode" "$budget" "$OUT/work/$s-$mode" "$here/.venv-$s/bin/python" "$here/peer.py" build \
      --system "$s" --data "$DATA" --work "$OUT/work" --index-name "$s-$mode" --build-memory-gib "$mem" \
      --out "$OUT/$s-${mode}_peer.json" "${PARAMS[@]}"
    # The package's own words on whether it sharded (budget_report.py parses the same lines).
    sed 's/\x1b\[[0-9;]*m//g' "$OUT/$s-${mode}_build.log" \
      | grep -E "Estimated index RAM|one shot|across .* shards|Starting merge|Finished merge" | cut -c1-220 || true
  done
done

cat > "$OUT/params.json" <<JSON
{"data": "$DATA", "n": $N, "dim": $DIM, "R": 64, "build_l": 100, "alpha": 1.2, "pq_bytes": $PQ, "build_threads": 2,
 "k": 10, "W": 4, "nq": $NQ, "L": [$LS], "budget_gib": $BUDGET, "peer_budget_gib": $PEER_BUDGET,
 "commit": "$commit", "ssdann": "$SSDANN", "date": "$(date -u +%Y-%m-%dT%H:%MZ)",
 "machine": "$(nproc) vCPU, $(free -g | awk '/Mem:/{print $2}') GiB RAM",
 "builds": [$(printf '"%s", ' "${builds[@]}" | sed 's/, $//')]}
JSON

for name in "${builds[@]}"; do
  echo "== search: $name"
  case "$name" in
    ours-*)
      "$SSDANN" eval --index "$OUT/work/$name" --queries "$QUERY" --gt "$DATA/gt.ibin" -k 10 -W 4 -L "$LS" \
        --threads 1 --nq "$NQ" --cache-nodes 0 --json "$OUT/${name}_eval.json" ;;
    *)
      "$here/.venv-${name%%-*}/bin/python" "$here/peer.py" search --system "${name%%-*}" --index-name "$name" \
        --data "$DATA" --work "$OUT/work" --out "$OUT/${name}_search.json" --L "$LS" --threads 1 --cache 0 --W 4 -k 10 \
        --nq "$NQ" > "$OUT/${name}_search.log" 2>&1 || { echo "search $name failed; see $OUT/${name}_search.log" >&2; exit 1; }
      grep -E "^[a-z]+ cache=" "$OUT/${name}_search.log" || true ;;
  esac
done

python3 "$here/budget_report.py" "$OUT"
