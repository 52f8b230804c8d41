import dataclasses, sys, time, torch
from torch.profiler import profile
from factpatch.core.models import load_model
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing import memit
from factpatch.evaluation.data import load_dataset
dtype = sys.argv[1]
lm = load_model("smollm2-135m")
cases = load_dataset("counterfact:../shared/datasets/counterfact-train.json").select(32)
reqs = [c.request for c in cases]
params = dataclasses.replace(method_params(lm, "memit"), v_steps=4, early_stop_nll=0.0, v_dtype=dtype)
ed = make_editor(lm, "memit", params, progress=False); ed.prepare()
memit.compute_targets(lm, reqs[:4], params, ed.prefixes, progress=False)  # warm
t = time.perf_counter()
memit.compute_targets(lm, reqs, params, ed.prefixes, progress=False)
print(dtype, "seconds unprofiled", round(time.perf_counter() - t, 2))
t = time.perf_counter()
with profile(record_shapes=True) as prof:
    memit.compute_targets(lm, reqs, params, ed.prefixes, progress=False)
print(dtype, "seconds profiled", round(time.perf_counter() - t, 2))
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=30, max_shapes_column_width=80))
