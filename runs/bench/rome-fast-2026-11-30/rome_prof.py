import json, sys, time, torch
from torch.profiler import profile, ProfilerActivity
from factpatch.core.models import load_model
from factpatch.editing.registry import method_params, make_editor
from factpatch.editing.patch import PatchStack
from factpatch.editing.request import EditRequest
cases = json.load(open('/work/shared/datasets/counterfact-train.json'))[:3]
lm = load_model('smollm2-135m')
hp = method_params(lm, 'rome', preset=sys.argv[1] if len(sys.argv) > 1 else None)
ed = make_editor(lm, 'rome', hp, progress=False); ed.prepare()
stack = PatchStack(lm)
reqs = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in cases]
ed.patch([reqs[0]], stack)
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    t = time.perf_counter(); p = ed.patch([reqs[1]], stack); print("edit", time.perf_counter() - t, p.meta.get("v_steps_run"))
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=30, max_shapes_column_width=70))
