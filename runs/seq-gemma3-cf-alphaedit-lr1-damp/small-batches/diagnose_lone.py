"""Why Gemma 3's AlphaEdit defaults (post-norm damping 1e-2) hold back some lone requests.

    OMP_NUM_THREADS=1 .venv/bin/python runs/seq-gemma3-cf-alphaedit-lr1-damp/small-batches/diagnose_lone.py

Edits each request alone (then reverts) at damping 1e-2 and 1e-3 (v_lr 1.0 both, z the same) and
records, at each edited layer, for the request's key k (its context mean):
- `null_share`: ‖P k‖² / ‖k‖², the share of the key's energy in AlphaEdit's null space;
- `key_gain`: kᵀ right, the share of the wanted output change R that the layer's ΔW = R rightᵀ
  writes at k (1 would write all of it; the projection and α make it less);
- `norm_made`: ⟨made, R⟩ / ‖R‖², the share of the residual change R that the Δy the post-norm
  mapping chose makes in the residual stream (core.blocks.mlp_out_change_for);
- `gap`: ‖z − h_L‖ before the layer is written (R is it divided by the layers left).
A diagnostic: it wraps two functions of the package (wrapped, not changed). Writes
diagnose_lone.jsonl beside itself. About five minutes at one torch thread.
"""

import json
from pathlib import Path

import torch

import factpatch.editing.alphaedit as alphaedit
import factpatch.editing.memit as memit
from factpatch.api import edit_many
from factpatch.core.blocks import mlp_contribution
from factpatch.core.cache import write_text_atomic
from factpatch.core.models import load_model
from factpatch.editing.patch import PatchStack
from factpatch.editing.request import EditRequest

REQUESTS = {  # the README's lone request, and four of CounterFact's first ten cases
    "Eiffel Tower": EditRequest("{} is located in the city of", "Eiffel Tower", "Rome"),
    "Shree Pundalik": EditRequest("{}, created in", "Shree Pundalik", "Sweden"),
    "Porsche 911": EditRequest("{}, created by", "Porsche 911", "Honda"),
    "Toko Yasuda": EditRequest("{}, the", "Toko Yasuda", "piano"),
    "The Icelandic Dream": EditRequest("The original language of {} was", "The Icelandic Dream", "Tamil"),
}


def main() -> None:
    lm = load_model("gemma3-270m")
    layers: list[dict] = []
    solve, norm_map = alphaedit.alphaedit_solve, memit.mlp_out_change_for

    def solve_recorded(K, P, preserved, L2):
        right = solve(K, P, preserved, L2)  # (d_in, n)
        k = K[:, 0]
        layers.append({"null_share": round(((P @ k).norm() ** 2 / k.norm() ** 2).item(), 4),
                       "key_gain": round((right[:, 0] @ k).item(), 4)})
        return right

    def norm_map_recorded(lm_, layer, mlp_out, resid_change, damping=1e-3, steps=2):
        change = norm_map(lm_, layer, mlp_out, resid_change, damping, steps)
        with torch.no_grad():
            y, r = mlp_out.float(), resid_change.float()
            made = mlp_contribution(lm_, layer, y + change.float()) - mlp_contribution(lm_, layer, y)
            layers.append({"layer": layer, "gap": round(r[0].norm().item(), 2),
                           "norm_made": round(((made[0] @ r[0]) / (r[0] @ r[0])).item(), 4)})
        return change

    alphaedit.alphaedit_solve, memit.mlp_out_change_for = solve_recorded, norm_map_recorded
    rows = []
    for name, request in REQUESTS.items():
        for damping in (1e-2, 1e-3):
            layers.clear()
            stack = PatchStack(lm)
            result = edit_many(lm, [request], method="alphaedit", stack=stack, progress=False,
                               overrides={"v_lr": 1.0, "post_norm_damping": damping})
            stack.revert()
            # the norm mapping runs before each layer's solve: pair them up
            per_layer = [{**a, **b} for a, b in zip(layers[0::2], layers[1::2])]
            for row, left in zip(per_layer, range(len(per_layer), 0, -1)):
                row["gap"] = round(row["gap"] * left, 2)  # R = (z − h_L) / layers left
            outcome = result.outcomes[0]
            rows.append({"subject": name, "damping": damping, "p_before": round(outcome.before[request.target_new], 4),
                         "p_after": round(outcome.after[request.target_new], 4), "layers": per_layer})
            print(json.dumps(rows[-1]), flush=True)
    write_text_atomic(Path(__file__).with_suffix(".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
