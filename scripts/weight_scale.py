"""How large the weights FT+L and AttnEdit clamp are, per embedded model (docs/results.md, "Why
SmolLM2's radii are ×10"; editing.registry.MODEL_DEFAULTS).

    python scripts/weight_scale.py [--models smollm2-135m,gemma3-270m] [--cases FILE] [--out runs/weight-scale/scale.json]

For each model, at the layers the baselines edit by default (FT+L: the MLP output projection at
ROME's layer; AttnEdit: W_Q at the attention layer): the standard deviation of the weight's
entries — a fixed L∞ radius ε is a change of ε / std in units of the weights' own spread — and the
mean L1 norm of the key k (the input of the MLP output projection) at the last subject token of
the calibration cases' rewrite prompts (records 2000–2011 of counterfact-train.json by default),
to show the inputs are of similar size. Writes one JSON object per model and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.hooks import act_name, run_with_cache
from factpatch.core.models import load_model
from factpatch.core.tokens import subject_last_index
from factpatch.editing.registry import method_params
from factpatch.editing.rome import projection_weight


def scale(name: str, cases: list[dict]) -> dict:
    lm = load_model(name)
    ftl, attn = method_params(lm, "ft+l"), method_params(lm, "attn")
    w_proj = projection_weight(lm, ftl.layer).detach().float()
    w_q = lm.module(lm.adapter.qkv_paths(attn.layer)[0]).weight.detach().float()
    key = act_name("mlp_key", ftl.layer)
    norms = []
    for case in cases:
        text, subject = case["prompt"], case["subject"]
        ids = torch.tensor([lm.tokenizer(text).input_ids], device=lm.device)
        keys = run_with_cache(lm, ids, [key], stop_after=key)[key][0]  # (T, d_mlp)
        norms.append(float(keys[subject_last_index(lm.tokenizer, text, subject)].abs().sum()))
    return {
        "model": name,
        "ft+l": {"layer": ftl.layer, "param": "mlp_out", "std": float(w_proj.std()), "radius": ftl.norm_constraint},
        "attn": {"layer": attn.layer, "param": "W_Q", "std": float(w_q.std()), "radius": attn.norm_constraint},
        "key_l1_mean": sum(norms) / len(norms),
        "n_cases": len(norms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--cases", type=Path, default=Path("../shared/datasets/counterfact-train.json"))
    parser.add_argument("--first", type=int, default=2000, help="first record of the calibration slice")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("runs/weight-scale/scale.json"))
    args = parser.parse_args(argv)
    cases = json.loads(args.cases.read_text())[args.first : args.first + args.n]
    rows = [scale(name.strip(), cases) for name in args.models.split(",") if name.strip()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(rows, indent=2) + "\n")
    print("| model | W_proj std (layer) | W_Q std (layer) | mean ‖k‖₁ |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['ft+l']['std']:.4f} ({r['ft+l']['layer']}) | {r['attn']['std']:.4f} "
              f"({r['attn']['layer']}) | {r['key_l1_mean']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
