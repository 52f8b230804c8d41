"""cast_copy before (deep copy in float32, then cast) and after (each parameter cast into the copy)."""
import copy, time, torch
from factpatch.core.models import load_model, cast_copy
lm = load_model('smollm2-135m')
def before(lm, dtype):
    m = copy.deepcopy(lm.model).to(dtype); m.eval(); return m
for _ in range(4):
    t = time.perf_counter(); old = before(lm, torch.bfloat16); a = time.perf_counter() - t
    t = time.perf_counter(); new = cast_copy(lm, torch.bfloat16).model; b = time.perf_counter() - t
    print(f"before {a:.3f} s, now {b:.3f} s")
same = all(torch.equal(p, q) for p, q in zip(old.parameters(), new.parameters(), strict=True))
same_buffers = all(torch.equal(p, q) and p.dtype == q.dtype for p, q in zip(old.buffers(), new.buffers(), strict=True))
print("same parameters", same, "same buffers", same_buffers)
