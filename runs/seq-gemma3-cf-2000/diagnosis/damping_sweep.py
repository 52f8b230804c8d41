"""The norm after Gemma 3's MLP (docs/mass-editing.md): AlphaEdit's first batch of 100 rebuilt from its
saved z with R mapped through the norm (core.blocks.mlp_out_change_for) at several damping:steps,
scored on the same 100 cases (ES/PS/NS), perplexity on the fixed text, ‖Δ_l‖/‖W_l‖ per layer.
    .venv/bin/python runs/seq-gemma3-cf-2000/diagnosis/damping_sweep.py alphaedit 1e-3:2 ...
Records: damping.jsonl (printed lines; the first three rows were run with 4 steps)."""
import dataclasses, json, logging, sys, time
from pathlib import Path
import torch
from factpatch.core.models import load_model
from factpatch.editing.memit import TargetValues, read_at_subject
from factpatch.editing.patch import applied
from factpatch.editing.registry import make_editor, method_params
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.health import perplexity, perplexity_text
from factpatch.evaluation.run import score_case
from factpatch.editing.stats import CorpusSpec
from factpatch.core.hooks import act_name
logging.basicConfig(level=logging.WARNING)
run = Path("runs/seq-gemma3-cf-2000")
lm = load_model("gemma3-270m")
cases = load_dataset("counterfact:../shared/datasets/counterfact-train.json").select(100)
requests = [c.request for c in cases]
method = sys.argv[1]
params = method_params(lm, method)
editor = make_editor(lm, method, params, None, False, CorpusSpec())
editor.prepare()
targets = TargetValues.load(run / "alphaedit" / "targets" / "0000.safetensors", requests)
ids = perplexity_text(lm, 2048, None)
zn = act_name("resid_post", 6)
gap0 = (targets.Z - read_at_subject(lm, requests, [""], [zn])[zn][:, 0]).norm(dim=-1)
def scores():
    m = [score_case(lm, c)[0] for c in cases]
    return {k: round(100 * sum(x[k] for x in m) / len(m), 1) for k in ("ES", "PS", "NS")}
print("unedited", round(perplexity(lm, ids), 3), scores(), flush=True)
for arg in sys.argv[2:]:
    damping, steps = float(arg.split(":")[0]), int(arg.split(":")[1])
    editor.params = dataclasses.replace(params, post_norm_damping=damping, post_norm_steps=steps)
    t = time.time()
    patch, _ = editor.patch_and_targets(requests, None, targets)
    t = time.time() - t
    ratio = [round(float(d.tensor().norm() / dict(lm.model.named_parameters())[d.param].norm()), 4) for d in patch.deltas]
    with applied(lm, [patch]):
        gap1 = (targets.Z - read_at_subject(lm, requests, [""], [zn])[zn][:, 0]).norm(dim=-1)
        out = dict(damping=damping, steps=steps, secs=round(t, 1), ratio=ratio, ppl=round(perplexity(lm, ids), 3),
                   gap=[round(float(gap0.mean()), 1), round(float(gap1.mean()), 1)], **scores())
    print(json.dumps(out), flush=True)
