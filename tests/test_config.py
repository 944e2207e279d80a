"""The YAML config loader: typed dataclasses, unknown keys and wrong types rejected with paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from regmix_plugin.config import apply_overrides, from_dict, load_yaml, to_dict
from regmix_plugin.errors import ConfigError


@dataclass(kw_only=True, frozen=True)
class Inner:
    num_items: int
    """A count."""
    rate: float = 0.5
    """A rate in (0, 1]."""

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {self.rate}")


@dataclass(kw_only=True, frozen=True)
class Outer:
    name: str
    inner: Inner
    tags: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    maybe: int | None = None


def test_builds_nested_dataclasses_and_converts_yaml_numbers() -> None:
    cfg = from_dict(
        Outer,
        {"name": "x", "inner": {"num_items": "1e3", "rate": 1}, "weights": {"a": 1}, "maybe": None},
        "top",
    )
    assert cfg.inner.num_items == 1000 and isinstance(cfg.inner.num_items, int)
    assert cfg.inner.rate == 1.0 and cfg.weights == {"a": 1.0}
    assert to_dict(cfg)["inner"] == {"num_items": 1000, "rate": 1.0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "inner": {"num_items": 1}, "typo": 1}, r"top: unknown key\(s\) \['typo'\]"),
        ({"name": "x", "inner": {"num_itemz": 1}}, r"top.inner: unknown key"),
        ({"name": "x", "inner": {}}, r"top.inner: required key\(s\) \['num_items'\]"),
        ({"name": "x", "inner": {"num_items": 1.5}}, r"top.inner.num_items: expected an integer"),
        ({"name": "x", "inner": {"num_items": 1, "rate": 2}}, r"top.inner: rate must be in"),
        ({"name": 3, "inner": {"num_items": 1}}, r"top.name: expected a string"),
        ({"name": "x", "inner": {"num_items": 1}, "tags": "a"}, r"top.tags: expected a list"),
    ],
)
def test_bad_config_names_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data, "top")


def test_yaml_loader_refuses_duplicate_keys(tmp_path: Path) -> None:
    p = tmp_path / "dup.yaml"
    p.write_text("run_dir: a\nsample:\n  seed: 1\nsample:\n  num_mixtures: 4\n")
    with pytest.raises(ConfigError, match=r"key 'sample' appears twice.*first on line 2"):
        load_yaml(p)
    p.write_text("proxy:\n  lr: 1\n  lr: 2\n")
    with pytest.raises(ConfigError, match=r"line 3: key 'lr' appears twice"):
        load_yaml(p)


def test_yaml_loader_names_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"run_dir: \xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml(binary)


def test_overrides_set_typed_values_by_dotted_key() -> None:
    data = {"proxy": {"lr": 0.1, "model": {"hidden_size": 8}}, "run_dir": "a"}
    out = apply_overrides(
        data, ["proxy.lr=2e-3", "proxy.model.hidden_size=16", "sample.num_mixtures=7", "run_dir=b"]
    )
    assert out["proxy"]["lr"] == "2e-3"  # YAML reads 2e-3 as text; the int/float fields convert
    assert out["proxy"]["model"]["hidden_size"] == 16
    assert out["sample"] == {"num_mixtures": 7}
    assert out["run_dir"] == "b"
    assert data["proxy"]["lr"] == 0.1  # the input is not changed
    assert apply_overrides({}, ["sweep.env={A: '1'}"])["sweep"]["env"] == {"A": "1"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("proxy.lr", "expected section.key=value"),
        ("=3", "expected section.key=value"),
        ("proxy..lr=3", "expected section.key=value"),
        ("run_dir.x=3", "run_dir is 'a', not a section"),
        ("proxy.lr=[1, 2", "--set proxy.lr: not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides({"run_dir": "a", "proxy": {}}, [override])
