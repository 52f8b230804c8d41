"""The paper's metrics on hand-made probability tables and texts (no model), plus zsRE token accuracy."""

import math

import numpy as np
import pytest
import torch

from factpatch.evaluation.metrics import (
    TargetScore,
    TfidfModel,
    bootstrap,
    bootstrap_mean,
    consistency,
    counterfact_case_metrics,
    generation_entropy,
    harmonic_mean,
    ngram_entropy,
    token_accuracy,
    words,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def ts(log_prob: float, n_tokens: int = 1) -> TargetScore:
    return TargetScore(log_prob, n_tokens)


def test_efficacy_paraphrase_neighborhood_scores_and_magnitudes():
    rewrite = [(ts(math.log(0.6)), ts(math.log(0.1)))]  # o* wins
    paraphrase = [(ts(math.log(0.3)), ts(math.log(0.2))), (ts(math.log(0.1)), ts(math.log(0.4)))]  # 1 of 2
    neighborhood = [  # o^c should stay ahead: 2 of 3
        (ts(math.log(0.1)), ts(math.log(0.5))),
        (ts(math.log(0.2)), ts(math.log(0.3))),
        (ts(math.log(0.4)), ts(math.log(0.1))),
    ]
    m = counterfact_case_metrics(rewrite, paraphrase, neighborhood)
    assert m["ES"] == 1.0 and m["EM"] == pytest.approx(0.5)
    assert m["PS"] == 0.5 and m["PM"] == pytest.approx(((0.3 - 0.2) + (0.1 - 0.4)) / 2)
    assert m["NS"] == pytest.approx(2 / 3)
    assert m["NM"] == pytest.approx(((0.5 - 0.1) + (0.3 - 0.2) + (0.1 - 0.4)) / 3)


def test_scores_and_magnitudes_read_the_mean_token_probability_as_the_paper():
    # o* has three tokens at P = e^-1 each (whole P = e^-3); o^c one token at e^-2.
    new, true = ts(-3.0, 3), ts(-2.0, 1)
    m = counterfact_case_metrics([(new, true)], [(new, true)], [(new, true)])
    assert m["ES"] == 1.0  # mean log-prob -1 > -2
    # magnitude: exp(−mean token NLL) as in kmeng01/rome experiments/summarize.py, not the product
    # of the token probabilities (e^-3 − e^-2 < 0 would even have the wrong sign here)
    assert m["EM"] == pytest.approx(math.exp(-1) - math.exp(-2))
    assert m["PM"] == pytest.approx(math.exp(-1) - math.exp(-2))
    assert m["NM"] == pytest.approx(math.exp(-2) - math.exp(-1))
    assert new.mean_token_prob == pytest.approx(math.exp(-1)) and new.prob == pytest.approx(math.exp(-3))


def test_metrics_left_out_without_prompts():
    m = counterfact_case_metrics([(ts(-3.0, 3), ts(-2.0, 1))])
    assert set(m) == {"ES", "EM"}  # no paraphrase / neighbourhood prompts: those metrics are left out


def test_ties_count_as_failures_both_ways():
    pair = (ts(-1.0), ts(-1.0))
    m = counterfact_case_metrics([pair], [pair], [pair])
    assert (m["ES"], m["PS"], m["NS"]) == (0.0, 0.0, 0.0)


def test_harmonic_mean():
    assert harmonic_mean([1.0, 0.5, 0.5]) == pytest.approx(0.6)
    assert harmonic_mean([1.0, 1.0, 0.0]) == 0.0
    assert harmonic_mean([0.9]) == pytest.approx(0.9)


def test_ngram_entropy_worked_example():
    tokens = "the cat the cat the dog".split()
    # bigrams: (the cat) ×2, (cat the) ×2, (the dog) ×1 -> p = .4, .4, .2
    expected = -(2 * 0.4 * math.log2(0.4) + 0.2 * math.log2(0.2))
    assert ngram_entropy(tokens, 2) == pytest.approx(expected)
    assert ngram_entropy(tokens, 2) == pytest.approx(1.5219, abs=1e-4)
    # unigrams: the ×3, cat ×2, dog ×1
    assert ngram_entropy(tokens, 1) == pytest.approx(-(0.5 * math.log2(0.5) + 2 / 6 * math.log2(2 / 6) + 1 / 6 * math.log2(1 / 6)))
    assert ngram_entropy(["one"], 2) == 0.0


def test_generation_entropy_combines_bigrams_and_trigrams():
    # "a b a b": bigrams ab ×2, ba ×1 -> H2 = 0.9183; trigrams aba, bab -> H3 = 1
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert generation_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert generation_entropy("a b a b") == pytest.approx(h2 / 3 + 2 / 3)
    # a repetitive text is less fluent than a varied one
    assert generation_entropy("Rome Rome Rome Rome Rome Rome Rome") < generation_entropy(
        "The Eiffel Tower is located in Rome, the capital of Italy, near the river."
    )


def test_words_split_punctuation():
    assert words("Paris, France. It's") == ["Paris", ",", "France", ".", "It", "'", "s"]


def test_tfidf_cosine_matches_scikit_learn_when_the_corpus_covers_the_words():
    sklearn = pytest.importorskip("sklearn.feature_extraction.text")
    corpus = [
        "Rome is the capital of Italy",
        "Paris is the capital of France",
        "the tower is in Paris",
        "Italy and France are countries",
    ]
    a, b = "the capital of Italy is Rome Rome", "Italy is a country and Rome a city"
    vectorizer = sklearn.TfidfVectorizer().fit(corpus)
    va, vb = vectorizer.transform([a, b]).toarray()
    expected = float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
    model = TfidfModel(corpus)
    # restrict to in-corpus words, as scikit-learn does, by comparing on those words only
    in_vocab = lambda text: " ".join(w for w in TfidfModel.terms(text) if w in model.df)  # noqa: E731
    assert model.cosine(in_vocab(a), in_vocab(b)) == pytest.approx(expected)


def test_tfidf_identical_disjoint_and_unseen_words():
    model = TfidfModel(["Rome is in Italy", "Paris is in France"])
    assert model.cosine("Rome Italy", "Rome Italy") == pytest.approx(1.0)
    assert model.cosine("Rome Italy", "Paris France") == 0.0
    assert model.cosine("", "Rome") == 0.0
    # a word the corpus never saw is kept, with the largest idf
    assert model.idf("Stockholm".lower()) == pytest.approx(math.log(3 / 1) + 1)
    assert model.idf("is") == pytest.approx(math.log(3 / 3) + 1)
    assert consistency(model, ["Rome", "is lovely"], ["Rome is in Italy"]) > consistency(
        model, ["Paris", "is lovely"], ["Rome is in Italy"]
    )


def test_bootstrap_mean_interval():
    values = [0.0] * 30 + [1.0] * 70
    e = bootstrap_mean(values, n_boot=2000, seed=1)
    assert e.mean == pytest.approx(0.7) and e.n == 100
    assert 0.58 < e.lo < 0.7 < e.hi < 0.8  # ±1.96·sqrt(.21/100) ≈ ±0.09
    assert bootstrap_mean(values, n_boot=2000, seed=1) == e  # deterministic for a seed
    constant = bootstrap_mean([0.5] * 10)
    assert (constant.lo, constant.mean, constant.hi) == pytest.approx((0.5, 0.5, 0.5))


def test_bootstrap_of_the_harmonic_mean_resamples_cases_jointly():
    es, ps, ns = [1.0] * 10, [1.0] * 5 + [0.0] * 5, [1.0] * 10
    e = bootstrap([es, ps, ns], lambda *m: harmonic_mean(m), n_boot=500)
    assert e.mean == pytest.approx(harmonic_mean([1.0, 0.5, 1.0]))
    assert e.lo < e.mean < e.hi
    assert e.to_dict() == {"mean": e.mean, "ci": [e.lo, e.hi], "n": 10}


def test_token_accuracy_matches_argmax(tiny_models):
    from factpatch.core.hooks import body, unembed
    from factpatch.core.tokens import encode_target

    lm = tiny_models["llama"]
    prompts, targets = ["The Eiffel Tower is located in", "Rome is the capital of"], ["Paris France", "Italy"]
    got = token_accuracy(lm, prompts, targets)
    for prompt, target, acc in zip(prompts, targets, got):
        p, t = encode_target(lm.tokenizer, prompt, target)
        with torch.no_grad():
            hidden = body(lm)(input_ids=torch.tensor([p + t[:-1]], device=lm.device)).last_hidden_state[0]
            predicted = unembed(lm, hidden).argmax(-1)[len(p) - 1 :].tolist()
        assert acc == pytest.approx(sum(a == b for a, b in zip(predicted, t)) / len(t))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_teacher_forced_scores_are_one_unpadded_pass_token_by_token(tiny_models, family):
    """Batched and right-padded, each target token's log-probability, top-1 hit and margin over the
    best other token equal those of the pair's own unpadded pass."""
    from factpatch.core.hooks import body, unembed
    from factpatch.core.scoring import teacher_forced
    from factpatch.core.tokens import encode_target

    lm = tiny_models[family]
    prompts = ["The Eiffel Tower is located in", "Rome is the capital of", "The Space Needle is in"]
    targets = ["Paris France", "Italy", "downtown Seattle"]
    got = teacher_forced(lm, prompts, targets, batch_size=2)
    for prompt, target, scored in zip(prompts, targets, got):
        p, t = encode_target(lm.tokenizer, prompt, target)
        with torch.no_grad():
            hidden = body(lm)(input_ids=torch.tensor([p + t[:-1]], device=lm.device)).last_hidden_state[0]
            log_p = torch.log_softmax(unembed(lm, hidden).float(), -1)[len(p) - 1 :]  # (len(t), V)
        for row, token, lp, hit, margin in zip(log_p, t, scored.log_probs, scored.hits, scored.margins, strict=True):
            others = torch.cat([row[:token], row[token + 1 :]])
            assert lp == pytest.approx(row[token].item(), abs=1e-5)
            assert margin == pytest.approx((row[token] - others.max()).item(), abs=1e-5)
            assert hit == (row.argmax().item() == token) == (margin > 0)
