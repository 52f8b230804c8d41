import json, sys, time, torch
from factpatch.core.models import load_model
from factpatch.editing.registry import method_params
from factpatch.editing.rome import compute_key_value, context_prefixes
from factpatch.editing.request import EditRequest
cases = json.load(open('/work/shared/datasets/counterfact-train.json'))[:int(sys.argv[1])]
lm = load_model('smollm2-135m')
for lr in [float(x) for x in sys.argv[2].split(',')]:
    hp = method_params(lm, 'rome', {'v_lr': lr})
    pre = context_prefixes(lm, hp)
    steps=[]; ps=[]; t=time.perf_counter()
    for r in cases:
        req = EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"])
        kv = compute_key_value(lm, req, hp, pre)
        steps.append(kv.steps); ps.append(round(kv.losses[-1]['p_target'],3))
        if lr==0.5 and len(steps)<=3: print([round(h['p_target'],2) for h in kv.losses], round(kv.Wk_star.norm().item(),2), round((kv.v_star-kv.Wk_star).norm().item(),2))
    print(lr, 'steps', steps, 'mean', sum(steps)/len(steps), 'p', ps, round(time.perf_counter()-t,1), flush=True)
