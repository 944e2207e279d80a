"""The study: one typed, frozen config for a whole YAML file, built once at the entry point.

:func:`load_study` reads the YAML strictly (duplicate keys are errors), applies ``--set``
overrides, builds every section's dataclass (unknown keys and wrong types fail with the dotted
key), and resolves every relative path in it against the config file's folder, so that no stage
ever sees a relative path or the config's location again. :meth:`StudyConfig.resolved` is the
plain-data form written as ``config.resolved.yaml``; that file loads back into the same study.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from regmix_plugin.config import apply_overrides, from_dict, load_yaml, resolve_path, to_dict
from regmix_plugin.domains import DomainsConfig
from regmix_plugin.emit import EmitConfig, is_weighted_data_path
from regmix_plugin.errors import ConfigError
from regmix_plugin.evaluate import EvaluateConfig
from regmix_plugin.layout import RunLayout
from regmix_plugin.mixtures import SampleConfig
from regmix_plugin.optimize import OptimizeConfig
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.regression.fitting import FitConfig
from regmix_plugin.report import ReportConfig
from regmix_plugin.schedules import PhasesConfig
from regmix_plugin.sweep.config import SweepConfig
from regmix_plugin.synthetic import SyntheticConfig
from regmix_plugin.transfer import TransferConfig

T = TypeVar("T")

#: Section name -> (dataclass, required). Optional sections with defaults are always built.
SECTIONS: dict[str, tuple[type[Any], bool]] = {
    "synthetic": (SyntheticConfig, False),
    "domains": (DomainsConfig, False),
    "sample": (SampleConfig, False),
    "proxy": (ProxyConfig, False),
    "sweep": (SweepConfig, True),
    "fit": (FitConfig, True),
    "optimize": (OptimizeConfig, True),
    "emit": (EmitConfig, True),
    "evaluate": (EvaluateConfig, False),
    "transfer": (TransferConfig, False),
    "report": (ReportConfig, True),
    "phases": (PhasesConfig, False),
}
TOP_LEVEL_KEYS = ("run_dir", *SECTIONS)

_HINTS = {
    "run_dir": "add `run_dir: runs/my-study` (where the study's outputs go)",
    "domains": "add a `domains` section naming each domain's Megatron prefixes",
    "sample": "add `sample: {num_mixtures: N}`",
    "proxy": "add a `proxy` section with at least proxy.vocab_size",
}


@dataclass(kw_only=True, frozen=True)
class StudyConfig:
    """A whole study config: every section typed, every path absolute."""

    config_path: Path
    """The YAML file it was loaded from (absolute)."""
    config_dir: Path
    """Its folder: relative paths in the file were resolved against it."""
    run_dir: Path | None
    """Where every artifact goes (absolute); None when the file gives none."""
    synthetic: SyntheticConfig | None = None
    """The planted-optimum corpus to generate first (quickstart), if any."""
    domains: DomainsConfig | None = None
    """The domain catalogue."""
    sample: SampleConfig | None = None
    """The mixture design."""
    proxy: ProxyConfig | None = None
    """The proxy model and its training."""
    sweep: SweepConfig = dataclasses.field(default_factory=SweepConfig)
    """How proxies are launched and collected."""
    fit: FitConfig = dataclasses.field(default_factory=FitConfig)
    """The regression."""
    optimize: OptimizeConfig = dataclasses.field(default_factory=OptimizeConfig)
    """The search for the best mixture."""
    emit: EmitConfig = dataclasses.field(default_factory=EmitConfig)
    """Which blend configs to write."""
    evaluate: EvaluateConfig | None = None
    """Train and compare the chosen mixture and baselines, if wanted."""
    transfer: TransferConfig | None = None
    """Check that the proxies' ranking holds at a larger proxy scale, if wanted."""
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)
    """The report."""
    overrides: tuple[str, ...] = ()
    """The ``--set`` overrides applied on top of the file, in order."""
    phases: PhasesConfig | None = None
    """Phases of the run (shares of the target tokens): the design, proxies and optimizer then
    work on schedules, one mixture per phase (:mod:`regmix_plugin.schedules`); None or one
    phase: a single mixture, as without it."""

    def require(self, name: str) -> Any:
        """A section (or ``run_dir``) the caller cannot do without; absent is a ConfigError."""
        value = getattr(self, name)
        if value is None:
            raise ConfigError(f"{self.config_path}: no `{name}`; {_HINTS.get(name, 'add it')}")
        return value

    @property
    def layout(self) -> RunLayout:
        """The run folder's artifacts (``sweep.mixtures``, ``sweep.collect.results`` honoured)."""
        root = self.require("run_dir")
        return RunLayout(
            root=root, mixtures_table=self.sweep.mixtures, results_table=self.sweep.collect.results
        )

    def section_data(self, name: str) -> Any:
        """One section (or ``run_dir``) as plain data, defaults filled in (for fingerprints)."""
        return to_dict(getattr(self, name))

    def resolved(self) -> dict[str, Any]:
        """The study as plain data: loadable back by :func:`load_study`, every default shown."""
        out: dict[str, Any] = {"run_dir": None if self.run_dir is None else str(self.run_dir)}
        for name in SECTIONS:
            value = getattr(self, name)
            if value is not None:
                out[name] = to_dict(value)
        return out


