"""Trial: torch.compile of each block's MLP and norms (forward methods, so hooks still run)."""
import dataclasses, sys, time, torch, logging
from factpatch.core.models import load_model
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing import memit
from factpatch.evaluation.data import load_dataset
N = int(sys.argv[1]) if len(sys.argv) > 1 else 32
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 2
WHAT = sys.argv[4] if len(sys.argv) > 4 else "mlp,norm"
lm = load_model("smollm2-135m")
cases = load_dataset("counterfact:../shared/datasets/counterfact-train.json").select(N)
reqs = [c.request for c in cases]
params = dataclasses.replace(method_params(lm, "memit"), v_steps=STEPS, early_stop_nll=0.0)
ed = make_editor(lm, "memit", params, progress=False); ed.prepare()
layers = lm.model.model.layers
plain = {}
compiled = {}
for i, layer in enumerate(layers):
    mods = []
    if "mlp" in WHAT: mods.append(("mlp", layer.mlp))
    if "norm" in WHAT: mods += [("in", layer.input_layernorm), ("post", layer.post_attention_layernorm)]
    if "attn" in WHAT: mods.append(("attn", layer.self_attn))
    for name, m in mods:
        plain[(i, name)] = m.forward
        compiled[(i, name)] = torch.compile(m.forward, dynamic=True)
def use(table):
    for (i, name), fn in table.items():
        m = {"mlp": layers[i].mlp, "in": layers[i].input_layernorm, "post": layers[i].post_attention_layernorm, "attn": layers[i].self_attn}[name]
        m.forward = fn
def once(label):
    t = time.perf_counter()
    out = memit.compute_targets(lm, reqs, params, ed.prefixes, progress=False)
    s = time.perf_counter() - t
    print(label, round(s, 2), flush=True)
    return out, s
use(compiled); t0 = time.perf_counter(); memit.compute_targets(lm, reqs[:4], params, ed.prefixes, progress=False); print("compile warm", round(time.perf_counter()-t0,1), flush=True)
use(plain); memit.compute_targets(lm, reqs[:4], params, ed.prefixes, progress=False)
res = {}
for r in range(ROUNDS):
    for label, table in (("plain", plain), ("compiled", compiled)):
        use(table); res[label] = once(label)[0]
a, b = res["plain"], res["compiled"]
za = a.Z
zb = b.Z
print(type(a))
try:
    print("rel diff", float((za - zb).norm() / za.norm()))
except Exception as e:
    print("diff failed", e)
