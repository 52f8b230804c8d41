#!/usr/bin/env bash
# The FT+L / AttnEdit radius checks behind editing.registry.MODEL_DEFAULTS (docs/results.md, "Why
# SmolLM2's radii are ×10"): 12 calibration cases, CounterFact records 2000–2011 of
# counterfact-train.json (outside every reported run), written exactly as the first runs had them
# (json.dumps of the slice: sha256 3c523e77...). Each directory is one command below; rerunning
# one resumes it. RUN=NAME runs only that one (e.g. RUN=calib-smollm2-paper, about 2 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
FP=${FP:-.venv/bin/factpatch}
DATA=${DATA:-../shared/datasets}
CALIB=$(mktemp -d)/cf-calib.json
python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1]))[2000:2012], open(sys.argv[2], 'w'))" \
  "$DATA/counterfact-train.json" "$CALIB"
run() { name=$1; shift; if [ -z "${RUN:-}" ] || [ "$RUN" = "$name" ]; then
  $FP eval --quiet --threads 1 --dataset "counterfact:$CALIB" --out "runs/calibration/$name" "$@"; fi; }
# the radii in use (smollm2: ×10 the paper's; gemma3: the paper's FT+L, AttnEdit ×3)
run calib-smollm2 --model smollm2-135m --methods ft+l,attn,none
run calib-gemma3 --model gemma3-270m --methods ft+l,attn,none \
  --set ft+l.norm_constraint=5e-4 --set ft+l.lr=5e-4 --set attn.norm_constraint=1e-3 --set attn.lr=1e-3
run calib-gemma3-attn-3e-3 --model gemma3-270m --methods attn
# SmolLM2 along the grid: the paper's radii (×1), FT+L ×2 and ×4, AttnEdit ×3
run calib-smollm2-paper --model smollm2-135m --methods ft+l,attn \
  --set ft+l.norm_constraint=5e-4 --set ft+l.lr=5e-4 --set attn.norm_constraint=1e-3 --set attn.lr=1e-3
run calib-smollm2-ftl-1e-3 --model smollm2-135m --methods ft+l --set ft+l.norm_constraint=1e-3 --set ft+l.lr=1e-3
run calib-smollm2-ftl-2e-3 --model smollm2-135m --methods ft+l --set ft+l.norm_constraint=2e-3 --set ft+l.lr=2e-3
run calib-smollm2-attn-3e-3 --model smollm2-135m --methods attn --set attn.norm_constraint=3e-3 --set attn.lr=3e-3
