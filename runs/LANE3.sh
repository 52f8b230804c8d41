#!/usr/bin/env bash
# Third lane on 2026-12-04 (seventh session): PRUNE (α = 1.2) on Gemma 3's sequential ROME stack at
# 1,500 and 2,000 edits, every case scored again. One torch thread, beside runs/LANE2.sh.
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
run=runs/seq-gemma3-cf-2000-rome-6ctx
for n in 1500 2000; do
  echo "$(date -u +%FT%TZ) start prune gemma3 rome $n" >> "$log"
  OMP_NUM_THREADS=1 .venv/bin/python scripts/restrain_stack.py $run rome --edits $n --base 1.2 --check 5 > /tmp/prune-gemma3-$n.log 2>&1
  echo "$(date -u +%FT%TZ) end prune gemma3 rome $n (exit $?)" >> "$log"
done