def load_study(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> StudyConfig:
    """Read a study YAML, apply ``--set`` overrides, build and check every section."""
    config_path = Path(path).resolve() if Path(path).exists() else Path(path)
    data = load_yaml(Path(path))
    data = apply_overrides(data, overrides)
    return study_from_dict(data, config_path, tuple(overrides))


def study_from_dict(
    data: Mapping[str, Any], config_path: Path, overrides: tuple[str, ...] = ()
) -> StudyConfig:
    """Build a :class:`StudyConfig` from plain data whose relative paths are relative to
    ``config_path``'s folder."""
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}"
        )
    base = config_path.parent.resolve()
    sections: dict[str, Any] = {}
    for name, (cls, always) in SECTIONS.items():
        if name in data or always:
            built = from_dict(cls, data.get(name), name)
            sections[name] = _resolve_paths(name, built, base)
    return StudyConfig(
        config_path=config_path,
        config_dir=base,
        run_dir=_run_dir(data, base, config_path),
        overrides=overrides,
        **sections,
    )


def _run_dir(data: Mapping[str, Any], base: Path, config_path: Path) -> Path | None:
    if "run_dir" not in data or data["run_dir"] is None:
        return None
    value = data["run_dir"]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{config_path}: run_dir is {value!r}; it must be one folder path, for example "
            "`run_dir: runs/my-study`"
        )
    return Path(os.path.abspath(resolve_path(value, base)))


def _abs(value: str, base: Path) -> str:
    return str(resolve_path(value, base))


def _data_path(values: list[str], base: Path) -> list[str]:
    """A Megatron data-path list (prefixes, or weight/prefix pairs) with prefixes resolved."""
    pairs = is_weighted_data_path(values)
    return [v if pairs and i % 2 == 0 else _abs(v, base) for i, v in enumerate(values)]


def _resolve_paths(name: str, section: Any, base: Path) -> Any:
    """The section with every relative path in it made absolute against ``base``."""
    replace = dataclasses.replace
    if isinstance(section, SyntheticConfig):
        return replace(section, data_dir=_abs(section.data_dir, base))
    if isinstance(section, DomainsConfig):
        entries = [
            replace(e, prefixes=[_abs(p, base) for p in e.prefixes]) for e in section.entries
        ]
        return replace(section, entries=entries)
    if isinstance(section, ProxyConfig):
        targets = {k: [_abs(p, base) for p in v] for k, v in section.targets.items()}
        cache = None if section.eval_cache_dir is None else _abs(section.eval_cache_dir, base)
        return replace(section, targets=targets, eval_cache_dir=cache)
    if isinstance(section, SweepConfig):
        changes: dict[str, Any] = {}
        if section.mixtures is not None:
            changes["mixtures"] = resolve_path(section.mixtures, base)
        if section.collect.results is not None:
            changes["collect"] = replace(
                section.collect, results=resolve_path(section.collect.results, base)
            )
        return replace(section, **changes) if changes else section
    if isinstance(section, OptimizeConfig):
        if section.prior in ("tokens", "catalogue", "uniform"):
            return section
        return replace(section, prior=_abs(section.prior, base))
    if isinstance(section, EmitConfig):
        return replace(
            section,
            valid_data_path=_data_path(list(section.valid_data_path), base),
            test_data_path=_data_path(list(section.test_data_path), base),
        )
    return section
