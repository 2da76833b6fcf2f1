"""Dense Llama family: Llama, SmolLM2, Qwen2 / Qwen2.5-Coder (q/k/v bias), Qwen3, Mistral, IQuest-Coder-V1
non-Loop; the stack StarCoder2 (models/starcoder2.py) shares, its norms and MLP chosen by the config.

Parameter names equal the Hugging Face checkpoint names, so loading is a name lookup.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from loopcoder.kernels.attention import AttentionMetadata
from loopcoder.kernels.decoder_cpu import (CpuDecoder, DecoderLayerWeights, DecoderShape, Projection, decoder_blocker,
                                           decoder_step_blocker)
from loopcoder.kernels.dispatch import kernel_mode
from loopcoder.kernels.gguf_linear import GGUFWeight

from ..config import ModelConfig
from ..errors import ModelLoadError
from ..quantization import QuantLinear
from .layers import DecoderLayer, norm_layer

# Buffers some exports write next to the weights; they are recomputed from the config.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        shared = self.layers[0].self_attn.rotary  # one RoPE table for the model, not one per layer
        for layer in self.layers:
            layer.self_attn.rotary = shared
        self.norm = norm_layer(cfg, cfg.hidden_size)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.cpu_decoder: CpuDecoder | None = None  # prepare_cpu_decoder()
        self.cpu_decoder_status = "not prepared"
        self._decoder_kv: tuple["KVCacheLike", list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def forward(self, input_ids: torch.Tensor, meta: AttentionMetadata, kv: "KVCacheLike") -> torch.Tensor:
        """input_ids: (T,) -> final hidden states (T, hidden), K/V written to `kv`."""
        h = self.model.embed_tokens(input_ids)
        stepped = self._decode_step_in_c(h, meta, kv)
        if stepped is not None:
            return self.model.norm(stepped.to(h.dtype))
        for i, layer in enumerate(self.model.layers):
            h = layer(h, meta, kv.layer(i))
        return self.model.norm(h)

    # -- the CPU decode step (kernels/decoder_cpu.py) ---------------------------------

    def prepare_cpu_decoder(self) -> str:
        """Run decode steps through the C step of every layer where this model's layers allow
        it (call after loading, quantizing and joining: the plan points at the weights as they
        are then). Returns, and keeps in `cpu_decoder_status`, whether it runs or why not."""
        self.cpu_decoder = None
        layers = self._decoder_layer_weights()
        if isinstance(layers, str):
            self.cpu_decoder_status = f"off: {layers}"
            return self.cpu_decoder_status
        cfg = self.config
        shape = DecoderShape(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                             cfg.intermediate_size, cfg.norm_eps)
        reason = decoder_blocker(shape, layers)
        if reason is None:
            self.cpu_decoder = CpuDecoder(shape, layers)
        self.cpu_decoder_status = "every layer in one C call" if reason is None else f"off: {reason}"
        return self.cpu_decoder_status

    def _decoder_layer_weights(self) -> list[DecoderLayerWeights] | str:
        def projection(module: nn.Module, name: str) -> Projection | str:
            if not (isinstance(module, QuantLinear) and isinstance(module.weight_q, GGUFWeight) and module.tp is None):
                return f"{name} is not GGUF blocks"
            return Projection(module.weight_q, module.bias)

        def joined_or_not(owner: nn.Module, joined: str, parts: tuple[str, ...]) -> tuple[Projection, ...] | str:
            names = (joined,) if getattr(owner, joined, None) is not None else parts
            found = tuple(projection(getattr(owner, n), n) for n in names)
            bad = [p for p in found if isinstance(p, str)]
            return bad[0] if bad else found

        if self.config.norm != "rms" or self.config.mlp != "swiglu":
            return f"its {self.config.norm} norms and {self.config.mlp} MLP (the C step has RMSNorm and SwiGLU)"
        out = []
        for layer in self.model.layers:
            if type(layer) is not DecoderLayer:
                return f"its layers are {type(layer).__name__}"
            attn, mlp = layer.self_attn, layer.mlp
            qkv = joined_or_not(attn, "qkv_proj", ("q_proj", "k_proj", "v_proj"))
            gate_up = joined_or_not(mlp, "gate_up_proj", ("gate_proj", "up_proj"))
            o, down = projection(attn.o_proj, "o_proj"), projection(mlp.down_proj, "down_proj")
            for part in (qkv, gate_up, o, down):
                if isinstance(part, str):
                    return part
            out.append(DecoderLayerWeights(
                input_norm=layer.input_layernorm.weight, post_norm=layer.post_attention_layernorm.weight, qkv=qkv, o=o,
                gate_up=gate_up, down=down, q_norm=attn.q_norm.weight if attn.qk_norm else None,
                k_norm=attn.k_norm.weight if attn.qk_norm else None, window=attn.window))
        return out

    def _decode_step_in_c(self, h: torch.Tensor, meta: AttentionMetadata, kv: "KVCacheLike") -> torch.Tensor | None:
        """The last layer's output of a decode step run in C, or None where it runs layer by layer."""
        decoder = self.cpu_decoder
        if decoder is None or h.device.type != "cpu" or h.shape[0] != meta.num_seqs or kernel_mode() != "auto":
            return None
        if self._decoder_kv is None or self._decoder_kv[0] is not kv:  # one list per cache: checked once, not per step
            self._decoder_kv = (kv, [kv.layer(i) for i in range(len(self.model.layers))])
        caches = self._decoder_kv[1]
        cos, sin = self.model.layers[0].self_attn.rotary.tables(max(meta.context_lens), h.device)
        if decoder_step_blocker(decoder, h, meta, caches, cos) is not None:
            return None
        return decoder.run(h, meta, caches, cos, sin)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (n, hidden) -> float32 logits (n, vocab)."""
        return self.lm_head(hidden).float()

    # -- weights ------------------------------------------------------------------

    def checkpoint_name(self, name: str) -> str:
        """Map a checkpoint tensor name to this module's parameter name (aliases live here)."""
        return name

    def expected_weights(self) -> set[str]:
        names = {name for name, _ in self.named_parameters(remove_duplicate=False)}
        if self.config.tie_word_embeddings:
            names.discard("lm_head.weight")
        return names

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Copy (name, tensor) pairs into the parameters; returns the names loaded.

        An unexpected name or a wrong shape raises ModelLoadError naming the tensor.
        """
        params = dict(self.named_parameters(remove_duplicate=False))
        loaded: set[str] = set()
        for raw_name, tensor in weights:
            if raw_name.endswith(_IGNORED_SUFFIXES):
                continue
            name = self.checkpoint_name(raw_name)
            if name == "lm_head.weight" and self.config.tie_word_embeddings:
                continue  # some tied exports still write the shared matrix twice
            param = params.get(name)
            if param is None:
                raise ModelLoadError(f"unexpected tensor {raw_name!r} in checkpoint for {self.config.model_type}")
            if tuple(tensor.shape) != tuple(param.shape):
                raise ModelLoadError(
                    f"tensor {raw_name!r} has shape {tuple(tensor.shape)}, expected {tuple(param.shape)}"
                )
            with torch.no_grad():
                param.copy_(tensor)
            loaded.add(name)
        return loaded

    def check_loaded(self, loaded: set[str], expected: set[str] | None = None) -> None:
        """Raise ModelLoadError naming what `expected` (default: every parameter) lacks."""
        missing = sorted((self.expected_weights() if expected is None else expected) - loaded)
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ModelLoadError(f"checkpoint lacks {len(missing)} tensor(s): {shown}")

    def init_random(self, seed: int = 0, std: float = 0.02) -> None:
        """Random weights in the published shapes, for benchmarks and unit tests.

        Drawn on the parameters' device (CPU and CUDA generators give different values for
        one seed): a 40B model on a GPU fills in about a second, where the CPU would take many
        minutes."""
        device = next(self.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, std, generator=gen)


class KVCacheLike:
    """What a model needs from a KV cache: the (k, v) page tensors of cache layer i."""

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - protocol
        raise NotImplementedError
