"""The run folder: one object that names every artifact of a study's ``run_dir``.

Every stage asks a :class:`RunLayout` for its paths; no other module spells an artifact's name.
The sweep folder's inside (one folder per proxy run, markers, locks) is named here too, because
the sweep worker reads it; this module imports nothing but the standard library, so the worker
stays light. ``run_dir`` holds::

    config.resolved.yaml   the study as run: every default filled in, every path absolute
    run.json               where the config came from, and the --set overrides
    data/ (synthetic)      only for a config with a ``synthetic`` section (its own data_dir)
    domains.txt            the catalogue as a table
    catalogue.json         per prefix: documents, tokens, .bin/.idx sizes and mtimes
    mixtures.csv           the proxy mixtures (or ``sweep.mixtures``)
    mixtures.csv.seeds.json  (with replicated mixtures) each replicate run's proxy seed offset
    mixtures_summary.json  what the mixture design drew and rejected
    rounds.json            (sample.strategy: active) each round's picks and chosen mixture
    rounds_model/          (sample.strategy: active) the ensemble that picked the last round
    sweep/                 sweep.json, study.yaml, mixtures.csv, runs/<mixture_id>/...
    results.csv            one row per mixture, one column per metric (or ``sweep.collect.results``)
    results.csv.missing.json
    model/                 the fitted regressors
    weights.yaml           the chosen mixture and the optimizer's report
    blend/                 the blend configs for every recipe format
    cache/eval/            the evaluation indices every proxy of the study shares
    proxies/<mixture_id>/  proxies trained one by one with ``regmix train-proxy``
    evaluate/<label>/seed-<seed>/  proxies trained on the chosen mixture and the baselines
    evaluation.json        their measured target loss: per seed, mean, std, paired intervals
    transfer/<scale>/<label>/  (with ``transfer``) proxies of the rank-transfer check
    transfer.json          Spearman rho between the two proxy scales, its bootstrap interval
    report.html, report.md, report_files/
    stages/<stage>.json    completion markers, written last by ``regmix run``
    logs/                  the run's log files (timings live here, never in artifacts)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# -- names inside a sweep folder (``<run_dir>/sweep``) ---------------------------------------------
SWEEP_FILE = "sweep.json"
SWEEP_STUDY_FILE = "study.yaml"
RUNS_DIR = "runs"
DONE_FILE = "DONE"
LOCK_FILE = ".lock"
ATTEMPTS_FILE = "attempts.json"
SUBMITTED_FILE = "submitted.json"
COMMAND_FILE = "command.json"
LOG_FILE = "train.log"
#: A run folder's timings log (JSON lines: each attempt's start and end, host, pid and job, the
#: proxy's wall and training seconds and tokens/s). A log: the run's artifacts hold no timings.
TIMINGS_FILE = "timings.jsonl"
WORKER_LOG_FILE = "worker.log"
METRICS_FILE = "metrics.json"
BLEND_FILE = "blend.yaml"
RUN_CONFIG_FILE = "config.yaml"

# -- names inside run_dir --------------------------------------------------------------------------
MIXTURES_FILE = "mixtures.csv"
MIXTURES_SUMMARY_FILE = "mixtures_summary.json"
#: The rounds of the active design (``sample.strategy: active``).
ROUNDS_FILE = "rounds.json"
RESULTS_FILE = "results.csv"
MISSING_SUFFIX = ".missing.json"
#: Beside a mixtures table: the replicate runs (same weights, another proxy seed) it holds.
SEEDS_SUFFIX = ".seeds.json"
#: Inside ``blend/``: what ``regmix emit`` wrote (files, epochs) and the mixture it wrote.
BLEND_MANIFEST_FILE = "manifest.json"
BLEND_WEIGHTS_FILE = "weights.yaml"
#: Inside a schedule's blend folder (``regmix_plugin.emit_phases``): the exact-ratio schedule,
#: its run-average blend, Megatron-LM's transition iterations and launch lines, the manifest.
SCHEDULE_FILE = "schedule.json"
SCHEDULE_DATA_ARGS_FILE = "schedule_data_args.txt"
PHASE_TRANSITIONS_FILE = "phase_transition_iterations.txt"
PHASE_LAUNCH_FILE = "megatron_lm_phases.txt"
SCHEDULE_MANIFEST_FILE = "schedule_manifest.json"
#: Inside ``model/``: the fitted model's description.
MODEL_METADATA_FILE = "metadata.json"
#: Beside the report: its figures.
REPORT_FILES_DIR = "report_files"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder. The mixtures and results tables may live elsewhere
    (``sweep.mixtures``, ``sweep.collect.results``), and single-stage commands may name the model
    folder and the weights file; everything else is under ``root``."""

    root: Path
    """The run folder (``run_dir``)."""
    mixtures_table: Path | None = None
    """Where the mixtures table is, when not ``root/mixtures.csv``."""
    results_table: Path | None = None
    """Where the results table is, when not ``root/results.csv``."""
    model_folder: Path | None = None
    """Where the model folder is, when not ``root/model``."""
    weights_file: Path | None = None
    """Where the chosen mixture goes, when not ``root/weights.yaml``."""

    @property
    def resolved_config(self) -> Path:
        """``config.resolved.yaml``: the study as run, loadable as a config."""
        return self.root / "config.resolved.yaml"

    @property
    def run_info(self) -> Path:
        """``run.json``: the config file the run came from and its overrides."""
        return self.root / "run.json"

    @property
    def domains_table(self) -> Path:
        """``domains.txt``: the catalogue as a text table."""
        return self.root / "domains.txt"

    @property
    def catalogue(self) -> Path:
        """``catalogue.json``: the catalogue with per-prefix file sizes and times."""
        return self.root / "catalogue.json"

    @property
    def mixtures(self) -> Path:
        """The proxy mixtures table."""
        return self.mixtures_table or self.root / MIXTURES_FILE

    @property
    def mixture_seeds(self) -> Path:
        """Beside the mixtures table: its replicate runs and their proxy seed offsets."""
        return seeds_file(self.mixtures)

    @property
    def mixtures_summary(self) -> Path:
        """What the mixture design drew and rejected."""
        return self.root / MIXTURES_SUMMARY_FILE

    @property
    def rounds(self) -> Path:
        """``rounds.json`` (``sample.strategy: active``): each round's mixtures, the chosen
        mixture and its interval before the picks, written before the picks join the table."""
        return self.root / ROUNDS_FILE

    @property
    def round_model_dir(self) -> Path:
        """``rounds_model/``: the ensemble fitted on the finished runs to pick the next round
        (rewritten every round)."""
        return self.root / "rounds_model"

    @property
    def sweep_dir(self) -> Path:
        """The sweep folder."""
        return self.root / "sweep"

    @property
    def results(self) -> Path:
        """The results table (one row per mixture, one column per metric)."""
        return self.results_table or self.root / RESULTS_FILE

    @property
    def results_missing(self) -> Path:
        """Which rows of the results table are missing, and why."""
        return missing_file(self.results)

    @property
    def model_dir(self) -> Path:
        """The fitted model folder."""
        return self.model_folder or self.root / "model"

    @property
    def weights(self) -> Path:
        """``weights.yaml``: the chosen mixture and the optimizer's report."""
        return self.weights_file or self.root / "weights.yaml"

    @property
    def blend_dir(self) -> Path:
        """The emitted blend configs."""
        return self.root / "blend"

    @property
    def blend_manifest(self) -> Path:
        """What ``regmix emit`` wrote."""
        return self.blend_dir / BLEND_MANIFEST_FILE

    @property
    def blend_weights(self) -> Path:
        """The mixture the blend configs were written for."""
        return self.blend_dir / BLEND_WEIGHTS_FILE

    @property
    def model_metadata(self) -> Path:
        """The fitted model's description."""
        return self.model_dir / MODEL_METADATA_FILE

    def proxy_run(self, mixture_id: str) -> Path:
        """Where ``regmix train-proxy`` puts a proxy it trains outside a sweep."""
        return self.root / "proxies" / mixture_id

    @property
    def eval_cache(self) -> Path:
        """The evaluation indices shared by every proxy of the study (built once, under a lock)."""
        return self.root / "cache" / "eval"

    @property
    def evaluate_dir(self) -> Path:
        """Proxies of the evaluate stage, one folder per compared mixture."""
        return self.root / "evaluate"

    def evaluate_run(self, label: str, seed: int) -> Path:
        """The folder of one compared mixture's proxy trained with proxy seed ``seed``."""
        return self.evaluate_dir / label / f"seed-{seed}"

    @property
    def evaluation(self) -> Path:
        """``evaluation.json``: the measured comparison."""
        return self.root / "evaluation.json"

    @property
    def transfer_dir(self) -> Path:
        """Proxies of the rank-transfer check, one folder per scale and mixture."""
        return self.root / "transfer"

    def transfer_run(self, scale: str, label: str) -> Path:
        """The folder of one proxy of the rank-transfer check (``scale``: small or large)."""
        return self.transfer_dir / scale / label

    @property
    def transfer(self) -> Path:
        """``transfer.json``: the rank correlation between the two proxy scales."""
        return self.root / "transfer.json"

    @property
    def report_html(self) -> Path:
        """The HTML report."""
        return self.root / "report.html"

    @property
    def report_markdown(self) -> Path:
        """The Markdown twin of the report."""
        return self.root / "report.md"

    @property
    def report_files(self) -> Path:
        """The report's figures."""
        return self.root / REPORT_FILES_DIR

    @property
    def stages_dir(self) -> Path:
        """Completion markers of ``regmix run``."""
        return self.root / "stages"

    def marker(self, stage: str) -> Path:
        """The completion marker of one stage."""
        return self.stages_dir / f"{stage}.json"

    @property
    def logs_dir(self) -> Path:
        """The run's log files."""
        return self.root / "logs"

    @property
    def run_log(self) -> Path:
        """The log of ``regmix run`` / ``regmix sweep``: every library's lines, timings."""
        return self.logs_dir / "regmix.log"


def missing_file(results: Path) -> Path:
    """The missing-runs file beside a results table."""
    return results.with_name(results.name + MISSING_SUFFIX)


def seeds_file(mixtures: Path) -> Path:
    """The replicate-seeds file beside a mixtures table."""
    return mixtures.with_name(mixtures.name + SEEDS_SUFFIX)


def sweep_runs_dir(sweep_dir: Path) -> Path:
    """The folder holding one folder per proxy run."""
    return Path(sweep_dir) / RUNS_DIR


def sweep_run_folder(sweep_dir: Path, mixture_id: str) -> Path:
    """The folder of one proxy run."""
    return sweep_runs_dir(sweep_dir) / mixture_id
