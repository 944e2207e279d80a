"""The stages of a study: each a function of the study, the run layout and its explicit inputs,
returning its artifact.

``regmix run`` (:mod:`regmix_plugin.pipeline`) and the per-stage commands
(:mod:`regmix_plugin.commands`) call these same functions. They write their artifacts
atomically where the :class:`~regmix_plugin.layout.RunLayout` says, log, and never print or
parse arguments. The catalogue is built once by :func:`build_catalogue` and handed to every stage
that needs it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from regmix_plugin.config import from_dict, load_yaml, plain_yaml, to_dict
from regmix_plugin.domains import (
    Catalogue,
    catalogue_record,
    format_catalogue,
    load_catalogue,
    prefix_files,
)
from regmix_plugin.errors import ConfigError, DataError, RegMixError
from regmix_plugin.evaluate import (
    CHOSEN,
    INTERVAL_METHOD,
    PLANTED,
    EvaluateConfig,
    compare,
    l1_distance,
    summarize_runs,
)
from regmix_plugin.io import (
    atomic_write_json,
    atomic_write_text,
    check_output_folder,
    check_output_path,
    remove_stale_temps,
    remove_stale_temps_in,
)
from regmix_plugin.layout import RunLayout
from regmix_plugin.mixtures import (
    NO_REPLICATES,
    Mixtures,
    Replicates,
    SampleResult,
    load_weights_yaml,
    mixture_id,
    read_mixtures,
    read_replicates,
    sample_mixtures,
    write_mixtures,
    write_replicates,
)
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.proxy.pool import JobCallback, ProxyJob, train_proxies
from regmix_plugin.schedules import (
    is_schedule,
    optimize_schedule,
    run_average,
    sample_schedules,
    schedule_columns,
    split_schedule,
)
from regmix_plugin.study import StudyConfig
from regmix_plugin.tables import Table, check_weights_table, read_table

log = logging.getLogger(__name__)

Progress = Callable[[Any], None]


@dataclass(frozen=True)
class ProxyProgress:
    """Progress of a stage that trains its own proxies (evaluate, transfer)."""

    stage: str
    """The stage (``evaluate``, ``transfer``)."""
    num_done: int
    """Proxies finished."""
    num_total: int
    """Proxies the stage trains."""
    label: str
    """The proxy that just finished or is starting."""
    starting: bool = False
    """True when the proxy ``label`` is starting, False when it finished."""


# -- data and catalogue ----------------------------------------------------------------------------


def generate_data(study: StudyConfig, layout: RunLayout) -> Any:
    """``data``: write the planted-optimum corpus of a ``synthetic`` section (quickstart)."""
    from regmix_plugin.synthetic import generate

    return generate(study.require("synthetic"), study.config_dir)


def target_prefixes(study: StudyConfig) -> list[str]:
    """Every prefix of the proxy's target sets (absolute), in config order."""
    if study.proxy is None:
        return []
    return [p for prefixes in study.proxy.targets.values() for p in prefixes]


