"""Commands of the single stages: domains, sample, train-proxy, fit, predict, optimize, emit,
report."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin import stages
from regmix_plugin.commands import add_set_argument, add_study_arguments, load_study_args, say
from regmix_plugin.config import to_dict
from regmix_plugin.domains import format_catalogue
from regmix_plugin.errors import ConfigError
from regmix_plugin.layout import RunLayout
from regmix_plugin.study import StudyConfig, load_study

# -- domains ---------------------------------------------------------------------------------------


def configure_domains(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix domains``."""
    add_study_arguments(parser)


def command_domains(args: argparse.Namespace) -> int:
    """``regmix domains CONFIG``: print the catalogue as a table."""
    study = load_study_args(args)
    say(format_catalogue(stages.build_catalogue(study), study.config_dir))
    return 0


# -- sample ----------------------------------------------------------------------------------------


def configure_sample(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix sample``."""
    add_study_arguments(parser)
    parser.add_argument("--out", default=None, help="output folder (default: the run_dir)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved sample config and stop"
    )


def command_sample(args: argparse.Namespace) -> int:
    """``regmix sample CONFIG``: draw the mixtures and print the summary."""
    from regmix_plugin.mixtures import format_summary

    study = load_study_args(args)
    if args.dry_run:
        say(json.dumps(to_dict(study.require("sample")), indent=2))
        return 0
    layout = RunLayout(Path(args.out)) if args.out else study.layout
    result = stages.sample(study, layout, stages.build_catalogue(study))
    say(format_summary(result.summary))
    say(f"wrote {layout.mixtures} and {layout.mixtures_summary}")
    return 0


# -- train-proxy -----------------------------------------------------------------------------------


def configure_train_proxy(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix train-proxy``."""
    add_study_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--mixture", metavar="ID", help="train the row ID of the mixtures table")
    which.add_argument("--weights", metavar="FILE", help="train the mixture of a weights YAML")
    parser.add_argument(
        "--mixtures", metavar="FILE", help="mixtures table (default: <run_dir>/mixtures.csv)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: <run_dir>/proxies/ID)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="proxy seed (default: proxy.seed, plus the row's replicate offset from the "
        "seeds file beside the mixtures table)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and blend, train nothing"
    )


def _layout_or_explain(study: StudyConfig, what: str) -> RunLayout:
    if study.run_dir is None:
        raise ConfigError(f"the study config has no run_dir; add one, or pass {what} explicitly")
    return study.layout


def command_train_proxy(args: argparse.Namespace) -> int:
    """``regmix train-proxy CONFIG (--mixture ID | --weights FILE) [--out DIR] [--seed N]``."""
    from regmix_plugin.layout import seeds_file
    from regmix_plugin.mixtures import load_weights_yaml, mixture_id, read_replicates
    from regmix_plugin.proxy.train import mixture_weights, train_proxy

    study = load_study_args(args)
    cfg = study.require("proxy")
    seed = cfg.seed
    if args.weights:
        weights = dict(load_weights_yaml(args.weights))
        mid = str(mixture_id(weights))
    else:
        table = (
            Path(args.mixtures)
            if args.mixtures
            else _layout_or_explain(study, "--mixtures and --out").mixtures
        )
        domains = stages.mixture_columns(study, stages.build_catalogue(study))
        weights = mixture_weights(table, args.mixture, domains)
        mid = args.mixture
        seed += read_replicates(seeds_file(table)).seed_offset(mid)
    if args.seed is not None:
        seed = args.seed
    cfg = dataclasses.replace(cfg, seed=seed)
    out = Path(args.out) if args.out else _layout_or_explain(study, "--out").proxy_run(mid)
    catalogue = stages.build_catalogue(study)
    if args.dry_run:
        plan = {
            "mixture_id": mid,
            "out": str(out),
            "num_steps": cfg.num_steps,
            "num_tokens_trained": cfg.num_steps * cfg.tokens_per_step,
            "blend": [[p, w] for p, w in catalogue.blend(weights)],
            "proxy": to_dict(cfg),
        }
        say(json.dumps(plan, indent=2))
        return 0
    shared = study.layout.eval_cache if study.run_dir is not None else None
    train_proxy(cfg, catalogue, weights, mid, out, eval_cache=shared)
    return 0


# -- fit and predict -------------------------------------------------------------------------------


def configure_fit(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix fit``."""
    add_study_arguments(parser, optional=True)
    parser.add_argument("--mixtures", help="mixtures CSV (default: the study's run folder)")
    parser.add_argument("--results", help="results CSV (default: the study's run folder)")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="COLUMN",
        help="metric column to fit (repeatable); default: fit.targets, else every column",
    )
    parser.add_argument("--out", help="model folder to write (default: the study's run folder)")
    parser.add_argument(
        "--config", dest="config_opt", help="study YAML whose `fit` section to use (same as CONFIG)"
    )


def _fit_inputs(args: argparse.Namespace) -> tuple[StudyConfig | None, RunLayout]:
    """The study (if any) and a layout whose mixtures/results/model are the ones to use."""
    if args.config and args.config_opt and args.config != args.config_opt:
        raise ConfigError("give the study config once (CONFIG or --config), not two different")
    config = args.config or args.config_opt
    study = load_study_args(args, config) if config else None
    if study is not None and study.run_dir is not None:
        base = study.layout
    else:
        missing = [f"--{f}" for f in ("mixtures", "results", "out") if not getattr(args, f)]
        if missing:
            raise ConfigError(
                f"give {', '.join(missing)} (or a study config with a run_dir, whose run folder "
                "holds them)"
            )
        base = RunLayout(Path(args.out).parent)
    return study, dataclasses.replace(
        base,
        mixtures_table=Path(args.mixtures) if args.mixtures else base.mixtures_table,
        results_table=Path(args.results) if args.results else base.results_table,
        model_folder=Path(args.out) if args.out else None,
    )


def command_fit(args: argparse.Namespace) -> int:
    """Run ``regmix fit``."""
    from regmix_plugin.regression import FitConfig

    study, layout = _fit_inputs(args)
    if study is None:
        study = StudyConfig(config_path=Path("."), config_dir=Path("."), run_dir=None)
        assert study.fit == FitConfig()
    catalogue = stages.build_catalogue(study) if study.domains is not None else None
    summary = stages.fit(study, layout, targets=args.target, catalogue=catalogue)
    say(
        f"regressor {summary.regressor}; {len(summary.domains)} domains; model in {summary.out_dir}"
    )
    say(
        f"{study.fit.num_folds}-fold cross-validated metrics on the training rows "
        "(mean ± std over folds):"
    )
    say(summary.table())
    for name, reason in summary.skipped.items():
        say(f"skipped {name}: {reason}")
    return 0


def configure_predict(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix predict``."""
    parser.add_argument("--model", required=True, help="model folder written by `regmix fit`")
    parser.add_argument("--mixtures", required=True, help="mixtures CSV to score")
    parser.add_argument("--out", required=True, help="predictions CSV to write")
    parser.add_argument(
        "--target", action="append", default=[], metavar="COLUMN", help="only these targets"
    )
    parser.add_argument(
        "--interval",
        type=float,
        metavar="LEVEL",
        help="also write each target's ensemble interval (<target>/lo, <target>/hi), e.g. 0.9",
    )


def command_predict(args: argparse.Namespace) -> int:
    """Run ``regmix predict``."""
    from regmix_plugin.regression import load_model, predict_table
    from regmix_plugin.tables import write_table

    model = load_model(args.model)
    mixtures = stages.read_weights_table(Path(args.mixtures), model.domains)
    table = predict_table(model, mixtures, args.target or None)
    if args.interval is not None:
        if not 0 < args.interval < 1:
            raise ConfigError(f"--interval must be between 0 and 1, got {args.interval}")
        table = _with_intervals(model, mixtures, table, args.interval)
    write_table(args.out, table)
    say(f"wrote {len(table.ids)} rows x {len(table.columns)} target(s) to {args.out}")
    return 0


def _with_intervals(model: Any, mixtures: Any, table: Any, level: float) -> Any:
    """The predictions table with ``<target>/lo`` and ``<target>/hi`` columns added."""
    from regmix_plugin.regression import align_columns
    from regmix_plugin.tables import Table

    x = align_columns(mixtures, model.domains)
    columns, values = list(table.columns), [table.values]
    for target in table.columns:
        _, lo, hi = model.predict_interval(x, target, level)
        columns += [f"{target}/lo", f"{target}/hi"]
        values.append(np.column_stack([lo, hi]))
    return Table(table.id_column, list(table.ids), columns, np.hstack(values))


# -- optimize --------------------------------------------------------------------------------------


def configure_optimize(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix optimize``."""
    add_study_arguments(parser, optional=True)
    parser.add_argument("--model", help="model folder (default: the study's run folder)")
    parser.add_argument("--out", help="weights YAML to write (default: the study's run folder)")
    parser.add_argument(
        "--prior",
        help="YAML of domain: share (instead of a study's catalogue); the `optimize` section "
        "then comes from --config, or the defaults",
    )
    parser.add_argument("--config", dest="config_opt", help="study YAML for the `optimize` section")
    parser.add_argument("--mixtures", help="proxy mixtures CSV (for the best-observed baseline)")
    parser.add_argument("--results", help="proxy results CSV (for the best-observed baseline)")


def command_optimize(args: argparse.Namespace) -> int:
    """Run ``regmix optimize``."""
    from regmix_plugin.optimize import format_result

    if args.prior is None:
        if args.config is None:
            raise ConfigError("give a study config (positional) or --prior FILE")
        study = load_study_args(args)
        base = study.layout if study.run_dir is not None else None
        if base is None and not (args.model and args.out):
            raise ConfigError("the study has no run_dir: give --model and --out")
        base = base or RunLayout(Path(args.out).parent)
        layout = dataclasses.replace(
            base,
            mixtures_table=Path(args.mixtures) if args.mixtures else base.mixtures_table,
            results_table=Path(args.results) if args.results else base.results_table,
            model_folder=Path(args.model) if args.model else None,
            weights_file=Path(args.out) if args.out else None,
        )
        result = stages.optimize(study, layout, stages.build_catalogue(study))
        out = layout.weights
    else:
        if not (args.model and args.out):
            raise ConfigError("with --prior, give --model and --out")
        result = _optimize_with_prior(args)
        out = Path(args.out)
    say(format_result(result))
    say(f"wrote {out}")
    return 0


def _optimize_with_prior(args: argparse.Namespace) -> object:
    from regmix_plugin.optimize import (
        OptimizeConfig,
        bound_arrays,
        observed_rows,
        optimize,
        read_prior_file,
        write_weights_yaml,
    )
    from regmix_plugin.regression import load_model
    from regmix_plugin.tables import read_table

    cfg_path = args.config_opt or args.config
    config = load_study(cfg_path, args.overrides).optimize if cfg_path else OptimizeConfig()
    model = load_model(args.model)
    shares = read_prior_file(args.prior)
    names = list(shares)
    prior = np.array([shares[n] for n in names], dtype=np.float64)
    lower, upper = bound_arrays(names, config)
    observed = results = None
    if args.mixtures and args.results:
        mixtures = stages.read_weights_table(Path(args.mixtures), model.domains)
        results = read_table(args.results)
        observed = observed_rows(model, config.target, mixtures, results, args.results)
    elif args.results:
        results = read_table(args.results)
    result = optimize(model, prior, names, lower, upper, config, observed=observed, results=results)
    write_weights_yaml(args.out, result)
    return result


# -- emit ------------------------------------------------------------------------------------------


def configure_emit(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix emit``."""
    add_study_arguments(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--mixture", help="mixture id: a row of the mixtures table")
    which.add_argument("--weights", help="YAML with a 'weights:' mapping (e.g. weights.yaml)")
    parser.add_argument(
        "--mixtures", default=None, help="mixtures table (default: <run_dir>/mixtures.csv)"
    )
    parser.add_argument("--out", default=None, help="output folder (default: <run_dir>/blend)")


def command_emit(args: argparse.Namespace) -> int:
    """``regmix emit CONFIG (--mixture ID [--mixtures FILE] | --weights FILE) [--out DIR]``."""
    from regmix_plugin.emit import format_epochs

    if args.mixtures is not None and args.mixture is None:
        raise ConfigError("--mixtures goes with --mixture ID")
    study = load_study_args(args)
    mixtures = Path(args.mixtures) if args.mixtures else None
    if args.mixture is not None and mixtures is None:
        mixtures = _layout_or_explain(study, "--mixtures").mixtures
    out = Path(args.out) if args.out else _layout_or_explain(study, "--out").blend_dir
    result = stages.emit(
        study,
        stages.build_catalogue(study),
        out,
        weights_path=Path(args.weights) if args.weights else None,
        mixture=args.mixture,
        mixtures_path=mixtures,
    )
    say(f"mixture {result.mixture_id}: {len(result.blend)} prefixes")
    say(format_epochs(result.epochs, result.num_tokens).rstrip("\n"))
    for line in result.warnings:
        say(line)
    say(f"wrote {len(result.files)} files to {result.out_dir}")
    return 0


# -- report ----------------------------------------------------------------------------------------


def configure_report(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix report``."""
    parser.add_argument("run_dir", help="a study's run directory")
    add_set_argument(parser)


def command_report(args: argparse.Namespace) -> int:
    """``regmix report RUN_DIR``: with the study ``regmix run`` recorded there, when present."""
    from regmix_plugin.report import ReportConfig, write_report

    root = Path(args.run_dir)
    resolved = RunLayout(root).resolved_config
    if resolved.is_file():
        study = load_study(resolved, args.overrides)
        layout = RunLayout(root, study.sweep.mixtures, study.sweep.collect.results)
        catalogue = stages.build_catalogue(study) if study.domains is not None else None
        html_path, md_path = stages.report(study, layout, catalogue)
    else:
        stages.check_report_inputs(RunLayout(root))
        html_path, md_path = write_report(RunLayout(root), ReportConfig())
    say(f"wrote {html_path} and {md_path}")
    return 0


# -- init ------------------------------------------------------------------------------------------


def configure_init(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix init``."""
    parser.add_argument("data_dir", help="folder of Megatron .bin/.idx prefixes (searched deeply)")
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="PREFIX",
        help="held-out text to optimise for, a Megatron prefix (repeatable)",
    )
    parser.add_argument(
        "--per-folder", action="store_true", help="one domain per sub-folder, not per prefix"
    )
    parser.add_argument("--out", default="study.yaml", help="the study YAML to write")
    parser.add_argument("--run-dir", default="runs/study", help="run_dir of the study")
    parser.add_argument("--vocab-size", type=int, help="the tokenizer's vocabulary size")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")


def command_init(args: argparse.Namespace) -> int:
    """``regmix init DATA_DIR``: write a commented study and print the next command."""
    from regmix_plugin.indexed import read_index_counts
    from regmix_plugin.io import atomic_write_text
    from regmix_plugin.scaffold import detect_machine, domain_name, find_domains, study_text

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it, or another --out")
    data_dir = Path(args.data_dir).resolve()
    found = find_domains(data_dir, per_folder=args.per_folder)
    targets: dict[str, str] = {}
    for raw in args.target:
        prefix = Path(raw.removesuffix(".idx").removesuffix(".bin")).resolve()
        read_index_counts(prefix)
        name = domain_name(prefix, prefix.parent, per_folder=False)
        if name in targets:
            raise ConfigError(f"two --target prefixes are both named {name!r}; rename one")
        targets[name] = str(prefix)
    machine = detect_machine()
    text = study_text(
        found,
        config_dir=out.resolve().parent,
        targets=targets,
        machine=machine,
        vocab_size=args.vocab_size,
        run_dir=args.run_dir,
    )
    atomic_write_text(out, text)
    gpus = f"{machine.num_gpus} GPU(s)" if machine.num_gpus else "no GPU"
    say(f"wrote {out}: {len(found)} domain(s), sized for this machine ({gpus})")
    say(f"next: regmix run {out} --dry-run   # check the plan, then drop --dry-run")
    return 0
