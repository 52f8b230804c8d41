import time, torch
from torch.profiler import profile
from factpatch.core.models import load_model
from factpatch.core.generate import seeded
lm = load_model("smollm2-135m"); tok = lm.tokenizer
start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
def run(rows, n):
    prompt = torch.full((rows, 1), start, dtype=torch.long)
    with seeded(0):
        return lm.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=50,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=tok.eos_token_id)
run(8, 4)
for rows in (64, 128, 256):
    t = time.perf_counter(); run(rows, 32); print(rows, "rows: s/step %.3f" % ((time.perf_counter() - t) / 32))
with profile() as prof:
    run(128, 32)
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
