"""Presets and the ``proxy`` config section: shapes, overrides and the errors users see."""

from __future__ import annotations

import math

import pytest

from regmix_plugin.config import from_dict
from regmix_plugin.errors import ConfigError
from regmix_plugin.proxy.config import ProxyConfig, parse_split
from regmix_plugin.proxy.presets import PRESETS, resolve_preset
from regmix_plugin.study import study_from_dict


def test_paper_presets_have_the_paper_shapes() -> None:
    one = PRESETS["1m"]
    assert (one.num_layers, one.hidden_size, one.num_attention_heads, one.ffn_hidden_size) == (
        2,
        256,
        8,
        512,
    )
    sixty = PRESETS["60m"]
    assert (sixty.num_layers, sixty.hidden_size, sixty.num_attention_heads) == (10, 768, 8)
    assert sixty.ffn_hidden_size == 1536
    assert not one.tie_embeddings and not sixty.tie_embeddings
    # Non-embedding parameters near the names: about 1M and 60M.
    for name, target in (("1m", 1e6), ("60m", 60e6)):
        non_embedding = PRESETS[name].num_parameters(0)
        assert 0.5 * target < non_embedding < 1.5 * target, (name, non_embedding)


def test_overrides_apply_and_are_checked() -> None:
    p = resolve_preset("tiny", {"hidden_size": 96, "num_layers": 3})
    assert (p.hidden_size, p.num_layers) == (96, 3)
    assert p.num_attention_heads == PRESETS["tiny"].num_attention_heads
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['hidden'\]"):
        resolve_preset("tiny", {"hidden": 96})
    with pytest.raises(ConfigError, match="not divisible by num_attention_heads"):
        resolve_preset("tiny", {"hidden_size": 66})


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(ProxyConfig, {"vocab_size": 64, "preset": "2m"}, "proxy")
    message = str(info.value)
    assert "'2m' does not exist" in message
    for name in PRESETS:
        assert name in message


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({}, "required key(s) ['vocab_size'] missing"),
        ({"vocab_size": 64, "split": "100,0,0"}, "no validation part"),
        ({"vocab_size": 64, "split": "a,b"}, "not a Megatron split string"),
        ({"vocab_size": 64, "global_batch_size": 12, "micro_batch_size": 8}, "not a multiple"),
        ({"vocab_size": 64, "num_tokens": 100}, "less than one step"),
        ({"vocab_size": 64, "num_eval_tokens": 64, "seq_length": 128}, "num_eval_tokens 64"),
        ({"vocab_size": 64, "schedule": "linear"}, "'linear' is not one of"),
        ({"vocab_size": 64, "targets": {"t": []}}, "targets.t lists no prefixes"),
    ],
)
def test_bad_sections_fail_with_the_key(section: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(ProxyConfig, section, "proxy")
    assert needle in str(info.value)
    assert "proxy" in str(info.value)


def test_missing_section_is_an_error(tmp_path) -> None:
    study = study_from_dict({"run_dir": "run"}, tmp_path / "study.yaml")
    with pytest.raises(ConfigError, match="no `proxy`; add a `proxy` section"):
        study.require("proxy")


def test_split_and_step_arithmetic() -> None:
    assert parse_split("98,2,0") == pytest.approx((0.98, 0.02, 0.0))
    assert parse_split("9,1") == pytest.approx((0.9, 0.1, 0.0))
    assert parse_split("9/1") == parse_split("9,1")  # Megatron's grammar: ',' or '/'
    with pytest.raises(ValueError, match="no validation part"):
        parse_split("100,0,0")
    with pytest.raises(ValueError, match="not a Megatron split string"):
        parse_split("9;1")
    cfg = from_dict(
        ProxyConfig,
        {
            "vocab_size": 64,
            "seq_length": 16,
            "global_batch_size": 8,
            "micro_batch_size": 4,
            "num_tokens": 16 * 8 * 10 + 5,
            "warmup_fraction": 0.2,
        },
        "proxy",
    )
    assert cfg.tokens_per_step == 128
    assert cfg.num_steps == 10  # rounded down to whole steps
    assert cfg.num_warmup_steps == 2
    assert math.isclose(cfg.lr, 1e-3)
