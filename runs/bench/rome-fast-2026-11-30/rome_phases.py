import json, time, torch, statistics
import factpatch.editing.rome as rome
from factpatch.core.models import load_model
from factpatch.editing.registry import method_params, make_editor
from factpatch.editing.patch import PatchStack
from factpatch.editing.request import EditRequest
cases = json.load(open('/work/shared/datasets/counterfact-train.json'))[:12]
lm = load_model('smollm2-135m')
hp = method_params(lm, 'rome', preset='fast')
ed = make_editor(lm, 'rome', hp, progress=False); ed.prepare()
stack = PatchStack(lm)
orig = rome.optimize_deltas; t_opt = []
def timed(*a, **k):
    t = time.perf_counter(); r = orig(*a, **k); t_opt.append(time.perf_counter() - t); return r
rome.optimize_deltas = timed
rows = []
for r in cases:
    req = EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"])
    t = time.perf_counter(); p = ed.patch([req], stack); tot = time.perf_counter() - t
    rows.append((round(tot, 2), round(t_opt[-1], 2), p.meta.get("v_steps_run")))
print(rows)
print("median total", statistics.median(r[0] for r in rows), "median opt", statistics.median(r[1] for r in rows),
      "per step", statistics.median(r[1] / r[2] for r in rows))
