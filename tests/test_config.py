"""The YAML config loader: typed dataclasses, unknown keys and wrong types rejected with paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from regmix_plugin.config import from_dict, load_study, to_dict
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


def test_load_study_rejects_unknown_sections(tmp_path: Path) -> None:
    p = tmp_path / "study.yaml"
    p.write_text("run_dir: runs/x\nsampel: {}\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['sampel'\]"):
        load_study(p)
    p.write_text("run_dir: runs/x\n")
    assert load_study(p)["_config_dir"] == str(tmp_path.resolve())
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")
