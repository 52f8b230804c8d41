"""Gemma 3's collapse (docs/mass-editing.md): rebuild AlphaEdit's batch 0 from its saved z and
measure what it does — ‖z − h_L‖ against ‖h_L‖, ‖Δ_l‖ against ‖W_l‖, perplexity on the fixed text.
    .venv/bin/python runs/seq-gemma3-cf-2000/diagnosis/first_batch.py"""
import json, logging
from pathlib import Path
import torch
from factpatch.core.models import load_model
from factpatch.editing.memit import TargetValues
from factpatch.editing.patch import applied
from factpatch.editing.registry import make_editor, method_params
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.health import perplexity, perplexity_text
from factpatch.editing.stats import CorpusSpec

logging.basicConfig(level=logging.WARNING)
run = Path("runs/seq-gemma3-cf-2000")
lm = load_model("gemma3-270m")
config = json.loads((run / "config.json").read_text())
params = method_params(lm, "alphaedit")
cases = load_dataset("counterfact:../shared/datasets/counterfact-train.json").select(100)
requests = [c.request for c in cases]
editor = make_editor(lm, "alphaedit", params, None, False, CorpusSpec())
editor.prepare()
targets = TargetValues.load(run / "alphaedit" / "targets" / "0000.safetensors", requests)
patch, _ = editor.patch_and_targets(requests, None, targets)
out = {"patch": patch.id, "recorded": json.loads((run / "batches.jsonl").read_text().splitlines()[0])["patch"]}
ids = perplexity_text(lm, 2048, None)
out["ppl_unedited"] = perplexity(lm, ids)
for d in patch.deltas:
    W = dict(lm.model.named_parameters())[d.param]
    out.setdefault("delta_over_W", {})[d.param] = float(d.tensor().norm() / W.norm())
with applied(lm, [patch]):
    out["ppl_after_batch0"] = perplexity(lm, ids)
out["z_norm_mean"] = float(targets.Z.norm(dim=-1).mean())
out["steps_mean"] = sum(targets.steps) / len(targets.steps)
out["p_last_mean"] = sum(targets.p_last) / len(targets.p_last)
print(json.dumps(out, indent=1))
