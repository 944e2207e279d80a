"""Commands of the sweep: ``regmix sweep``, ``regmix status``, ``regmix collect``, and the
progress line they and ``regmix run`` show."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from regmix_plugin import stages
from regmix_plugin.commands import (
    add_set_argument,
    add_study_arguments,
    attach_log_file,
    load_study_args,
    say,
    warn,
)
from regmix_plugin.config import to_dict


class ProgressPrinter:
    """Progress of the stages that train proxies, on stderr: one line redrawn in place on a
    terminal; otherwise a line per finished (or failed) proxy."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_line = ""
        self.last_key: tuple[Any, ...] = ()
        self.last_time = 0.0

    def __call__(self, event: Any) -> None:
        from regmix_plugin.stages import ProxyProgress
        from regmix_plugin.sweep.registry import progress_line

        if isinstance(event, ProxyProgress):
            verb = "training" if event.starting else "done:"
            line = (
                f"{event.stage}: {event.num_done}/{event.num_total} proxies done "
                f"({verb} {event.label})"
            )
            key: tuple[Any, ...] = (event.stage, event.num_done, event.starting)
        else:
            line = f"sweep: {progress_line(event)}"
            key = ("sweep", event.counts.get("done", 0), event.counts.get("failed", 0))
        now = time.monotonic()
        if self.tty:
            if line != self.last_line or now - self.last_time > 1:
                sys.stderr.write("\r" + line.ljust(len(self.last_line)))
                sys.stderr.flush()
                self.last_line, self.last_time = line, now
        elif key != self.last_key and not (isinstance(event, ProxyProgress) and event.starting):
            print(line, file=sys.stderr, flush=True)
        self.last_key = key

    def finish(self) -> None:
        """End the redrawn line."""
        if self.tty and self.last_line:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.last_line = ""


# -- sweep -----------------------------------------------------------------------------------------


