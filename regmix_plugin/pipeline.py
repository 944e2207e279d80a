"""``regmix run``: every stage in order, into one run folder, resumable after a kill.

Stages (:mod:`regmix_plugin.stages`), each with the sections it reads and the artifacts it takes::

    data (only with a ``synthetic`` section) -> domains -> sample (unless ``sweep.mixtures``)
      -> sweep -> collect -> fit -> optimize -> emit -> evaluate (only with ``evaluate``)
      -> transfer (only with ``transfer``) -> report

A stage that finishes writes its marker (``RunLayout.marker``) last, holding a fingerprint of
the config sections it reads and the content of its input artifacts. On a rerun a stage whose
marker matches is skipped; a changed config or input reruns it, and so everything whose inputs
it rewrites. The ``domains`` stage also hashes the data's file sizes and modification times and
writes them into ``catalogue.json``, which the stages that read data take as input: rewriting a
domain's ``.bin/.idx`` reruns exactly those. Stages are resumable inside as well: the sweep never
retrains a finished proxy, every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from regmix_plugin import stages
from regmix_plugin.domains import Catalogue, data_signature
from regmix_plugin.errors import ConfigError, DataError, RegMixError
from regmix_plugin.fingerprint import canonical_json, hash_tree
from regmix_plugin.indexed import read_index_counts
from regmix_plugin.io import atomic_write_json, atomic_write_text, remove_stale_temps
from regmix_plugin.layout import RunLayout
from regmix_plugin.study import StudyConfig

log = logging.getLogger(__name__)

#: Bumped when a stage's outputs change meaning, so old markers no longer match.
PIPELINE_VERSION = 3


@dataclass
class Context:
    """What every stage action sees: the study, its layout, the catalogue once built."""

    study: StudyConfig
    layout: RunLayout
    progress: Callable[[Any], None] | None = None
    _catalogue: Catalogue | None = None

    @property
    def catalogue(self) -> Catalogue:
        """The study's catalogue, built on first use (once per process)."""
        if self._catalogue is None:
            self._catalogue = stages.build_catalogue(self.study)
        return self._catalogue


@dataclass(frozen=True)
class Stage:
    """One stage: the sections it reads, the artifacts it takes, when it applies, its action."""

    name: str
    sections: tuple[str, ...]
    inputs: tuple[str, ...]
    """``RunLayout`` attributes of the artifacts it reads."""
    action: Callable[[Context], dict[str, Any]]
    applies: Callable[[StudyConfig], bool] = field(default=lambda study: True)
    outputs: tuple[str, ...] = ()
    """``RunLayout`` attributes of what it writes: temporary leftovers of a killed earlier run
    beside them are removed before it runs."""


# -- stage actions: call the stage, return a small summary for the marker -------------------------


def _data(ctx: Context) -> dict[str, Any]:
    corpus = stages.generate_data(ctx.study, ctx.layout)
    return {"num_tokens": corpus.num_tokens}


def _domains(ctx: Context) -> dict[str, Any]:
    ctx._catalogue = stages.build_catalogue(ctx.study, ctx.layout)
    return {"domains": ctx._catalogue.names}


def _sample(ctx: Context) -> dict[str, Any]:
    result = stages.sample(ctx.study, ctx.layout, ctx.catalogue)
    return {"num_mixtures": len(result.mixtures)}


def _sweep(ctx: Context) -> dict[str, Any]:
    result = stages.sweep(ctx.study, ctx.layout, ctx.catalogue, progress=ctx.progress)
    if not result.ok:
        status = result.status
        failed = [r.mixture_id for r in status.by_state("failed")]
        if not failed:
            raise RegMixError(
                f"the sweep is submitted and not finished ({len(status.by_state('done'))} of "
                f"{status.num_total} runs done; sweep.wait is false): follow it with `regmix "
                f"status {ctx.layout.root}` and rerun `regmix run` when it is done"
            )
        raise RegMixError(
            f"the sweep did not finish: {len(failed)} failed run(s) {failed[:5]}; see "
            f"`regmix status {ctx.layout.root}` and the runs' train.log, then rerun `regmix run` "
            "(finished proxies are kept)"
        )
    return {"num_runs": result.status.num_total}


