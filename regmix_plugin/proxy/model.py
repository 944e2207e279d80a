"""The proxy model: a megatron-core ``GPTModel`` built from a preset.

Llama-style, as the paper's proxies: RMSNorm, SwiGLU, rotary positions, no biases, no dropout,
untied embeddings unless the preset ties them. The local layer spec (pure PyTorch) is the
default; Transformer Engine's spec is used on CUDA when it is installed and asked for.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch

from regmix_plugin.errors import MissingDependencyError
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.proxy.presets import ModelPreset

log = logging.getLogger(__name__)


def has_transformer_engine() -> bool:
    """Whether Transformer Engine can be imported (without importing it)."""
    return importlib.util.find_spec("transformer_engine") is not None


def layer_spec_name(cfg: ProxyConfig, device: torch.device) -> str:
    """``local`` or ``transformer_engine``, as ``proxy.transformer_impl`` resolves here."""
    if cfg.transformer_impl == "transformer_engine":
        if not has_transformer_engine():
            raise MissingDependencyError(
                "proxy.transformer_impl is 'transformer_engine' but Transformer Engine is not "
                "installed. Fix: pip install transformer_engine[pytorch], or set "
                "proxy.transformer_impl to 'local'"
            )
        return "transformer_engine"
    if cfg.transformer_impl == "auto" and device.type == "cuda" and has_transformer_engine():
        return "transformer_engine"
    return "local"


def transformer_config(preset: ModelPreset) -> Any:
    """megatron-core's ``TransformerConfig`` for ``preset`` (fp32 parameters, no fusions)."""
    from megatron.core.transformer import TransformerConfig

    return TransformerConfig(
        num_layers=preset.num_layers,
        hidden_size=preset.hidden_size,
        num_attention_heads=preset.num_attention_heads,
        ffn_hidden_size=preset.ffn_hidden_size,
        normalization="RMSNorm",
        gated_linear_unit=True,
        activation_func=torch.nn.functional.silu,
        add_bias_linear=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        # Initialise on the CPU: the same seed gives the same weights on every device.
        use_cpu_initialization=True,
        # The fused kernels need apex / CUDA extensions; proxies are small enough without them.
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        apply_rope_fusion=False,
    )


def build_model(preset: ModelPreset, cfg: ProxyConfig, device: torch.device) -> torch.nn.Module:
    """A freshly initialised ``GPTModel`` on ``device``; seed the RNGs before calling."""
    from megatron.core.models.gpt import GPTModel

    spec_name = layer_spec_name(cfg, device)
    if spec_name == "transformer_engine":
        from megatron.core.models.gpt.gpt_layer_specs import (
            get_gpt_layer_with_transformer_engine_spec,
        )

        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    model = GPTModel(
        config=transformer_config(preset),
        transformer_layer_spec=spec,
        vocab_size=cfg.vocab_size,
        max_sequence_length=cfg.seq_length,
        share_embeddings_and_output_weights=preset.tie_embeddings,
        position_embedding_type="rope",
    )
    log.info(
        "proxy model: %s layer spec, %d parameters",
        spec_name,
        sum(p.numel() for p in model.parameters()),
    )
    return model.to(device)
