"""Architecture adapters name the right modules; unknown architectures fail clearly."""

import pytest
import torch
import transformers

from factpatch.core.errors import FactpatchError
from factpatch.core.models import ADAPTERS, EMBEDDED, adapter_for, describe_models, weights_fingerprint

EXPECTED = {
    "llama": ("model.layers.2.mlp.down_proj", torch.nn.Linear, False),
    "gemma3": ("model.layers.2.mlp.down_proj", torch.nn.Linear, False),
    "gpt2": ("transformer.h.2.mlp.c_proj", transformers.pytorch_utils.Conv1D, True),
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_adapter_finds_modules(tiny_models, family):
    lm = tiny_models[family]
    path, cls, transposed = EXPECTED[family]
    assert lm.adapter.mlp_out_path(2) == path
    assert isinstance(lm.module(path), cls)
    assert lm.adapter.mlp_out_transposed is transposed
    assert lm.n_layers == 4
    # the projection's input width is the MLP width (64) and its output the model width (32)
    weight = lm.module(path).weight
    assert weight.shape == ((64, 128) if family == "gpt2" else (32, 64)) or weight.shape == (128, 32)
    for qkv in lm.adapter.qkv_paths(1):
        assert lm.module(qkv).weight.requires_grad is False


def test_all_adapters_cover_requested_families():
    assert {"llama", "mistral", "qwen2", "gemma3_text", "gpt2", "gptj", "gpt_neox"} <= set(ADAPTERS)


def test_gptj_and_neox_adapters_match_real_modules():
    for config, cls in [
        (transformers.GPTJConfig(vocab_size=50, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64), transformers.GPTJForCausalLM),
        (transformers.GPTNeoXConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64), transformers.GPTNeoXForCausalLM),
        (transformers.Qwen2Config(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64), transformers.Qwen2ForCausalLM),
    ]:
        model = cls(config)
        adapter = adapter_for(model)  # raises if a named module is missing
        assert model.get_submodule(adapter.mlp_out_path(1)).weight.shape[0] == 32


def test_an_adapter_naming_a_missing_sublayer_is_refused(tiny_models, monkeypatch):
    """The block's sub-layers the trace engine runs (core.blocks) are checked when the model loads."""
    import dataclasses

    lm = tiny_models["llama"]
    broken = dataclasses.replace(ADAPTERS["llama"], mlp_sublayer=("pre_mlp_norm", "mlp"))
    monkeypatch.setitem(ADAPTERS, "llama", broken)
    with pytest.raises(FactpatchError, match="lacks the modules its adapter names: model.layers.0.pre_mlp_norm"):
        adapter_for(lm.model)


def test_unknown_architecture_is_refused_with_what_is_missing():
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    model = transformers.BertLMHeadModel(config)
    with pytest.raises(FactpatchError, match="unsupported architecture 'bert'.*ArchAdapter"):
        adapter_for(model)


def test_fingerprint_changes_with_one_weight(fresh_tiny):
    lm = fresh_tiny("llama")
    before = weights_fingerprint(lm.model)
    with torch.no_grad():
        lm.module(lm.adapter.mlp_out_path(0)).weight[0, 0] += 1e-3
    assert weights_fingerprint(lm.model) != before


def test_describe_models_lists_embedded(tmp_path):
    rows = describe_models(tmp_path)
    assert [r["name"] for r in rows] == list(EMBEDDED)
    assert all(r["cached"] is False for r in rows)  # empty cache directory


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_a_cast_copy_is_the_model_cast_and_shares_nothing_with_it(tiny_models, family):
    """cast_copy casts each parameter straight into the copy: the same values as casting a deep
    copy, buffers cast as before, tied weights still tied, and the original left as it was."""
    import copy

    from factpatch.core.models import cast_copy

    lm = tiny_models[family]
    before = {name: p.detach().clone() for name, p in lm.model.named_parameters()}
    cast = cast_copy(lm, torch.bfloat16).model
    reference = copy.deepcopy(lm.model).to(torch.bfloat16)
    for (name, p), (ref_name, r) in zip(cast.named_parameters(), reference.named_parameters(), strict=True):
        assert name == ref_name and p.dtype == torch.bfloat16 and torch.equal(p, r)
    for (name, b), (_, r) in zip(cast.named_buffers(), reference.named_buffers(), strict=True):
        assert b.dtype == r.dtype and torch.equal(b, r), name
    tied = lm.model.get_output_embeddings().weight is lm.model.get_input_embeddings().weight
    assert (cast.get_output_embeddings().weight is cast.get_input_embeddings().weight) == tied
    with torch.no_grad():
        for p in cast.parameters():
            p.add_(1.0)
    for name, p in lm.model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name