def _collect(ctx: Context) -> dict[str, Any]:
    collected = stages.collect(ctx.study, ctx.layout)
    return {"num_complete": collected.num_complete}


def _fit(ctx: Context) -> dict[str, Any]:
    summary = stages.fit(ctx.study, ctx.layout, catalogue=ctx.catalogue)
    return {"targets": [t.target for t in summary.targets]}


def _optimize(ctx: Context) -> dict[str, Any]:
    result = stages.optimize(ctx.study, ctx.layout, ctx.catalogue)
    return {"weights": dict(result.weights)}


def _emit(ctx: Context) -> dict[str, Any]:
    result = stages.emit(
        ctx.study, ctx.catalogue, ctx.layout.blend_dir, weights_path=ctx.layout.weights
    )
    return {"files": [p.name for p in result.files]}


def _evaluate(ctx: Context) -> dict[str, Any]:
    out = stages.evaluate(ctx.study, ctx.layout, ctx.catalogue, progress=ctx.progress)
    return {"chosen_beats_all": out["chosen_beats_all"]}


def _transfer(ctx: Context) -> dict[str, Any]:
    out = stages.transfer(ctx.study, ctx.layout, ctx.catalogue, progress=ctx.progress)
    return {"spearman_rho": out["spearman_rho"], "proxies_too_small": out["proxies_too_small"]}


def _report(ctx: Context) -> dict[str, Any]:
    html_path, md_path = stages.report(ctx.study, ctx.layout, ctx.catalogue)
    return {"html": html_path.name, "markdown": md_path.name}


PIPELINE: tuple[Stage, ...] = (
    Stage("data", ("synthetic",), (), _data, lambda s: s.synthetic is not None),
    Stage("domains", ("domains", "proxy"), (), _domains, outputs=("domains_table", "catalogue")),
    Stage(
        "sample",
        ("domains", "sample", "phases"),
        ("catalogue",),
        _sample,
        lambda s: s.sweep.mixtures is None,
        outputs=("mixtures", "mixtures_summary", "mixture_seeds", "rounds"),
    ),
    Stage(
        "sweep",
        ("domains", "proxy", "sweep"),
        ("catalogue", "mixtures", "mixture_seeds"),
        _sweep,
    ),
    Stage("collect", ("sweep",), ("mixtures",), _collect, outputs=("results", "results_missing")),
    Stage(
        "fit",
        ("fit",),
        ("mixtures", "mixture_seeds", "results"),
        _fit,
        outputs=("model_dir",),
    ),
    Stage(
        "optimize",
        ("optimize", "phases"),
        ("catalogue", "model_dir", "mixtures", "results"),
        _optimize,
        outputs=("weights",),
    ),
    Stage("emit", ("emit", "phases"), ("catalogue", "weights"), _emit, outputs=("blend_dir",)),
    Stage(
        "evaluate",
        ("proxy", "evaluate", "synthetic"),
        ("catalogue", "weights", "mixtures", "mixture_seeds", "results"),
        _evaluate,
        lambda s: s.evaluate is not None,
        outputs=("evaluation",),
    ),
    Stage(
        "transfer",
        ("proxy", "transfer"),
        ("catalogue", "model_dir", "weights", "mixtures", "mixture_seeds", "results"),
        _transfer,
        lambda s: s.transfer is not None,
        outputs=("transfer",),
    ),
    Stage(
        "report",
        ("report",),
        ("mixtures", "model_dir", "weights", "blend_dir", "evaluation", "transfer"),
        _report,
        outputs=("report_html", "report_markdown"),
    ),
)
STAGES = tuple(s.name for s in PIPELINE)


# -- bookkeeping -----------------------------------------------------------------------------------


def _volatile(stage: Stage, study: StudyConfig) -> Any:
    """What a stage depends on beyond config and artifacts: the data on disk for ``domains``."""
    if stage.name == "domains" and study.domains is not None:
        return data_signature(study.domains, stages.target_prefixes(study))
    return None


