"""The proxy model: a megatron-core ``GPTModel`` built from a preset.

Llama-style, as the paper's proxies: RMSNorm, SwiGLU, rotary positions, no biases, no dropout,
untied embeddings unless the preset ties them. The local layer spec (pure PyTorch) is the
default; Transformer Engine's spec is used on CUDA when it is installed and asked for.

With the local spec, ``proxy.attention: sdpa`` (the default) swaps megatron-core's unfused
``DotProductAttention`` for :class:`SDPAttention`, a core-attention module of the same protocol
that calls ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels
on GPUs, a fused kernel on CPUs) and never materialises the ``[b, heads, s, s]`` scores.

The local spec is pure PyTorch throughout: megatron-core picks the *final* norm of a block from
``LayerNormImpl`` (Transformer Engine's norm when TE is installed, apex's ``FusedLayerNorm``,
which rejects RMSNorm, when only apex is) unless the block spec names it, so
:func:`build_model` passes a block spec whose final norm is the same plain-PyTorch RMSNorm
(``WrappedTorchNorm`` → ``torch.nn.RMSNorm``) as the layers'.

The loss: on CUDA in bf16, megatron-core's fused cross-entropy (``labels=``,
``cross_entropy_loss_fusion``; Transformer Engine's kernel when installed, else the native
fused one) works on the bf16 logits; elsewhere the plain cross-entropy of :func:`token_losses`.
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


class SDPAttention(torch.nn.Module):
    """Core attention for megatron-core's ``SelfAttention`` on PyTorch's fused SDPA kernels.

    Same constructor and ``forward`` protocol as ``megatron.core.transformer.DotProductAttention``
    (query/key/value ``[s, b, heads, head_dim]`` in, ``[s, b, heads * head_dim]`` out); tensor
    and context parallelism are not supported (proxies use neither).
    """

    def __init__(
        self,
        config: Any,
        layer_number: int,
        attn_mask_type: Any,
        attention_type: str,
        attention_dropout: float | None = None,
        softmax_scale: float | None = None,
        cp_comm_type: str | None = None,
        pg_collection: Any = None,
    ) -> None:
        super().__init__()
        if config.tensor_model_parallel_size != 1 or config.context_parallel_size != 1:
            raise ValueError("SDPAttention supports neither tensor nor context parallelism")
        self.config = config
        self.attn_mask_type = attn_mask_type
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        self.softmax_scale = softmax_scale

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: Any = None,
        attention_bias: Any = None,
        packed_seq_params: Any = None,
    ) -> torch.Tensor:
        from megatron.core.transformer.enums import AttnMaskType

        if attention_bias is not None or packed_seq_params is not None:
            raise ValueError("SDPAttention supports neither attention_bias nor packed sequences")
        mask_type = self.attn_mask_type if attn_mask_type is None else attn_mask_type
        s, b, heads, head_dim = query.shape
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, d]
        if k.shape[1] != heads:  # grouped-query attention: repeat the key/value groups
            k = k.repeat_interleave(heads // k.shape[1], dim=1)
            v = v.repeat_interleave(heads // v.shape[1], dim=1)
        causal = mask_type == AttnMaskType.causal
        # Megatron's masks are True where attention is forbidden; SDPA's where it is allowed.
        mask = None if causal or attention_mask is None else ~attention_mask
        out = torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
            scale=self.softmax_scale,
        )
        return out.permute(2, 0, 1, 3).reshape(s, b, heads * head_dim)


def uses_fused_loss(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the proxy's loss is megatron-core's fused cross-entropy (CUDA and bf16 only)."""
    return device.type == "cuda" and dtype == torch.bfloat16


def transformer_config(preset: ModelPreset, *, fused_loss: bool = False) -> Any:
    """megatron-core's ``TransformerConfig`` for ``preset`` (fp32 parameters, no fusions but the
    cross-entropy's when ``fused_loss``)."""
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
        cross_entropy_loss_fusion=fused_loss,
        cross_entropy_fusion_impl="te" if fused_loss and has_transformer_engine() else "native",
    )


def token_losses(
    model: Any,
    tokens: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    fused: bool = False,
) -> torch.Tensor:
    """Per-token cross-entropy ``[b, s]`` (fp32) of a ``GPTModel`` without tensor parallelism.

    ``fused`` (a model built with ``fused_loss``, on CUDA in bf16): megatron-core's fused
    cross-entropy through ``labels=``, on the bf16 logits, with no fp32 copy of them.

    Otherwise the plain cross-entropy on the logits. megatron-core's unfused loss is the
    vocab-parallel cross-entropy, which runs three all-reduces over the (single-rank)
    tensor-parallel group per micro-batch; on a busy CPU each is a blocking wait on the process
    group's thread. Without tensor parallelism the plain cross-entropy is the same loss.
    """
    if fused:
        loss: torch.Tensor = model(tokens, position_ids, attention_mask, labels=labels)
        return loss
    logits = model(tokens, position_ids, attention_mask)  # [b, s, vocab]
    b, s, v = logits.shape
    losses = torch.nn.functional.cross_entropy(
        logits.float().view(b * s, v), labels.reshape(b * s), reduction="none"
    )
    return losses.view(b, s)


def local_block_spec(cfg: ProxyConfig, num_layers: int) -> Any:
    """The local (pure PyTorch) block spec: the layers and a final norm that is plain PyTorch."""
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.torch_norm import WrappedTorchNorm
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    layer = get_gpt_layer_local_spec(normalization="RMSNorm")
    if cfg.attention == "sdpa":
        layer.submodules.self_attention.submodules.core_attention = SDPAttention
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=WrappedTorchNorm)


def build_model(
    preset: ModelPreset, cfg: ProxyConfig, device: torch.device, *, fused_loss: bool = False
) -> torch.nn.Module:
    """A freshly initialised ``GPTModel`` on ``device``; seed the RNGs before calling."""
    from megatron.core.models.gpt import GPTModel

    spec_name = layer_spec_name(cfg, device)
    spec: Any
    if spec_name == "transformer_engine":
        from megatron.core.models.gpt.gpt_layer_specs import (
            get_gpt_layer_with_transformer_engine_spec,
        )

        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        spec = local_block_spec(cfg, preset.num_layers)
    model = GPTModel(
        config=transformer_config(preset, fused_loss=fused_loss),
        transformer_layer_spec=spec,
        vocab_size=cfg.vocab_size,
        max_sequence_length=cfg.seq_length,
        share_embeddings_and_output_weights=preset.tie_embeddings,
        position_embedding_type="rope",
    )
    log.info(
        "proxy model: %s layer spec, %s attention, %d parameters",
        spec_name,
        "transformer_engine" if spec_name == "transformer_engine" else cfg.attention,
        sum(p.numel() for p in model.parameters()),
    )
    return model.to(device)