def test_a_model_on_the_cpu_keeps_its_fingerprint_and_cache_names(tiny_tokenizer):
    """--device cpu (the default) changes nothing: the fingerprint names the weights, and what is
    cached for them keeps the name it always had (the fingerprint's first 16 characters)."""
    from factpatch.core.models import from_pretrained_model, resolve_device
    from tiny import build_tiny

    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")
    moved = from_pretrained_model(build_tiny("llama", len(tiny_tokenizer)), tiny_tokenizer, device="cpu")
    left = from_pretrained_model(build_tiny("llama", len(tiny_tokenizer)), tiny_tokenizer)
    assert moved.fingerprint == left.fingerprint == weights_fingerprint(left.model)
    assert moved.device.type == "cpu" and moved.cache_name == moved.fingerprint[:16]
    with pytest.raises(FactpatchError, match="unknown device"):
        resolve_device("npu:0")


def test_two_loads_on_an_empty_cache_convert_the_model_once(tiny_dir, tmp_path, monkeypatch):
    """Two runs started together on an empty cache: one converts the embedded model while the other
    waits for it, and both load the complete directory (they used to convert it twice, the second
    replacing the first's directory while it was being read)."""
    import json
    import shutil
    import threading
    import time

    import factpatch.core.models as models

    conversions = []

    def convert(spec, target):  # a slow conversion: the tiny model's files, staged and renamed in
        conversions.append(threading.get_ident())
        with models.atomic_dir(target) as staging:
            time.sleep(0.5)
            for item in tiny_dir.iterdir():
                shutil.copy(item, staging / item.name)
            (staging / models.FINGERPRINT_FILE).write_text(json.dumps({"name": spec.name, "fingerprint": "f" * 64}))

    monkeypatch.setattr(models, "_convert_gguf", convert)
    # transformers' from_pretrained swaps torch's weight initialisers out and back in globally:
    # two threads inside it at once can leave them swapped out for every later test (models built
    # afterwards came out uninitialised). The loads are serialised; the conversions are what is tested.
    loading = threading.Lock()
    from_pretrained = transformers.AutoModelForCausalLM.from_pretrained

    def one_at_a_time(*args, **kwargs):
        with loading:
            return from_pretrained(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", one_at_a_time)
    name = next(iter(EMBEDDED))
    loaded, failures = [], []

    def load():
        try:
            loaded.append(models.load_model(name, tmp_path / "cache"))
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and len(conversions) == 1 and len(loaded) == 2
    ids = [lm.tokenizer("The Eiffel Tower").input_ids for lm in loaded]
    assert ids[0] == ids[1] and len(set(ids[0])) > 1


def test_replacing_a_directory_never_leaves_it_missing_or_half_deleted(tmp_path):
    """atomic_dir over an existing directory: until the new one is complete the old one is there
    whole; then the new one, and nothing of either left beside it."""
    from factpatch.core.cache import atomic_dir

    final = tmp_path / "model"
    final.mkdir()
    for name in ("a", "b", "c"):
        (final / name).write_text("old")
    with atomic_dir(final) as staging:
        for name in ("a", "b"):
            (staging / name).write_text("new")
        assert sorted(p.name for p in final.iterdir()) == ["a", "b", "c"]
    assert {p.name: p.read_text() for p in final.iterdir()} == {"a": "new", "b": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as staging:
            (staging / "a").write_text("newer")
            raise RuntimeError("conversion failed")
    assert {p.name: p.read_text() for p in final.iterdir()} == {"a": "new", "b": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