def configure_sweep(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix sweep``."""
    add_study_arguments(parser)
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be launched, launch nothing"
    )
    parser.add_argument(
        "--force-mix",
        action="store_true",
        help="accept a sweep folder made by a different config (sweep.force_mix)",
    )


def command_sweep(args: argparse.Namespace) -> int:
    """``regmix sweep CONFIG``: 0 when every run is done, 1 when some failed."""
    import yaml

    from regmix_plugin.sweep.registry import format_status, progress_line
    from regmix_plugin.sweep.runner import dry_run_text

    study = load_study_args(args)
    layout = study.layout
    catalogue = stages.build_catalogue(study)
    if args.dry_run:
        say("# sweep settings (resolved)")
        say(yaml.safe_dump({"sweep": to_dict(study.sweep)}, sort_keys=False).rstrip())
        say(dry_run_text(stages.plan_sweep(study, layout, catalogue)))
        return 0
    attach_log_file(layout.run_log)
    printer = ProgressPrinter()
    try:
        result = stages.sweep(study, layout, catalogue, force_mix=args.force_mix, progress=printer)
    finally:
        printer.finish()
    status = result.status
    if not status.finished and not result.failed:
        say(progress_line(status))
        say(
            f"launched {len(result.launched)} run(s); follow them with "
            f"`regmix status {status.sweep_dir}`"
        )
        return 0
    say(format_status(status))
    if result.failed:
        warn(
            f"{len(result.failed)} run(s) not done after the retries (sweep.num_retries="
            f"{study.sweep.num_retries}): {', '.join(result.failed)}. Fix the cause (see each "
            "run's train.log) and rerun `regmix sweep`; finished runs are kept"
        )
        return 1
    return 0


# -- status ----------------------------------------------------------------------------------------


def configure_status(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix status``."""
    parser.add_argument("dir", help="a sweep folder (<run_dir>/sweep) or the study's run_dir")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    parser.add_argument(
        "--all", action="store_true", help="also list pending runs, whole log tails"
    )


def command_status(args: argparse.Namespace) -> int:
    """``regmix status DIR``: exit 0 when every run is done, 1 while some are not."""
    from regmix_plugin.sweep.registry import format_status, sweep_status

    status = sweep_status(args.dir)
    if args.json:
        out = {
            "sweep_dir": str(status.sweep_dir),
            "counts": status.counts,
            "eta_s": status.eta_s,
            "runs": [r.as_dict() for r in status.records],
        }
        say(json.dumps(out, indent=2))
    else:
        say(format_status(status, verbose=args.all))
    return 0 if status.finished else 1


# -- collect ---------------------------------------------------------------------------------------


def configure_collect(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix collect``."""
    parser.add_argument("dir", help="a sweep folder, its run_dir, or a folder of runs (one per id)")
    parser.add_argument("--config", help="study config whose sweep.collect settings to use")
    parser.add_argument("--mixtures", help="mixtures table: its ids are the rows expected")
    parser.add_argument("--out", help="results CSV (default: <run_dir>/results.csv)")
    parser.add_argument(
        "--import",
        dest="import_kind",
        choices=["climb", "olmix", "csv"],
        help="import another tool's swarm instead: DIR is CLIMB's folder of nN.sh files, "
        "Olmix's ratios.csv, or a plain CSV (id, domain weights, metrics)",
    )
    parser.add_argument(
        "--evaluation",
        help="with --import climb: the evaluation CSV or a folder of run folders holding "
        "lm-evaluation-harness results; with --import olmix: metrics.csv",
    )
    parser.add_argument(
        "--mixtures-out", help="with --import: the mixtures CSV (default: <run_dir>/mixtures.csv)"
    )
    parser.add_argument(
        "--domains", help="with --import and no --config: the domains, comma-separated"
    )
    add_set_argument(parser)


def _collect_import(args: argparse.Namespace) -> int:
    """``regmix collect --import KIND DIR``: another tool's swarm as mixtures + results tables."""
    from regmix_plugin.errors import ConfigError
    from regmix_plugin.sweep.config import CollectSettings
    from regmix_plugin.sweep.imports import import_climb, import_olmix, import_plain

    domains: list[str] | None = args.domains.split(",") if args.domains else None
    settings, layout = CollectSettings(), None
    if args.config:
        study = load_study_args(args)
        settings = study.sweep.collect
        layout = study.layout
        domains = domains or list(stages.build_catalogue(study).names)
    mixtures_out = args.mixtures_out or (layout.mixtures if layout else None)
    results_out = args.out or (layout.results if layout else None)
    if mixtures_out is None or results_out is None:
        raise ConfigError(
            "regmix collect --import: pass --config, or both --mixtures-out and --out"
        )
    if args.import_kind in ("climb", "olmix") and not args.evaluation:
        raise ConfigError(f"regmix collect --import {args.import_kind} needs --evaluation")
    if args.import_kind == "climb":
        got = import_climb(
            args.dir, args.evaluation, domains=domains, prefix_domains=settings.dataset_names
        )
    elif args.import_kind == "olmix":
        got = import_olmix(args.dir, args.evaluation, domains=domains)
    else:
        if domains is None:
            raise ConfigError("regmix collect --import csv needs --domains or --config")
        got = import_plain(args.dir, domains=domains)
    got.write(mixtures_out, results_out)
    say(
        f"wrote {mixtures_out} and {results_out}: {len(got.mixtures.ids)} run(s), "
        f"{len(got.mixtures.columns)} domain(s), {len(got.results.columns)} metric(s)"
    )
    for rid, total in got.rescaled.items():
        warn(f"  {rid}: weights summed to {total:.9g} (rounded): divided by their sum")
    return 0


def command_collect(args: argparse.Namespace) -> int:
    """``regmix collect DIR``: write the table; list missing runs on stderr."""
    from regmix_plugin.sweep.collect import collect_runs, default_results_path, write_results
    from regmix_plugin.sweep.config import CollectSettings

    if args.import_kind:
        return _collect_import(args)
    settings = load_study_args(args).sweep.collect if args.config else CollectSettings()
    ids = list(stages.read_weights_table(Path(args.mixtures)).ids) if args.mixtures else None
    source = Path(args.dir)
    collected = collect_runs(source, settings=settings, mixture_ids=ids)
    out = write_results(collected, args.out or default_results_path(source, settings))
    t = collected.table
    say(
        f"wrote {out}: {len(t.ids)} mixture(s) x {len(t.columns)} metric(s), "
        f"{collected.num_complete} complete"
    )
    if collected.missing:
        warn(f"{len(collected.missing)} run(s) missing or incomplete (empty cells):")
        for mid, why in collected.missing.items():
            warn(f"  {mid}: {why}")
    return 0
