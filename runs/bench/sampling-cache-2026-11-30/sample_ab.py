"""Corpus sampling: transformers' generate with its default dynamic cache vs a static cache, same seed."""
import time, torch, statistics
from factpatch.core.models import load_model
from factpatch.core.generate import seeded
lm = load_model("smollm2-135m")
tok = lm.tokenizer
start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
ROWS, LEN = 128, 64
def run(**kw):
    prompt = torch.full((ROWS, 1), start, dtype=torch.long)
    with seeded(0):
        t = time.perf_counter()
        out = lm.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=50,
                                max_new_tokens=LEN, min_new_tokens=LEN, pad_token_id=tok.eos_token_id, **kw)
        return time.perf_counter() - t, out
res = {}
for rnd in range(2):
    for name, kw in [("dynamic", {}), ("static", {"cache_implementation": "static"})]:
        s, out = run(**kw)
        res.setdefault(name, []).append(s)
        res[name + "_out"] = out
for name in ("dynamic", "static"):
    print(name, ["%.1f" % s for s in res[name]], "tok/s %.0f" % (ROWS * LEN / min(res[name])))
print("same tokens:", torch.equal(res["dynamic_out"], res["static_out"]),
      "share equal:", (res["dynamic_out"] == res["static_out"]).float().mean().item())
