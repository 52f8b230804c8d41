"""PyTorch's CPU attention kernels, forward and forward+backward, at a z step's shape
(192 rows, 9 heads, 6 query positions, 27 key positions, head size 64: SmolLM2, a group of 32
MEMIT requests). Usage: .venv/bin/python runs/bench/attention-backward-bf16-2026-11-30/sdpa_backward.py"""
import json, time, torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

B, H, Q, K, D = 192, 9, 6, 27, 64
for dtype in (torch.float32, torch.bfloat16):
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH):
        q, k, v = (torch.randn(B, H, n, D, dtype=dtype, requires_grad=True) for n in (Q, K, K))
        mask = torch.ones(B, 1, Q, K, dtype=torch.bool)
        with sdpa_kernel(backend):
            for _ in range(3):
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
            forward = total = 0.0
            for _ in range(20):
                t = time.perf_counter()
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                forward += time.perf_counter() - t
                out.sum().backward()
                total += time.perf_counter() - t
        print(json.dumps({"dtype": str(dtype), "backend": backend.name, "torch": torch.__version__,
                          "forward_ms": round(forward / 20 * 1e3, 2), "forward_backward_ms": round(total / 20 * 1e3, 2)}))
