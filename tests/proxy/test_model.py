"""The proxy's megatron-core GPTModel: shapes, and the SDPA core attention against Megatron's."""

from __future__ import annotations

import pytest
import torch

from regmix_plugin.config import from_dict
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.proxy.cpu_compat import seed_model_parallel
from regmix_plugin.proxy.model import SDPAttention, build_model, token_losses
from regmix_plugin.proxy.runtime import proxy_runtime


def _config(**section) -> ProxyConfig:
    return from_dict(ProxyConfig, {"vocab_size": 50, "seq_length": 24, **section}, "proxy")


def test_sdpa_attention_matches_megatron_attention() -> None:
    cfg_sdpa, cfg_meg = _config(attention="sdpa"), _config(attention="megatron")
    with proxy_runtime(cfg_sdpa) as rt:
        models = {}
        for name, cfg in (("sdpa", cfg_sdpa), ("megatron", cfg_meg)):
            seed_model_parallel(3, rt.device)
            models[name] = build_model(cfg.model_preset(), cfg, rt.device)
        cores = {n: m.decoder.layers[0].self_attention.core_attention for n, m in models.items()}
        assert isinstance(cores["sdpa"], SDPAttention)
        assert not isinstance(cores["megatron"], SDPAttention)
        tokens = torch.randint(0, 50, (3, 25), generator=torch.Generator().manual_seed(0))
        pos = torch.arange(24).unsqueeze(0).expand(3, 24)
        mask = torch.triu(torch.ones(1, 1, 24, 24, dtype=torch.bool), diagonal=1)
        losses, grads = {}, {}
        for name, model in models.items():
            loss = model(tokens[:, :-1], pos, mask, labels=tokens[:, 1:])
            loss.mean().backward()
            losses[name] = loss.detach()
            grads[name] = model.decoder.layers[0].self_attention.linear_qkv.weight.grad
        torch.testing.assert_close(losses["sdpa"], losses["megatron"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads["sdpa"], grads["megatron"], rtol=1e-4, atol=1e-6)
        # The trainer's loss (plain cross-entropy on the logits) is megatron-core's own loss.
        with torch.no_grad():
            ours = token_losses(models["sdpa"], tokens[:, :-1], pos, mask, tokens[:, 1:])
        torch.testing.assert_close(ours, losses["sdpa"], rtol=1e-5, atol=1e-5)
        # Causality: changing the last token changes no earlier position's loss.
        model = models["sdpa"]
        changed = tokens.clone()
        changed[:, -2] = (changed[:, -2] + 1) % 50
        after = model(changed[:, :-1], pos, mask, labels=tokens[:, 1:]).detach()
        torch.testing.assert_close(after[:, :-1], losses["sdpa"][:, :-1])
        assert not torch.allclose(after[:, -1], losses["sdpa"][:, -1])


def test_transformer_engine_is_never_required() -> None:
    from regmix_plugin.errors import MissingDependencyError
    from regmix_plugin.proxy.model import has_transformer_engine, layer_spec_name

    cfg = _config()
    assert layer_spec_name(cfg, torch.device("cpu")) == "local"
    if not has_transformer_engine():
        with pytest.raises(MissingDependencyError, match="pip install"):
            layer_spec_name(_config(transformer_impl="transformer_engine"), torch.device("cpu"))
