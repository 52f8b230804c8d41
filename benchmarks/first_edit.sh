#!/usr/bin/env bash
# The first edit from an empty cache (model conversion, corpus sampling, key statistics, the edit):
# this checkout, then OTHER (another checkout), each with its own fresh FACTPATCH_CACHE. Run alone.
#     benchmarks/first_edit.sh /path/to/other/checkout > runs/bench/first-edit-DATE.jsonl
#     MODEL=gemma3-270m benchmarks/first_edit.sh ...   (default: the default model)
set -u
model=${MODEL:-smollm2-135m}
other=${1:?usage: benchmarks/first_edit.sh OTHER_CHECKOUT}
here=$(cd "$(dirname "$0")/.." && pwd)
for who in this other; do
  if [ $who = this ]; then dir=$here; else dir=$(cd "$other" && pwd); fi
  cache=$(mktemp -d)
  start=$(date +%s.%N)
  (cd "$dir" && FACTPATCH_CACHE=$cache PYTHONPATH=src "$here/.venv/bin/factpatch" edit --model "$model" \
     --prompt "{} is located in the city of" --subject "Eiffel Tower" --target Rome --json > /dev/null 2> "$cache.log")
  end=$(date +%s.%N)
  sampling=$(grep -o 'sampling corpus: 100%[^]]*\]' "$cache.log" | tail -1)
  echo "{\"model\": \"$model\", \"version\": \"$who\", \"checkout\": \"$dir\", \"seconds\": $(echo "$end - $start" | bc), \"sampling\": \"$sampling\"}"
  rm -rf "$cache" "$cache.log"
done
