"""The trace's attention shapes, forward only: PyTorch's fused CPU kernel against the composite
("math") one, keys/values repeated (transformers' sdpa with a mask) or packed (core.attention)."""
import time, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F
torch.manual_seed(0)
def bench(fn, n=300):
    for _ in range(20): fn()
    t = time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter() - t) / n * 1e3
for dtype in (torch.float32, torch.bfloat16):
    for B, Q in ((60, 8), (60, 2), (30, 9)):
        q = torch.randn(B, 9, Q, 64, dtype=dtype); k = torch.randn(B, 3, 9, 64, dtype=dtype); v = torch.randn_like(k)
        mask = torch.ones(B, 1, Q, 9, dtype=torch.bool).tril(9 - Q)
        kr, vr = k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)
        qp = q.reshape(B, 3, 3 * Q, 64); mp = mask.repeat(1, 1, 3, 1)
        out = {}
        for name, backend in (("fused", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
            with sdpa_kernel(backend):
                out[f"{name} repeated"] = bench(lambda: F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask))
                out[f"{name} packed"] = bench(lambda: F.scaled_dot_product_attention(qp, k, v, attn_mask=mp))
        print(str(dtype), (B, Q), {k: round(v, 3) for k, v in out.items()}, "ms", flush=True)
