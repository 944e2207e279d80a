"""Named proxy model shapes.

The paper's proxies (RegMix, Liu et al., ICLR 2025) are Llama-style decoders: RMSNorm,
SwiGLU, rotary positions, no biases, untied input and output embeddings. ``1m`` and ``60m`` are
its two proxy sizes (the parameter counts exclude the embeddings); ``tiny`` and ``cpu-small`` are
the same architecture shrunk for the tests and the CPU quickstart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regmix_plugin.errors import ConfigError


@dataclass(kw_only=True, frozen=True)
class ModelPreset:
    """The shape of a proxy model."""

    num_layers: int
    """Transformer layers."""
    hidden_size: int
    """Width of the residual stream."""
    num_attention_heads: int
    """Attention heads; must divide ``hidden_size``."""
    ffn_hidden_size: int
    """Inner width of the SwiGLU MLP."""
    tie_embeddings: bool = False
    """Share the input embedding and the output layer (the paper's proxies do not)."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}; change one of them"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"the head size hidden_size/num_attention_heads = "
                f"{self.hidden_size // self.num_attention_heads} must be even for rotary positions"
            )

    def num_parameters(self, vocab_size: int) -> int:
        """Parameter count of the model built from this preset, embeddings included."""
        h, f = self.hidden_size, self.ffn_hidden_size
        per_layer = 4 * h * h + 3 * h * f + 2 * h  # qkv + proj, SwiGLU, two RMSNorm weights
        embeddings = vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * per_layer + h + embeddings


#: name -> shape. ``tiny`` is the default: a test proxy trains in seconds on the CPU.
PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=128),
    "cpu-small": ModelPreset(
        num_layers=2, hidden_size=128, num_attention_heads=4, ffn_hidden_size=256
    ),
    "1m": ModelPreset(num_layers=2, hidden_size=256, num_attention_heads=8, ffn_hidden_size=512),
    "60m": ModelPreset(num_layers=10, hidden_size=768, num_attention_heads=8, ffn_hidden_size=1536),
}


def resolve_preset(name: str, overrides: Mapping[str, int | bool] | None = None) -> ModelPreset:
    """The preset ``name`` with ``overrides`` applied; unknown names and keys are errors."""
    if name not in PRESETS:
        raise ConfigError(
            f"proxy.preset {name!r} does not exist; choose one of {sorted(PRESETS)} "
            "(or pick the nearest one and change its fields under proxy.model)"
        )
    changes: dict[str, Any] = dict(overrides or {})
    allowed = [f.name for f in dataclasses.fields(ModelPreset)]
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ConfigError(f"proxy.model: unknown key(s) {unknown}; allowed: {allowed}")
    try:
        return dataclasses.replace(PRESETS[name], **changes)
    except ValueError as exc:
        raise ConfigError(f"proxy.model (preset {name!r} with {changes}): {exc}") from exc
