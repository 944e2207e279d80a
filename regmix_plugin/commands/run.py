"""``regmix run CONFIG``: every stage in order, with one line per stage and the sweep's progress."""

from __future__ import annotations

import argparse

from regmix_plugin.commands import add_study_arguments, attach_log_file, load_study_args, say
from regmix_plugin.commands.sweeps import ProgressPrinter
from regmix_plugin.pipeline import STAGES, plan_run, resolved_yaml, run_pipeline
from regmix_plugin.study import StudyConfig


def configure_run(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix run``."""
    add_study_arguments(parser)
    parser.add_argument("--from", dest="start", choices=STAGES, help="first stage to run")
    parser.add_argument("--to", dest="stop", choices=STAGES, help="last stage to run")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and the stage plan"
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun the selected stages even when done"
    )


def command_run(args: argparse.Namespace) -> int:
    """``regmix run CONFIG [--from STAGE] [--to STAGE] [--dry-run] [--force] [--set K=V]``."""
    study = load_study_args(args)
    if args.dry_run:
        _dry_run(study, args)
        return 0
    attach_log_file(study.layout.run_log)
    printer = ProgressPrinter()
    timings: dict[str, float] = {}

    def on_stage(name: str, state: str, seconds: float) -> None:
        printer.finish()
        if state == "skipped":
            say(f"{name:<9} done before, skipped")
        else:
            timings[name] = seconds
            say(f"{name:<9} done in {seconds:.1f} s")

    try:
        run_pipeline(
            study,
            start=args.start,
            stop=args.stop,
            force=args.force,
            progress=printer,
            on_stage=on_stage,
        )
    finally:
        printer.finish()
    if timings:
        say("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    _say_results(study, timings)
    return 0


def _say_results(study: StudyConfig, ran: dict[str, float]) -> None:
    """The measured comparison and the rank transfer, when this run computed them."""
    import json

    from regmix_plugin.evaluate import format_evaluation
    from regmix_plugin.transfer import format_transfer

    layout = study.layout
    if "evaluate" in ran and layout.evaluation.is_file():
        say(format_evaluation(json.loads(layout.evaluation.read_text(encoding="utf-8"))))
    if "transfer" in ran and layout.transfer.is_file():
        say(format_transfer(json.loads(layout.transfer.read_text(encoding="utf-8"))))


def _dry_run(study: StudyConfig, args: argparse.Namespace) -> None:
    from regmix_plugin import stages
    from regmix_plugin.sweep.runner import dry_run_text

    plan = plan_run(study, start=args.start, stop=args.stop)
    say(f"# run_dir {plan.layout.root}")
    say(resolved_yaml(study).rstrip())
    say("# stages")
    for name, state in plan.states.items():
        say(f"  {name:<9} {state}")
    if "sweep" in plan.states and plan.layout.mixtures.is_file():
        catalogue = stages.build_catalogue(study)
        say(dry_run_text(stages.plan_sweep(study, plan.layout, catalogue)))