def data_record(study: StudyConfig, catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue with its files' sizes and times, and the target sets' files: what
    ``catalogue.json`` holds and what a sweep's fingerprint covers."""
    record = catalogue_record(catalogue)
    record["targets"] = [{"prefix": p, **prefix_files(p)} for p in target_prefixes(study)]
    return record


def build_catalogue(study: StudyConfig, layout: RunLayout | None = None) -> Catalogue:
    """``domains``: the catalogue (``.idx`` headers read once per process); with ``layout``,
    also ``domains.txt`` and ``catalogue.json`` (per prefix documents, tokens, file sizes and
    modification times, and the same for the target sets), which later stages take as input."""
    catalogue = load_catalogue(study.require("domains"))
    if layout is not None:
        record = data_record(study, catalogue)
        atomic_write_text(
            layout.domains_table, format_catalogue(catalogue, study.config_dir) + "\n"
        )
        atomic_write_json(layout.catalogue, record)
    return catalogue


# -- mixtures and sweep ----------------------------------------------------------------------------


def sample(study: StudyConfig, layout: RunLayout, catalogue: Catalogue) -> SampleResult:
    """``sample``: draw the proxy mixtures; write the summary, then the mixtures table."""
    config = study.require("sample")
    if config.strategy == "active":
        return sample_round0(study, layout, catalogue)
    if _phased(study):
        result = _sample_schedules(study, catalogue)
    else:
        result = sample_mixtures(catalogue, config)
    atomic_write_json(layout.mixtures_summary, result.summary)
    write_replicates(layout.mixture_seeds, result.replicates or NO_REPLICATES)
    write_mixtures(layout.mixtures, result.mixtures)
    return result


def sample_round0(study: StudyConfig, layout: RunLayout, catalogue: Catalogue) -> SampleResult:
    """``sample`` with ``strategy: active``: round 0 (:func:`regmix_plugin.active.initial_design`).
    A rounds record whose round 0 is this one keeps its later rounds (never re-picked): the table
    is round 0 followed by their picks."""
    from regmix_plugin import active

    result = active.initial_design(catalogue, study.require("sample"))
    record = active.read_record(layout.rounds)
    if record is None or record["rounds"][0]["ids"] != result.mixtures.ids:
        record = active.new_record(result.mixtures)
    atomic_write_json(layout.mixtures_summary, result.summary)
    write_replicates(layout.mixture_seeds, result.replicates or NO_REPLICATES)
    active.write_record(layout.rounds, record)
    write_mixtures(layout.mixtures, active.full_table(result.mixtures, record))
    return result


def replicates(layout: RunLayout) -> Replicates:
    """The replicate runs of the study's mixtures table (none without the file beside it)."""
    ids = read_table(layout.mixtures).ids if layout.mixtures.is_file() else None
    return read_replicates(layout.mixture_seeds, ids)


def sweep_description(study: StudyConfig, catalogue: Catalogue) -> dict[str, Any]:
    """What defines a sweep's runs besides the command: the domains and proxy settings and the
    data on disk (sizes and modification times) and the device and precision the proxies will
    resolve to, so changed data or placement is never mixed in silently."""
    record = data_record(study, catalogue)
    from regmix_plugin.proxy.runtime import planned_placement
    from regmix_plugin.sweep.launchers import devices_per_proxy

    proxy = study.section_data("proxy")
    return {
        "domains_section": study.section_data("domains"),
        "proxy": proxy,
        # What `device: auto` / `precision: auto` resolve to: CPU and GPU runs never mix.
        "placement": planned_placement(proxy, devices_per_proxy(study.sweep)),
        "data": record,
    }


def check_proxy_data(study: StudyConfig, catalogue: Catalogue) -> None:
    """Before any proxy launches: the target sets are readable prefixes, and every domain's
    validation part and every target set holds ``proxy.num_eval_tokens`` (a DataError naming
    the setting otherwise), so no proxy finds it out after launch and is retried for it."""
    from regmix_plugin.proxy.data import check_eval_data

    check_eval_data(study.require("proxy"), catalogue)
    if study.transfer is not None:
        # The larger scale reads the same validation parts and target sets, but may cut them
        # into longer sequences (transfer.proxy.seq_length): checked now, not after the sweep.
        try:
            check_eval_data(larger_proxy(study), catalogue)
        except DataError as exc:
            raise DataError(
                f"transfer.proxy (the larger scale, its settings over the proxy section's): {exc}"
            ) from None


def plan_sweep(study: StudyConfig, layout: RunLayout, catalogue: Catalogue) -> Any:
    """The sweep's plan (nothing written): one run per row of the mixtures table."""
    from regmix_plugin.sweep.runner import make_plan

    proxy = study.require("proxy")
    reps = replicates(layout)
    text = (
        f"# the study as run (from {study.config_path}; overrides {list(study.overrides)});\n"
        "# every default filled in, every path absolute; every proxy of this sweep reads it\n"
        + yaml.safe_dump(study.resolved(), sort_keys=False)
    )
    return make_plan(
        settings=study.sweep,
        sweep_dir=layout.sweep_dir,
        mixtures_path=layout.mixtures,
        domains=mixture_columns(study, catalogue),
        description=sweep_description(study, catalogue),
        study_text=text,
        cwd=study.config_dir,
        source=study.config_path,
        base_seed=proxy.seed,
        seed_offsets=reps.seed_offsets,
        replicate_groups=reps.groups,
    )


def sweep(
    study: StudyConfig,
    layout: RunLayout,
    catalogue: Catalogue,
    *,
    force_mix: bool = False,
    progress: Progress | None = None,
) -> Any:
    """``sweep``: train one proxy per mixture through the configured launcher."""
    from regmix_plugin.sweep.runner import run_sweep

    check_proxy_data(study, catalogue)
    if study.sample is not None and study.sample.strategy == "active" and not study.sweep.mixtures:
        return sweep_rounds(study, layout, catalogue, force_mix=force_mix, progress=progress)
    plan = plan_sweep(study, layout, catalogue)
    return run_sweep(plan, force_mix=force_mix, progress=progress)


def sweep_rounds(
    study: StudyConfig,
    layout: RunLayout,
    catalogue: Catalogue,
    *,
    force_mix: bool = False,
    progress: Progress | None = None,
) -> Any:
    """``sweep`` with ``sample.strategy: active``: sweep the table, then while budget and rounds
    remain, fit the ensemble on the finished runs, pick the next round
    (:func:`pick_round`), record it in ``rounds.json``, append it to the table and sweep again.
    A round in the record is never re-picked; an unfinished sweep (``sweep.wait: false``)
    returns, and the next call continues from it."""
    from regmix_plugin import active
    from regmix_plugin.sweep.runner import run_sweep

    config = study.require("sample")
    record = active.read_record(layout.rounds)
    if record is None:
        raise DataError(f"{layout.rounds} is missing: run the sample stage first (`regmix run`)")
    table = read_mixtures(layout.mixtures)
    n0 = len(record["rounds"][0]["ids"])
    round0 = Mixtures(ids=table.ids[:n0], names=table.names, weights=table.weights[:n0])
    full = active.full_table(round0, record)
    if full.ids != table.ids:  # killed between the record and the table: the record wins
        write_mixtures(layout.mixtures, full)
    num_replicates = len(replicates(layout).seed_offsets)
    while True:
        result = run_sweep(
            plan_sweep(study, layout, catalogue), force_mix=force_mix, progress=progress
        )
        budget_left = config.num_mixtures - active.spent(record, num_replicates)
        index = len(record["rounds"])
        if not result.ok or record.get("stopped") or budget_left <= 0:
            return result
        if index > config.active.num_rounds:
            return result
        entry = pick_round(
            study, layout, catalogue, record, index, min(budget_left, config.round_batch_size())
        )
        record["rounds"].append(entry)
        if entry.get("stopped") or not entry["ids"]:
            record["stopped"] = entry.get("stopped") or "no candidate far enough from the others"
        active.write_record(layout.rounds, record)
        write_mixtures(layout.mixtures, active.full_table(round0, record))
        log.info("round %d: %d mixtures picked", index, len(entry["ids"]))


def pick_round(
    study: StudyConfig,
    layout: RunLayout,
    catalogue: Catalogue,
    record: dict[str, Any],
    index: int,
    batch_size: int,
) -> dict[str, Any]:
    """One later round: collect the finished runs, fit the ensemble (``fit`` section, into
    ``rounds_model/``), pick ``batch_size`` mixtures inside the bounds and epoch caps."""
    from regmix_plugin import active
    from regmix_plugin.optimize import bound_arrays
    from regmix_plugin.regression import fit as fit_models
    from regmix_plugin.regression import load_model
    from regmix_plugin.simplex import tempered
    from regmix_plugin.sweep.collect import collect_runs

    config = study.require("sample")
    target = round_target(study)
    mixtures = read_weights_table(layout.mixtures, catalogue.names)
    results = collect_runs(
        layout.sweep_dir, settings=study.sweep.collect, mixture_ids=mixtures.ids
    ).table
    groups = [g for g in replicates(layout).groups if len(g) >= 2]
    fit_models(
        mixtures, results, [target], study.fit, layout.round_model_dir, replicates=groups or None
    )
    model = load_model(layout.round_model_dir)
    names = list(catalogue.names)
    lower, upper = bound_arrays(names, study.optimize)
    upper = np.minimum(upper, catalogue.max_weights(catalogue.num_target_tokens))
    proposal = active.propose_round(
        lambda x: model.predict_members(x, target),
        mixtures.values,
        prior=tempered(catalogue.prior(), config.temperature),
        strengths=config.strengths(),
        lower=lower,
        upper=upper,
        settings=config.active,
        batch_size=batch_size,
        seed=config.seed,
        round_index=index,
        num_units=config.num_units,
        min_weight=config.min_weight,
        level=study.report.interval_level,
    )
    picks = active.picks_table(proposal.picks, names)
    keep = [i for i, mid in enumerate(picks.ids) if mid not in set(mixtures.ids)]
    picks = Mixtures([picks.ids[i] for i in keep], names, picks.weights[keep])
    entry = active.round_entry(index, picks, proposal)
    previous = record["rounds"][-1] if index > 1 else None
    if active.has_stopped(previous, proposal, names, config.active):
        entry.update(
            ids=[], weights={}, stopped="the chosen mixture and its prediction stopped moving"
        )
    return entry


def round_target(study: StudyConfig) -> str:
    """The target the rounds minimise: ``optimize.target``, else the one ``fit.targets``."""
    if study.optimize.target is not None:
        return study.optimize.target
    if len(study.fit.targets) == 1:
        return study.fit.targets[0]
    raise ConfigError(
        "sample.strategy active needs the target to minimise: set optimize.target (or list "
        "exactly one column in fit.targets)"
    )


def collect(study: StudyConfig, layout: RunLayout) -> Any:
    """``collect``: the results table from the sweep's runs (missing runs are listed beside)."""
    from regmix_plugin.sweep.collect import collect_runs, write_results

    collected = collect_runs(layout.sweep_dir, settings=study.sweep.collect)
    write_results(collected, layout.results)
    return collected


# -- regression and choice -------------------------------------------------------------------------


def read_weights_table(path: Path, domains: Sequence[str] | None = None) -> Table:
    """A mixtures table, checked by the one validator (columns, finite, >= 0, rows sum to 1)."""
    table = read_table(path)
    check_weights_table(table, path, domains=None if domains is None else list(domains))
    return table


def read_results_table(path: Path, mixtures: Table, mixtures_path: Path) -> Table:
    """A results table, checked: a readable file with rows, some of them mixtures of
    ``mixtures`` (the one check ``fit`` and ``optimize`` share; a DataError names both files)."""
    if path.exists() and not path.is_file():
        raise DataError(f"results table {str(path)!r} is a folder; pass the CSV file")
    table = read_table(path)
    if not table.ids:
        raise DataError(
            f"{path} has no results (a header and no rows); collect them with `regmix collect`"
        )
    if not set(table.ids) & set(mixtures.ids):
        raise DataError(
            f"no mixture of {mixtures_path} (e.g. {mixtures.ids[:3]}) has a row in {path} (e.g. "
            f"{table.ids[:3]}); the results belong to other mixtures: collect the results of "
            "this sweep, or pass its mixtures table"
        )
    return table


def _optional_input(path: Path, what: str) -> bool:
    """Whether an optional input file is there; something else in its place is an error."""
    if path.exists() and not path.is_file():
        raise DataError(f"the {what} {str(path)!r} is not a file; pass the CSV file or remove it")
    return path.is_file()


def fit(
    study: StudyConfig,
    layout: RunLayout,
    *,
    targets: Sequence[str] = (),
    catalogue: Catalogue | None = None,
) -> Any:
    """``fit``: one regressor per target from the mixtures and results tables into ``model/``."""
    from regmix_plugin.regression import fit as fit_models

    check_output_path(layout.model_dir, "the model folder")
    remove_stale_temps(layout.model_dir)
    names = None if catalogue is None else mixture_columns(study, catalogue)
    mixtures = read_weights_table(layout.mixtures, names)
    results = read_results_table(layout.results, mixtures, layout.mixtures)
    # Replicate runs (the same mixture, other seeds) give each target's seed noise; a run that
    # has no result leaves its group (a group needs two results).
    present = set(mixtures.ids) & set(results.ids)
    groups = [[rid for rid in g if rid in present] for g in replicates(layout).groups]
    groups = [g for g in groups if len(g) >= 2]
    return fit_models(
        mixtures,
        results,
        list(targets),
        study.fit,
        layout.model_dir,
        replicates=groups or None,
    )


def optimize(study: StudyConfig, layout: RunLayout, catalogue: Catalogue) -> Any:
    """``optimize``: simulate candidates under the bounds and epoch caps; write ``weights.yaml``."""
    from regmix_plugin.optimize import (
        bound_arrays,
        observed_rows,
        prior_vector,
        write_weights_yaml,
    )
    from regmix_plugin.optimize import optimize as choose
    from regmix_plugin.regression import load_model

    if _phased(study):
        return _optimize_schedule(study, layout, catalogue)
    config = study.optimize
    for leftover in remove_stale_temps(layout.weights):
        log.info("optimize: removed %s, left by a killed earlier run", leftover)
    names = list(catalogue.names)
    lower, upper = bound_arrays(names, config)
    upper = np.minimum(upper, catalogue.max_weights(catalogue.num_target_tokens))
    model = load_model(layout.model_dir)
    observed = results = None
    has_mixtures = _optional_input(layout.mixtures, "mixtures table")
    if _optional_input(layout.results, "results table") and has_mixtures:
        mixtures = read_weights_table(layout.mixtures, names)
        results = read_results_table(layout.results, mixtures, layout.mixtures)
        observed = observed_rows(model, config.target, mixtures, results, str(layout.results))
    result = choose(
        model,
        prior_vector(config, catalogue),
        names,
        lower,
        upper,
        config,
        observed=observed,
        results=results,
    )
    log.info("optimize: %d model evaluations in %.1f s", result.num_evaluations, result.seconds)
    write_weights_yaml(layout.weights, result)
    return result


def emit(
    study: StudyConfig,
    catalogue: Catalogue,
    out_dir: Path,
    *,
    weights_path: Path | None = None,
    mixture: str | None = None,
    mixtures_path: Path | None = None,
) -> Any:
    """``emit``: the blend configs of one mixture (a weights file, or a row of a mixtures table)."""
    from regmix_plugin.emit import emit_blends

    if (mixture is None) == (weights_path is None):
        raise ConfigError("give exactly one of a mixture id (--mixture) or a weights file")
    check_output_folder(out_dir, "the blend folder (--out)")
    for leftover in remove_stale_temps_in(out_dir):
        log.info("emit: removed %s, left by a killed earlier run", leftover)
    if weights_path is not None:
        weights = load_weights_yaml(weights_path)
        source = f"weights {weights_path.name}"
    else:
        assert mixture is not None and mixtures_path is not None
        table = read_mixtures(mixtures_path)
        if table.names != catalogue.names:
            raise DataError(
                f"{mixtures_path}: columns {table.names} do not match the catalogue's domains "
                f"{catalogue.names}; sample again or use the matching config"
            )
        weights = table.row(mixture)
        source = f"{mixtures_path.name} row {mixture}"
    if is_schedule(weights):
        return _emit_schedule(study, catalogue, out_dir, weights, source)
    result = emit_blends(catalogue, weights, out_dir, study.emit, source=source)
    for line in result.warnings:
        log.warning("%s", line)
    return result


# -- evaluation and report -------------------------------------------------------------------------


def _candidates(
    study: StudyConfig, catalogue: Catalogue, layout: RunLayout, results: Table
) -> dict[str, dict[str, Any]]:
    """label -> {weights, mixture_id, and what else the report says of it}, chosen first."""
    cfg: EvaluateConfig = study.require("evaluate")
    names = catalogue.names
    out: dict[str, dict[str, Any]] = {CHOSEN: {"weights": load_weights_yaml(layout.weights)}}
    if "token_prior" in cfg.baselines:
        shares = dict(zip(names, map(float, catalogue.token_shares()), strict=True))
        out["token_prior"] = {"weights": shares}
    if "uniform" in cfg.baselines:
        out["uniform"] = {"weights": {n: 1.0 / len(names) for n in names}}
    if "best_proxy" in cfg.baselines:
        out["best_proxy"] = _best_proxy(cfg, layout, results)
    if study.synthetic is not None:
        out[PLANTED] = {"weights": dict(study.synthetic.hidden_weights)}
    if _phased(study):  # the schedule against the best single mixture of the same search
        single = _load_yaml_doc(layout.weights).get("schedule", {}).get("best_single_mixture")
        if isinstance(single, dict):
            out[BEST_SINGLE] = {"weights": {str(k): float(v) for k, v in single.items()}}
    for entry in out.values():
        entry.setdefault("mixture_id", mixture_id(entry["weights"]))
    return out


def _best_proxy(cfg: EvaluateConfig, layout: RunLayout, results: Table) -> dict[str, Any]:
    """The sweep mixture with the lowest measured target; a replicated mixture counts once,
    with the mean of its runs."""
    column = results.column(cfg.target)
    if np.all(np.isnan(column)):
        raise RegMixError(f"{layout.results} has no measured {cfg.target!r}: nothing to compare")
    reps = replicates(layout)
    value = dict(zip(results.ids, map(float, column), strict=True))
    best_id, best = "", math.inf
    seen: set[str] = set()
    for rid in results.ids:
        if rid in seen:
            continue
        group = [g for g in reps.group_of(rid) if g in value]
        seen.update(group)
        finite = [value[g] for g in group if math.isfinite(value[g])]
        if finite and float(np.mean(finite)) < best:
            best_id, best = group[0], float(np.mean(finite))
    mixtures = read_table(layout.mixtures)
    row = mixtures.row(best_id)
    return {
        "mixture_id": best_id,
        "weights": dict(zip(mixtures.columns, map(float, row), strict=True)),
        "sweep_target": best,
    }


def _progress_events(stage: str, total: int, progress: Progress | None) -> JobCallback | None:
    """The :func:`train_proxies` callback that reports :class:`ProxyProgress` to ``progress``."""
    if progress is None:
        return None
    report = progress

    def on_event(num_done: int, job: ProxyJob, starting: bool) -> None:
        report(ProxyProgress(stage, num_done, total, job.label, starting=starting))

    return on_event


def evaluate(
    study: StudyConfig,
    layout: RunLayout,
    catalogue: Catalogue,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``evaluate``: train proxies on the chosen mixture, the baselines and (with a
    ``synthetic`` section) the planted weights with ``evaluate.num_seeds`` seeds each; compare
    their measured target loss paired by seed (``evaluation.json``, see
    :mod:`regmix_plugin.evaluate`). ``progress`` receives a :class:`ProxyProgress` before and
    after each proxy."""
    cfg: EvaluateConfig = study.require("evaluate")
    proxy = study.require("proxy")
    results = read_table(layout.results)
    if cfg.target not in results.columns:
        raise ConfigError(
            f"evaluate.target {cfg.target!r} is not a column of {layout.results}; "
            f"choose one of {results.columns}"
        )
    candidates = _candidates(study, catalogue, layout, results)
    seeds = cfg.seeds(proxy.seed)
    jobs = [
        ProxyJob(
            proxy=dataclasses.replace(proxy, seed=seed),
            weights=entry["weights"],
            mixture_id=entry["mixture_id"],
            out_dir=layout.evaluate_run(label, seed),
            label=f"{label} seed {seed}",
        )
        for label, entry in candidates.items()
        for seed in seeds
    ]
    metrics = train_proxies(
        jobs,
        catalogue,
        eval_cache=layout.eval_cache,
        num_concurrent=cfg.num_concurrent,
        on_event=_progress_events("evaluate", len(jobs), progress),
    )
    per_job = iter(metrics)
    losses: dict[str, list[float]] = {
        label: [float(next(per_job)["metrics"].get(cfg.target, math.nan)) for _ in seeds]
        for label in candidates
    }
    out = evaluation_record(cfg, seeds, candidates, losses, study)
    atomic_write_json(layout.evaluation, out)
    return out


def evaluation_record(
    cfg: EvaluateConfig,
    seeds: list[int],
    candidates: dict[str, dict[str, Any]],
    losses: dict[str, list[float]],
    study: StudyConfig,
) -> dict[str, Any]:
    """``evaluation.json``: per mixture its per-seed losses, mean and std; per baseline the
    paired comparison with the chosen mixture."""
    runs: dict[str, dict[str, Any]] = {}
    for label, entry in candidates.items():
        summary = summarize_runs(losses[label])
        runs[label] = {
            **entry,
            "seeds": list(seeds),
            "target_losses": losses[label],
            **summary,
            # The one-seed format's key, kept for its readers (benchmarks/bench_quickstart.py).
            "target_loss": summary["mean"],
        }
    out: dict[str, Any] = {
        "target": cfg.target,
        "num_seeds": len(seeds),
        "seeds": list(seeds),
        "level": cfg.level,
        "interval": INTERVAL_METHOD,
        "runs": runs,
    }
    if study.synthetic is not None:
        hidden = dict(study.synthetic.hidden_weights)
        out["hidden_weights"] = hidden
        for r in runs.values():
            # A schedule is compared by its run-average mixture.
            r["l1_to_planted"] = l1_distance(run_average(r["weights"], list(hidden)), hidden)
    comparisons = {k: asdict(v) for k, v in compare(losses, cfg.level).items()}
    out["comparisons"] = comparisons
    baselines = [k for k in comparisons if k != PLANTED]
    out["chosen_beats_all"] = bool(baselines) and all(
        comparisons[k]["verdict"] == "beats" for k in baselines
    )
    return out


def transfer(
    study: StudyConfig,
    layout: RunLayout,
    catalogue: Catalogue,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``transfer``: train a spread subset of the sweep's mixtures and the chosen one at the
    larger proxy scale of ``transfer.proxy``; compare the ranks (``transfer.json``, see
    :mod:`regmix_plugin.transfer`). ``progress`` receives a :class:`ProxyProgress` per proxy."""
    from regmix_plugin.transfer import TransferConfig

    cfg: TransferConfig = study.require("transfer")
    proxy = study.require("proxy")
    large_proxy = larger_proxy(study)
    results = read_table(layout.results)
    if cfg.target not in results.columns:
        raise ConfigError(
            f"transfer.target {cfg.target!r} is not a column of {layout.results}; "
            f"choose one of {results.columns}"
        )
    subset, predicted_by = _transfer_subset(cfg, layout, results, catalogue)
    mixtures = read_table(layout.mixtures)
    plan: list[tuple[str, str, dict[str, float]]] = [
        (rid, rid, dict(zip(mixtures.columns, map(float, mixtures.row(rid)), strict=True)))
        for rid in subset
    ]
    chosen = load_weights_yaml(layout.weights)
    plan.append((CHOSEN, mixture_id(chosen), chosen))
    jobs = [("small", proxy, *plan[-1])] + [("large", large_proxy, *p) for p in plan]
    measured: dict[tuple[str, str], float] = {
        ("small", rid): float(results.column(cfg.target)[results.ids.index(rid)]) for rid in subset
    }
    trained = train_proxies(
        [
            ProxyJob(
                proxy=config,
                weights=weights,
                mixture_id=mid,
                out_dir=layout.transfer_run(scale, label),
                label=f"{label} ({scale})",
            )
            for scale, config, label, mid, weights in jobs
        ],
        catalogue,
        eval_cache=layout.eval_cache,
        num_concurrent=cfg.num_concurrent,
        on_event=_progress_events("transfer", len(jobs), progress),
    )
    for (scale, _, label, _, _), metrics in zip(jobs, trained, strict=True):
        measured[(scale, label)] = float(metrics["metrics"].get(cfg.target, math.nan))
    labels = [*subset, CHOSEN]
    out = _transfer_record(study, cfg, large_proxy, labels, measured, predicted_by)
    atomic_write_json(layout.transfer, out)
    return out


def _transfer_record(
    study: StudyConfig,
    cfg: Any,
    large_proxy: ProxyConfig,
    labels: list[str],
    measured: dict[tuple[str, str], float],
    predicted_by: str,
) -> dict[str, Any]:
    """``transfer.json``: both scales' target per mixture, Spearman rho with its bootstrap
    interval, and whether the chosen mixture (the last label) keeps its rank."""
    from regmix_plugin.transfer import rank_transfer

    small = [measured[("small", k)] for k in labels]
    large = [measured[("large", k)] for k in labels]
    result = rank_transfer(small, large, cfg, chosen_index=len(labels) - 1)
    return {
        "target": cfg.target,
        "small_proxy": study.section_data("proxy"),
        "large_proxy": to_dict(large_proxy),
        "subset_spread_by": predicted_by,
        "mixtures": {
            k: {"small": a, "large": b} for k, a, b in zip(labels, small, large, strict=True)
        },
        "spearman_rho": result.rho,
        "interval": {
            "level": cfg.level,
            "lo": result.lo,
            "hi": result.hi,
            "method": f"percentile bootstrap over the mixtures, {cfg.num_resamples} resamples, "
            f"seed {cfg.seed}",
            "num_undefined_resamples": result.num_undefined,
        },
        "min_rho": cfg.min_rho,
        "proxies_too_small": not result.lo >= cfg.min_rho,
        "chosen_rank": {
            "small": result.chosen_rank_small,
            "large": result.chosen_rank_large,
            "of": len(labels),
            "holds": result.chosen_rank_holds,
        },
        "notes": result.notes,
    }


def larger_proxy(study: StudyConfig) -> ProxyConfig:
    """The proxy section of the rank-transfer check: the sweep's with ``transfer.proxy``'s
    overrides (``model`` merged); a bad override is a ConfigError naming ``transfer.proxy``."""
    data = to_dict(study.require("proxy"))
    for key, value in study.require("transfer").proxy.items():
        if key == "model" and isinstance(value, dict):
            data["model"] = {**data.get("model", {}), **value}
        else:
            data[key] = value
    return from_dict(ProxyConfig, data, "transfer.proxy")


def _transfer_subset(
    cfg: Any, layout: RunLayout, results: Table, catalogue: Catalogue
) -> tuple[list[str], str]:
    """The sweep rows to train at the larger scale: mixtures measured at the proxy seed (no
    replicate runs), spread over the model's predicted target (the measured one when the model
    has no such target)."""
    from regmix_plugin.regression import load_model
    from regmix_plugin.transfer import spread_subset

    reps = replicates(layout)
    column = results.column(cfg.target)
    rows = [
        i
        for i, rid in enumerate(results.ids)
        if reps.seed_offset(rid) == 0 and math.isfinite(float(column[i]))
    ]
    if len(rows) < 3:
        raise RegMixError(
            f"{layout.results}: only {len(rows)} mixtures with a measured {cfg.target!r}; the "
            "rank transfer needs at least 3"
        )
    ids = [results.ids[i] for i in rows]
    model = load_model(layout.model_dir)
    if cfg.target in model.targets:
        mixtures = read_weights_table(layout.mixtures, catalogue.names)
        x = np.stack([mixtures.row(rid) for rid in ids])
        order = [mixtures.columns.index(d) for d in model.domains]
        values = model.predict(x[:, order], cfg.target)
        by = f"predicted {cfg.target}"
    else:
        values = column[rows]
        by = f"measured {cfg.target} (the model has no such target)"
    return spread_subset(ids, values, cfg.num_mixtures), by


def check_report_inputs(layout: RunLayout, columns: Sequence[str] | None = None) -> None:
    """Before the report writes anything: each artifact it reads that is there passes its
    kind's validator (the mixtures table, the model folder, ``weights.yaml``), so a damaged one
    is a DataError naming it, not a report of it; missing ones leave their sections out."""
    from regmix_plugin.regression import load_model

    names = None if columns is None else list(columns)
    if _optional_input(layout.mixtures, "mixtures table"):
        names = names or read_weights_table(layout.mixtures).columns
        read_weights_table(layout.mixtures, names)
    if layout.model_dir.exists():
        model = load_model(layout.model_dir)
        names = names or list(model.domains)
    if layout.weights.exists():
        weights = load_weights_yaml(layout.weights)
        row = Table("mixture", ["weights"], list(weights), np.array([list(weights.values())]))
        check_weights_table(row, layout.weights, domains=names)


def report(
    study: StudyConfig, layout: RunLayout, catalogue: Catalogue | None = None
) -> tuple[Path, Path]:
    """``report``: the HTML report and its Markdown twin (its inputs checked first)."""
    from regmix_plugin.report import write_report

    check_report_inputs(layout, None if catalogue is None else mixture_columns(study, catalogue))
    return write_report(layout, study.report, catalogue=catalogue)


# -- phase schedules (regmix_plugin.schedules; one phase: none of this runs) ----------------------

#: Evaluation label of the best single mixture found by the schedule search.
BEST_SINGLE = "best_single_mixture"


def _phased(study: StudyConfig) -> bool:
    """Whether the study searches schedules (a ``phases`` section with more than one phase)."""
    return study.phases is not None and study.phases.enabled


def mixture_columns(study: StudyConfig, catalogue: Catalogue) -> list[str]:
    """The mixtures table's columns: the domains, or ``domain@phase`` for schedules."""
    if _phased(study):
        assert study.phases is not None
        return schedule_columns(catalogue.names, study.phases.phase_names)
    return list(catalogue.names)


def _load_yaml_doc(path: Path) -> dict[str, Any]:
    """A YAML mapping read strictly (a duplicate key or a non-mapping is an error naming the
    file); a missing file is empty."""
    if not path.is_file():
        return {}
    return load_yaml(path)


def _sample_schedules(study: StudyConfig, catalogue: Catalogue) -> SampleResult:
    assert study.phases is not None
    config = study.require("sample")
    table = sample_schedules(catalogue, config, study.phases)
    summary = {
        "phases": to_dict(study.phases),
        "num_mixtures": len(table),
        "columns": table.names,
        "settings": to_dict(config),
    }
    return SampleResult(mixtures=table, summary=summary)


def _optimize_schedule(study: StudyConfig, layout: RunLayout, catalogue: Catalogue) -> Any:
    """``optimize`` over schedules: ``weights.yaml`` holds the chosen schedule's columns and a
    ``schedule`` section (phases, shares, mixtures, epochs, the best single mixture)."""
    from regmix_plugin.optimize import prior_vector
    from regmix_plugin.regression import load_model
    from regmix_plugin.schedules import phase_epochs

    assert study.phases is not None
    config = study.optimize
    model = load_model(layout.model_dir)
    target = config.target or (model.targets[0] if len(model.targets) == 1 else None)
    if target is None:
        raise ConfigError(f"the model has targets {model.targets}: set optimize.target")
    choice = optimize_schedule(
        model,
        target,
        catalogue,
        study.phases,
        num_candidates=config.num_candidates,
        top_k=config.top_k,
        seed=config.seed,
        min_strength=config.min_strength,
        max_strength=config.max_strength,
        batch_size=config.batch_size,
        prior=prior_vector(config, catalogue),
    )
    tokens = [s * catalogue.num_target_tokens for s in choice.shares]
    doc = {
        "weights": choice.weights,
        "target": target,
        "method": "schedule",
        "predicted": {"chosen": choice.predicted, BEST_SINGLE: choice.single_predicted},
        "schedule": {
            "phases": choice.phases,
            "shares": choice.shares,
            "mixtures": dict(zip(choice.phases, choice.mixtures, strict=True)),
            "epochs": phase_epochs(catalogue, choice.phases, choice.mixtures, tokens),
            "best_single_mixture": choice.single,
        },
        "num_drawn": choice.num_drawn,
    }
    atomic_write_text(layout.weights, plain_yaml(doc))
    log.info(
        "optimize: schedule over %d phases, predicted %.4g", len(choice.phases), choice.predicted
    )
    return choice


def _emit_schedule(
    study: StudyConfig, catalogue: Catalogue, out_dir: Path, weights: dict[str, float], source: str
) -> Any:
    from regmix_plugin.emit_phases import PhaseMixture, emit_schedule

    phases = study.phases
    if phases is None or phases.global_batch_size is None or phases.seq_length is None:
        raise ConfigError(
            "a schedule is emitted with Megatron-LM's phase transitions: set "
            "phases.global_batch_size and phases.seq_length (the final run's)"
        )
    names, shares, mixtures = split_schedule(weights, catalogue.names)
    result = emit_schedule(
        catalogue,
        [
            PhaseMixture(name=n, share=s, weights=m)
            for n, s, m in zip(names, shares, mixtures, strict=True)
        ],
        out_dir,
        study.emit,
        global_batch_size=phases.global_batch_size,
        seq_length=phases.seq_length,
        source=source,
    )
    for line in result.warnings:
        log.warning("%s", line)
    return result
