import json, time, torch, sys
sys.path.insert(0, "benchmarks")
from edit_latency import DEFAULT_DATASET
from pathlib import Path
from factpatch.core.models import load_model
from factpatch.core.hooks import act_name
from factpatch.editing.memit import SubjectReader
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing.request import EditRequest
records = json.loads(Path(DEFAULT_DATASET).read_text())[:100]
reqs = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in records]
lm = load_model("smollm2-135m")
ed = make_editor(lm, "memit", method_params(lm, "memit", {}), progress=False); ed.prepare()
z = act_name("resid_post", 5)
for rnd in range(2):
    t = time.perf_counter()
    for l in range(1, 6):
        SubjectReader(lm, reqs, ed.prefixes).read([act_name("mlp_key", l), z])
    fresh = time.perf_counter() - t
    t = time.perf_counter()
    r = SubjectReader(lm, reqs, ed.prefixes)
    for l in range(1, 6):
        t0 = time.perf_counter()
        r.read([act_name("mlp_key", l), z], keep=l)
        print(" kept read", l, round(time.perf_counter() - t0, 2))
    kept = time.perf_counter() - t
    print("fresh", round(fresh, 2), "kept", round(kept, 2), "threads", torch.get_num_threads())
