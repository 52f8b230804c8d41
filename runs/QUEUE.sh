#!/usr/bin/env bash
# The long runs still owed, one after another (two CPU-bound runs on 2 cores slow each other
# many-fold). Every command is resumable and only does missing work, so this script can be
# started again each session; it logs to runs/QUEUE.log what ended when.
#     (setsid nohup runs/QUEUE.sh > /dev/null 2>&1 &)
# Pause it for benchmarks and CI with: kill -STOP / -CONT on its `factpatch eval` process.
# Order (issue 12): Gemma 3's 2,000-edit run with the update mapped through its post-MLP norm
# (AlphaEdit first, ~3 h; then MEMIT, ROME), then the SmolLM2 run (ROME left, ~5 h). MEMIT 1,000 is
# done; runs/seq-gemma3-cf-2000 (without the mapping) is kept as the record of the collapse
# (docs/mass-editing.md, "Gemma 3"). Each continues across
# sessions from what is committed (z of MEMIT/AlphaEdit batches, ROME's patches: .gitignore).
set -u
cd "$(dirname "$0")/.."
log=runs/QUEUE.log
for run in seq-gemma3-cf-2000-postnorm seq-smollm2-cf-2000; do
  echo "$(date -u +%FT%TZ) start $run" >> "$log"
  "runs/$run/COMMAND.sh" > "runs/$run/QUEUE.out" 2>&1
  echo "$(date -u +%FT%TZ) end $run (exit $?)" >> "$log"
done
