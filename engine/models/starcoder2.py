"""StarCoder2 (bigcode/starcoder2-3b, -7b, -15b): the Llama stack with LayerNorm (weight and
bias) for RMSNorm, a bias on every projection, an MLP without a gate (c_fc -> GELU, tanh
approximation -> c_proj), GQA and an optional sliding window. `layers.py` builds those
parts from the config (norm="layer", mlp="gelu", o_bias, mlp_bias); this class only
reads the checkpoint's MLP names.
"""

from __future__ import annotations

from .llama import LlamaForCausalLM

# HF name -> ours: the MLP's projections are up/down here, as in every other family (and in
# GGUF's ffn_up/ffn_down), so sharding, quantization and GGUF blocks treat them alike.
_MLP_NAMES = ((".mlp.c_fc.", ".mlp.up_proj."), (".mlp.c_proj.", ".mlp.down_proj."))


class Starcoder2ForCausalLM(LlamaForCausalLM):
    def checkpoint_name(self, name: str) -> str:
        for theirs, ours in _MLP_NAMES:
            name = name.replace(theirs, ours)
        return name
