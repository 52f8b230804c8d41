#!/usr/bin/env bash
# The long runs still owed, one after another (two CPU-bound runs on 2 cores slow each other
# many-fold). Every command is resumable and only does missing work, so this script can be
# started again each session; it logs to runs/QUEUE.log what ended when.
#     (setsid nohup runs/QUEUE.sh > /dev/null 2>&1 &)
# Pause it for benchmarks and CI with: kill -STOP / -CONT on its `factpatch eval` process.
# Order: the three reruns of docs/results.md with the paper's definitions (issue 14, ~3.5 h; the
# last work that issue needs), the 2,000-edit SmolLM2 run (issue 12: ROME left, ~5 h), the
# one-batch MEMIT 1,000 (issue 12, ~1 h), then the Gemma 3 2,000-edit run (issue 12, ~15 h).
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
for run in eval-smollm2-gen-paper eval-smollm2-zsre-paper eval-gemma3-zsre-paper \
           seq-smollm2-cf-2000 memit-1000-smollm2 seq-gemma3-cf-2000; do
  echo "$(date -u +%FT%TZ) start $run" >> "$log"
  "runs/$run/COMMAND.sh" > "runs/$run/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $run (exit $?)" >> "$log"
done
