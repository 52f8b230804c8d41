"""Corpus sampling: fp32 model vs the same model with int8 dynamic quantisation of its Linear layers."""
import time, torch, copy
from factpatch.core.models import load_model
from factpatch.core.generate import seeded
lm = load_model("smollm2-135m")
tok = lm.tokenizer
start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
ROWS, LEN = 128, 64
q8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(lm.model), {torch.nn.Linear}, dtype=torch.qint8)
def run(model):
    prompt = torch.full((ROWS, 1), start, dtype=torch.long)
    with seeded(0):
        t = time.perf_counter()
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=50,
                             max_new_tokens=LEN, min_new_tokens=LEN, pad_token_id=tok.eos_token_id)
        return time.perf_counter() - t, out
res = {}
for rnd in range(2):
    for name, model in [("fp32", lm.model), ("int8", q8)]:
        s, out = run(model)
        res.setdefault(name, []).append(s); res[name + "_out"] = out
for name in ("fp32", "int8"):
    print(name, ["%.1f" % s for s in res[name]], "tok/s %.0f" % (ROWS * LEN / min(res[name])))
print("share of tokens equal:", (res["fp32_out"] == res["int8_out"]).float().mean().item())
