"""The bfloat16 30-fact average against the float32 one (runs/trace-smollm2): the largest |ΔP| of
each averaged trace, the peak layers and the suggested layers. Prints JSON."""
import json
from pathlib import Path

runs = Path(__file__).resolve().parents[1]
exact = json.loads((runs / "trace-smollm2" / "summary.json").read_text())
approx = json.loads((runs / "trace-smollm2-bf16" / "summary.json").read_text())


def flat(x):
    if isinstance(x, (int, float)):
        return [x]
    if x is None:
        return []
    if isinstance(x, dict):
        return [v for k in sorted(x) for v in flat(x[k])]
    return [v for y in x for v in flat(y)]


kinds = {}
for kind in exact["kinds"]:
    a, b = flat(exact["kinds"][kind]["p"]), flat(approx["kinds"][kind]["p"])
    kinds[kind] = {"max_abs_dp": round(max(abs(x - y) for x, y in zip(a, b)), 4), "max_p": round(max(a), 4)}
print(json.dumps({
    "kinds": kinds,
    "peak_layers": {k: [exact["peaks"][k]["layer"], approx["peaks"][k]["layer"]] for k in exact["peaks"]},
    "edit_layer": [exact["choice"]["edit_layer"], approx["choice"]["edit_layer"]],
    "attn_layer": [exact["choice"]["attn_layer"], approx["choice"]["attn_layer"]],
    "p_clean": [exact["p_clean"], approx["p_clean"]],
    "p_corrupted": [exact["p_corrupted"], approx["p_corrupted"]],
}, indent=1))
