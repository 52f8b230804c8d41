"""This machine's speed of the day: a 2,048² matrix product in float32 and bfloat16, and a 63-row
product of ROME's shape (63 × 576 by 576 × 1,536), in GFLOP/s. Run alone."""
import time
import torch

for dtype in (torch.float32, torch.bfloat16):
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    began, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    print(dtype, round(2 * 2048**3 * n / (time.perf_counter() - began) / 1e9, 1), "GFLOP/s")
a, w = torch.randn(63, 576), torch.randn(1536, 576)
began = time.perf_counter()
for _ in range(2000):
    torch.nn.functional.linear(a, w)
print("63-row float32", round(2 * 63 * 576 * 1536 * 2000 / (time.perf_counter() - began) / 1e9, 1), "GFLOP/s")
