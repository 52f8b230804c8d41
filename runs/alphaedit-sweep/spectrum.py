"""How concentrated C is at SmolLM2's edit layers 1-5 (docs/mass-editing.md, "Why the null space does
not protect the known facts"): the top eigenvalues' share of tr C, the reference threshold's count,
and the share of the key energy at each corpus sequence's first token (BOS), from the first 60
sequences of the default corpus.  .venv/bin/python runs/alphaedit-sweep/spectrum.py > runs/alphaedit-sweep/spectrum.txt"""
import torch
from factpatch.core.hooks import act_name, run_with_cache
from factpatch.core.models import load_model
from factpatch.editing.stats import CorpusSpec, key_second_moments, sample_token_corpus

layers = [1, 2, 3, 4, 5]
lm = load_model("smollm2-135m")
C = key_second_moments(lm, layers, CorpusSpec(), progress=False)
ids = sample_token_corpus(lm, CorpusSpec().n_tokens)[:60]
names = [act_name("mlp_key", l) for l in layers]
with torch.no_grad():
    cache = run_with_cache(lm, ids, names, stop_after=names[-1])
print("layer | top-1 / top-5 eigenvalue share of tr C | eigenvalues < 2e-2 | BOS share of key energy | top-1 share without BOS | largest coordinate of the top eigenvector")
for layer, name in zip(layers, names):
    e, V = torch.linalg.eigh(C[layer].double())
    e, top = e.flip(0), V[:, -1]
    k = cache[name].double()  # (sequences, 128, d)
    rest = k[:, 1:].reshape(-1, k.shape[-1])
    e_rest = torch.linalg.eigvalsh(rest.T @ rest / len(rest)).flip(0)
    print(f"{layer} | {e[0] / e.sum():.3f} / {e[:5].sum() / e.sum():.3f} | {int((e < 2e-2).sum())} | "
          f"{k[:, 0].pow(2).sum() / k.pow(2).sum():.3f} | {e_rest[0] / e_rest.sum():.3f} | "
          f"neuron {int(top.abs().argmax())} ({float(top.abs().max()):.2f})")