def stage_fingerprint(stage: Stage, ctx: Context) -> str:
    """Hash of the stage's config sections, its inputs' content and the pipeline version."""
    h = hashlib.sha256()
    # An absent `phases` section (one phase) leaves the hash as it was before phases existed.
    sections = {
        s: ctx.study.section_data(s)
        for s in stage.sections
        if not (s == "phases" and ctx.study.phases is None)
    }
    head = [PIPELINE_VERSION, stage.name, sections, _volatile(stage, ctx.study)]
    h.update(canonical_json(head).encode())
    for name in stage.inputs:
        h.update(name.encode())
        hash_tree(getattr(ctx.layout, name), h)
    return h.hexdigest()[:16]


def stage_is_done(stage: Stage, ctx: Context) -> bool:
    """True when the stage's completion marker matches its current fingerprint."""
    path = ctx.layout.marker(stage.name)
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("fingerprint")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    return bool(recorded == stage_fingerprint(stage, ctx))


def select_stages(study: StudyConfig, start: str | None, stop: str | None) -> list[Stage]:
    """The stages from ``start`` to ``stop`` (inclusive) that apply to this study."""
    for value, flag in ((start, "--from"), (stop, "--to")):
        if value is not None and value not in STAGES:
            raise ConfigError(f"{flag} {value!r} is not a stage; stages are {list(STAGES)}")
    i = STAGES.index(start) if start else 0
    j = STAGES.index(stop) if stop else len(STAGES) - 1
    if i > j:
        raise ConfigError(
            f"--from {start} comes after --to {stop}; stages run in order {list(STAGES)}"
        )
    return [s for s in PIPELINE[i : j + 1] if s.applies(study)]


#: Stages that train proxies: the data they read is checked before the first of them starts.
PROXY_STAGES = frozenset({"sweep", "evaluate", "transfer"})


def check_plan(study: StudyConfig, selected: list[Stage]) -> None:
    """Check, before any stage runs, the sections each selected stage needs."""
    names = {s.name for s in selected}
    study.require("run_dir")
    if names & {"domains", "sample", "sweep", "optimize", "emit", "evaluate", "transfer"}:
        study.require("domains")
    if "sample" in names:
        sample = study.require("sample")
        if "fit" in names:
            from regmix_plugin.regression.fitting import min_rows

            need = min_rows(study.fit.num_folds)
            if sample.strategy == "active":
                check_active_plan(study, need)
            if sample.num_mixtures < need:
                raise ConfigError(
                    f"sample.num_mixtures is {sample.num_mixtures}, but fit's "
                    f"{study.fit.num_folds}-fold cross-validation needs at least {need} proxies; "
                    "raise sample.num_mixtures or lower fit.num_folds (checked before any proxy "
                    "trains)"
                )
    if names & PROXY_STAGES:
        study.require("proxy")
    if "transfer" in names:
        stages.larger_proxy(study)


def check_active_plan(study: StudyConfig, min_rows: int) -> None:
    """``sample.strategy: active``: round 0 can be fitted, the ensemble exists, a target is
    named (checked before any proxy trains)."""
    sample = study.require("sample")
    if study.phases is not None and study.phases.enabled:
        raise ConfigError(
            "sample.strategy active does not search phase schedules yet: remove the phases "
            "section or set sample.strategy: dirichlet"
        )
    if sample.initial_size() < min_rows:
        raise ConfigError(
            f"sample.active.num_initial gives round 0 {sample.initial_size()} mixtures, but "
            f"fit's {study.fit.num_folds}-fold cross-validation needs at least {min_rows} to pick "
            "the next round; raise sample.active.num_initial (or sample.num_mixtures)"
        )
    if study.fit.num_members < 2:
        raise ConfigError(
            "sample.strategy active picks rounds by the bootstrap ensemble: set fit.num_members "
            f">= 2 (it is {study.fit.num_members})"
        )
    stages.round_target(study)


