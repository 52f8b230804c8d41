"""Gemma 3, AlphaEdit's first batch of 100 (CounterFact 0–99): z's step size v_lr and the damping of the
mapping through the norm, each scored on the batch (ES/PS/NS), the fixed text's perplexity and the
known_1000 facts the unedited model knows whose subject the batch leaves alone (kept of 489).
z at v_lr 0.5 is the saved z of runs/seq-gemma3-cf-2000 (batch 0); others are computed.
    .venv/bin/python runs/seq-gemma3-cf-2000/diagnosis/lr_damping_known.py alphaedit 0.5:1e-3 5:1e-3 ...
A third field sets z's step budget v_steps (default 25), e.g. 0.5:1e-3:50 (records from 2026-12-04 on
name it; the earlier ones ran 25). Records: lr_damping_known.jsonl (append the output)."""
import sys, time, json, dataclasses, logging
from pathlib import Path
import torch
from factpatch.core.models import load_model
from factpatch.editing.memit import compute_targets, TargetValues
from factpatch.editing.patch import applied
from factpatch.editing.registry import make_editor, method_params
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.health import perplexity, perplexity_text, KnownFacts
from factpatch.evaluation.run import score_case
from factpatch.editing.stats import CorpusSpec
logging.basicConfig(level=logging.WARNING)
lm = load_model("gemma3-270m")
cases = load_dataset("counterfact:../shared/datasets/counterfact-train.json").select(100)
requests = [c.request for c in cases]
method = sys.argv[1]
ids = perplexity_text(lm, 2048, None)
known = KnownFacts.check(lm, Path("../shared/datasets/known_1000.json"))
subjects = [r.subject for r in requests]
for arg in sys.argv[2:]:
    lr, damping, *rest = map(float, arg.split(":"))
    steps = int(rest[0]) if rest else 25
    params = dataclasses.replace(method_params(lm, method), v_lr=lr, post_norm_damping=damping, v_steps=steps)
    editor = make_editor(lm, method, params, None, False, CorpusSpec())
    path = Path(f"/tmp/g/z-{lr}.safetensors" if steps == 25 else f"/tmp/g/z-{lr}-{steps}.safetensors")
    t = time.time()
    if lr == 0.5 and steps == 25:
        targets = TargetValues.load(Path("runs/seq-gemma3-cf-2000/alphaedit/targets/0000.safetensors"), requests)
    elif path.exists():
        targets = TargetValues.load(path, requests)
    else:
        targets = compute_targets(lm, requests, params, editor.prefixes, progress=False)
        targets.save(path, requests)
    tz = time.time() - t
    patch, _ = editor.patch_and_targets(requests, None, targets)
    ratio = [round(float(d.tensor().norm() / dict(lm.model.named_parameters())[d.param].norm()), 3) for d in patch.deltas]
    with applied(lm, [patch]):
        m = [score_case(lm, c)[0] for c in cases]
        kept, total = known.kept(lm, subjects)
        out = dict(method=method, v_lr=lr, v_steps=steps, damping=damping, z_secs=round(tz, 1), steps=sum(targets.steps) / 100,
                   p_last=round(sum(targets.p_last) / 100, 3), ratio=ratio, ppl=round(perplexity(lm, ids), 3),
                   known=[kept, total], **{k: round(100 * sum(x[k] for x in m) / len(m), 1) for k in ("ES", "PS", "NS")})
    print(json.dumps(out), flush=True)
