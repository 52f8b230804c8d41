"""Where one ROME edit's time goes: k* and v* of CounterFact case 0 (SmolLM2, layer 4, the
defaults), once unprofiled and once under torch.profiler. Run alone.
    .venv/bin/python runs/bench/rome-profile-2026-11-30/rome_profile.py > runs/bench/rome-profile-2026-11-30/profile.txt"""
import json, sys, time
from pathlib import Path
import torch
from torch.profiler import profile
from factpatch.core.models import load_model
from factpatch.editing import rome
from factpatch.editing.registry import method_params
from factpatch.editing.request import EditRequest
case = int(sys.argv[1]) if len(sys.argv) > 1 else 0
r = json.loads(Path("../shared/datasets/counterfact-train.json").read_text())[case]
request = EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"])
lm = load_model("smollm2-135m")
hp = method_params(lm, "rome", {})
prefixes = rome.context_prefixes(lm, hp)
rome.compute_key_value(lm, request, hp, prefixes)
t = time.perf_counter(); kv = rome.compute_key_value(lm, request, hp, prefixes)
print("seconds unprofiled", round(time.perf_counter() - t, 2), "steps", kv.steps)
with profile(record_shapes=True) as prof:
    rome.compute_key_value(lm, request, hp, prefixes)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=40))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=24, max_shapes_column_width=80))
