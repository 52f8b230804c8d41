"""Where a bfloat16 trace of the Messi prompt spends its time: torch.profiler, by op and by shape."""
import sys, time, torch
from torch.profiler import profile, ProfilerActivity
from factpatch.core.models import load_model
from factpatch.tracing.prompt import trace_prompt
from factpatch.tracing.settings import NoiseSettings, TraceSettings, embedding_std

dtype = sys.argv[1] if len(sys.argv) > 1 else "bfloat16"
lm = load_model("smollm2-135m")
sigma = embedding_std(lm, progress=False)
settings = TraceSettings(noise=NoiseSettings(samples=10), dtype=dtype)
trace_prompt(lm, "Lionel Messi plays the sport of", "Lionel Messi", settings=TraceSettings(noise=NoiseSettings(samples=1), dtype=dtype), sigma=sigma, progress=False)
t = time.perf_counter()
trace_prompt(lm, "Lionel Messi plays the sport of", "Lionel Messi", settings=settings, sigma=sigma, progress=False)
print(dtype, "unprofiled trace", round(time.perf_counter() - t, 2), "s", flush=True)
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    t = time.perf_counter()
    trace_prompt(lm, "Lionel Messi plays the sport of", "Lionel Messi", settings=settings, sigma=sigma, progress=False)
    print(dtype, "profiled trace", round(time.perf_counter() - t, 2), "s")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=40))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=30, max_shapes_column_width=80))
