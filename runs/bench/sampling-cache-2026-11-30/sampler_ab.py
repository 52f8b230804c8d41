"""generate's top-k sampling vs core.generate.sample_top_k: 128 rows x 64 tokens, fixed length, seed 0."""
import sys, time, torch
sys.path.insert(0, "src")
from factpatch.core.models import load_model
from factpatch.core.generate import seeded, sample_top_k, end_of_text_ids
lm = load_model("smollm2-135m"); tok = lm.tokenizer
start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
ROWS, LEN = 128, 64
prompt = torch.full((ROWS, 1), start, dtype=torch.long)
def gen():
    with seeded(0):
        return lm.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=50,
                                 max_new_tokens=LEN, min_new_tokens=LEN, pad_token_id=tok.eos_token_id)
def ours():
    with seeded(0):
        return sample_top_k(lm, prompt, LEN, 50, banned=end_of_text_ids(lm))
res = {}
for rnd in range(2):
    for name, f in ([("generate", gen), ("top-k-first", ours)] if rnd % 2 == 0 else [("top-k-first", ours), ("generate", gen)]):
        t = time.perf_counter(); out = f(); res.setdefault(name, []).append(time.perf_counter() - t)
        assert out.shape == (ROWS, LEN + 1)
for name, xs in res.items():
    print(name, ["%.1f" % x for x in xs], "tok/s %.0f" % (ROWS * LEN / min(xs)))
