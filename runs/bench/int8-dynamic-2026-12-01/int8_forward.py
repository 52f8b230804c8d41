import time, torch, copy
from factpatch.core.models import load_model
lm = load_model("smollm2-135m")
m = lm.model
torch.set_num_threads(2)
ids = torch.randint(100, 10000, (80, 8))
q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(m), {torch.nn.Linear}, dtype=torch.qint8)
def t(model):
    with torch.no_grad():
        model(input_ids=ids[:4]); 
        s=time.perf_counter()
        for _ in range(5): out = model(input_ids=ids, use_cache=False).logits[:, -1]
        return (time.perf_counter()-s)/5, out
for r in range(2):
    a, oa = t(m); b, ob = t(q)
    pa, pb = oa.softmax(-1), ob.softmax(-1)
    print(f"fp32 {a:.3f}s  int8-dynamic {b:.3f}s  max|dP| {float((pa-pb).abs().max()):.4f}")
