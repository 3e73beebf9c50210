#!/usr/bin/env bash
# The default-M table (issue 14, part 1; docs/PERFORMANCE.md "Default PQ bytes"): for each data
# set and PQ bytes M, build with the defaults otherwise (timed: wall s, peak RSS), eval recall@10
# (strict and with ties), reads and QPS at L = 30/50/100; one JSON line per build in $OUT/results.jsonl.
#   S=target/release/ssdann OUT=/tmp/mt benches/m_table.sh
# The u8 set is `ssdann generate --dtype u8 --dim 128 -n 200000` + `ssdann gt`; the LSA set the
# first 200K rows of ~/.cache/ssdann-data/pkg-lsa-860k with the first 1,000 queries + `ssdann gt`.
set -euo pipefail
S=${S:-target/release/ssdann}
OUT=${OUT:-/tmp/mt}; mkdir -p "$OUT"; out=$OUT/results.jsonl
run() { # name base query gt M
  local name=$1 base=$2 query=$3 gt=$4 m=$5 idx=$OUT/idx-$1-$5
  rm -rf "$idx"
  /usr/bin/time -f "%e %M" -o $OUT/time.txt $S build --data "$base" --out "$idx" --pq-bytes "$m" --threads 2 -q > $OUT/build-$name-$m.txt
  read -r wall rss < $OUT/time.txt
  $S eval --index "$idx" --queries "$query" --gt "$gt" -L 30,50,100 --threads 1 --nq 1000 --json $OUT/eval-$name-$m.json > /dev/null
  python3 -c "
import json; e=json.load(open('$OUT/eval-$name-$m.json'))['rows']
print(json.dumps({'set':'$name','M':$m,'build_s':$wall,'peak_rss_kib':$rss,'rows':[{k:r[k] for k in ('L','recall','recall_ties','sector_reads','qps')} for r in e]}))" >> $out
  rm -rf "$idx"
}
M=/work/shared/data/pypi-minilm-100k
for m in 24 48 96 192; do run minilm $M/base.fbin $M/query.fbin $M/gt.ibin $m; done
U=/tmp/bench/u8-200k
for m in 16 32 64 128; do run u8 $U/base.u8bin $U/query.u8bin $U/gt.ibin $m; done
L=$OUT/lsa-200k
for m in 16 32 64 128; do run lsa $L/base.fbin $L/query.fbin $L/gt.ibin $m; done
echo done