def check_proxy_data(study: StudyConfig, catalogue: Catalogue | None = None) -> None:
    """Before the first proxy starts: the target sets' files are readable Megatron prefixes
    (the domains' are read by the catalogue), and (given the catalogue) every validation part
    and target set holds ``proxy.num_eval_tokens``, so no proxy finds it out after launch."""
    if catalogue is not None:
        stages.check_proxy_data(study, catalogue)
        return
    proxy = study.require("proxy")
    for name, prefixes in proxy.targets.items():
        for prefix in prefixes:
            try:
                read_index_counts(prefix)
            except DataError as exc:
                raise DataError(f"proxy.targets.{name}: {exc}") from None


@dataclass
class RunPlan:
    """What ``regmix run`` would do: the resolved study and each selected stage's state."""

    study: StudyConfig
    layout: RunLayout
    states: dict[str, str]
    """stage -> ``done, would skip`` | ``would run``."""


def plan_run(study: StudyConfig, *, start: str | None = None, stop: str | None = None) -> RunPlan:
    """The stages ``regmix run`` would run and skip (nothing runs, nothing is written)."""
    selected = select_stages(study, start, stop)
    check_plan(study, selected)
    ctx = Context(study, study.layout)
    states = {
        s.name: ("done, would skip" if stage_is_done(s, ctx) else "would run") for s in selected
    }
    return RunPlan(study, ctx.layout, states)


def resolved_yaml(study: StudyConfig) -> str:
    """``config.resolved.yaml``: the study as run, loadable with ``regmix run`` as it is."""
    return (
        f"# regmix run of {study.config_path} with overrides {list(study.overrides)}: every "
        "default filled in, every path absolute\n"
        + yaml.safe_dump(study.resolved(), sort_keys=False)
    )


StageCallback = Callable[[str, str, float], None]


def run_pipeline(
    study: StudyConfig,
    *,
    start: str | None = None,
    stop: str | None = None,
    force: bool = False,
    progress: Callable[[Any], None] | None = None,
    on_stage: StageCallback | None = None,
) -> dict[str, str]:
    """Run the study's stages in order; return ``{stage: "done" | "skipped"}``.

    ``progress`` receives the sweep's status while it runs and a ``stages.ProxyProgress`` per
    proxy of the stages that train proxies in this process; ``on_stage(name, state, seconds)``
    is called after each stage (``state`` ``done`` or ``skipped``).
    """
    selected = select_stages(study, start, stop)
    check_plan(study, selected)
    layout = study.layout
    ctx = Context(study, layout, progress)
    checked = False
    if study.synthetic is None and {s.name for s in selected} & PROXY_STAGES:
        # The data is there already: check it before anything is written or run.
        todo = [s for s in selected if s.name in PROXY_STAGES]
        if force or not all(stage_is_done(s, ctx) for s in todo):
            check_proxy_data(study, ctx.catalogue)
            checked = True
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.resolved_config, resolved_yaml(study))
    atomic_write_json(
        layout.run_info,
        {"config_path": str(study.config_path), "overrides": list(study.overrides)},
    )
    outcome: dict[str, str] = {}
    for stage in selected:
        if not force and stage_is_done(stage, ctx):
            log.info("stage %s: done before, skipped", stage.name)
            outcome[stage.name] = "skipped"
            if on_stage is not None:
                on_stage(stage.name, "skipped", 0.0)
            continue
        if stage.name in PROXY_STAGES and not checked:
            check_proxy_data(study, ctx.catalogue)
            checked = True
        for name in stage.outputs:
            for leftover in remove_stale_temps(getattr(layout, name)):
                log.info("stage %s: removed %s, left by a killed earlier run", stage.name, leftover)
        log.info("stage %s: running", stage.name)
        t0 = time.perf_counter()
        info = stage.action(ctx)
        seconds = time.perf_counter() - t0
        atomic_write_json(
            layout.marker(stage.name),
            {"stage": stage.name, "fingerprint": stage_fingerprint(stage, ctx), "info": info},
        )
        log.info("stage %s: done in %.1f s", stage.name, seconds)
        outcome[stage.name] = "done"
        if on_stage is not None:
            on_stage(stage.name, "done", seconds)
    return outcome
