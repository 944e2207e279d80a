"""IMPORT STAND-IN for Megatron-Bridge's ``megatron/bridge/peft/lora_layers.py`` (CPU tests only).

That module imports Transformer Engine unconditionally, and every ``megatron.bridge`` import
reaches it (models -> peft); Transformer Engine cannot be built without CUDA. The dataset path
tested here never runs LoRA code: this stand-in only lets the imports resolve. Any use of one of
its classes raises. It is installed into ``sys.modules`` before Megatron-Bridge is imported.
"""

import sys
import types

NAMES = ("LinearAdapter", "LoRALinear", "LoRATopKRouter", "TEFusedLoRALinear")


def _unavailable(name):
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{name} is an import stand-in (no Transformer Engine on this machine)")

    return type(name, (), {"__init__": __init__})


def install() -> None:
    """Register the stand-in as ``megatron.bridge.peft.lora_layers`` (idempotent)."""
    name = "megatron.bridge.peft.lora_layers"
    if name in sys.modules:
        return
    module = types.ModuleType(name, "import stand-in: see tests/stack/hosts/te_standin.py")
    for cls in NAMES:
        setattr(module, cls, _unavailable(cls))
    sys.modules[name] = module
