"""How long the mapping through Gemma 3's post-MLP norm takes (core.blocks.mlp_out_change_for): 100
random rows at layer 4, 1/2/4 Gauss–Newton steps at the default damping. Prints one JSON line a setting.
    .venv/bin/python runs/seq-gemma3-cf-2000/diagnosis/mapping_time.py > runs/seq-gemma3-cf-2000/diagnosis/mapping_time.jsonl"""
import json, time
import torch
from factpatch.core.models import load_model
from factpatch.core.blocks import mlp_out_change_for
lm = load_model("gemma3-270m")
torch.manual_seed(0)
y, r = torch.randn(100, 640) * 0.2, torch.randn(100, 640) * 10
for steps in (1, 2, 4):
    started = time.perf_counter()
    mlp_out_change_for(lm, 4, y, r, steps=steps)
    print(json.dumps({"rows": 100, "layer": 4, "steps": steps, "seconds": round(time.perf_counter() - started, 2)}))
