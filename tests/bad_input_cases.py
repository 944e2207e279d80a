"""The generated bad-input suite of issue 18: a good workspace, a table of mutations, a judge.

:func:`build_workspace` writes one good study once: real ``.bin/.idx`` domains (megatron-core's
writer), the study YAML, a run folder made by the real stages (``mixtures.csv``, a results table,
a fitted LightGBM+GP model with members, ``weights.yaml``, ``blend/``) and a prepared sweep
folder whose runs are finished in the worker's format. Each case copies it, applies one mutation
(to the config, a table, the model folder, a weights file, a data file or the command line),
runs ``regmix_plugin.cli.main`` in-process and :func:`judge` says how it ended:

* ``clear``: exit code 2, a one-paragraph message naming the file or setting, no traceback, no
  new file anywhere in the workspace;
* ``traceback``: an exception other than a ``RegMixError`` escaped (a traceback for a user);
* ``accepted``: exit code 0 (or another code) on a bad input;
* ``leftover``: exit code 2 but a new file was left behind;
* ``unclear``: exit code 2, clean, but the message does not name the file or setting.

``python tests/bad_input_cases.py`` prints the tally by outcome and the cases that are not clear.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from regmix_plugin.corpus import write_indexed_dataset

DOMAINS = ("a", "b", "c")
VOCAB = 96
STUDY: dict[str, Any] = {
    "run_dir": "run",
    "domains": {
        "num_target_tokens": 100_000,
        "entries": [{"name": d, "prefixes": [f"data/{d}_text_document"]} for d in DOMAINS],
    },
    "sample": {"num_mixtures": 16, "seed": 0},
    "proxy": {
        "preset": "tiny",
        "vocab_size": VOCAB,
        "seq_length": 16,
        "num_tokens": 2048,
        "micro_batch_size": 8,
        "global_batch_size": 16,
        "split": "80,20,0",
        "num_eval_tokens": 128,
        "targets": {"t": ["data/target_text_document"]},
        "num_threads": 1,
    },
    "sweep": {"launcher": "local"},
    "fit": {
        "targets": ["target_loss/t"],
        "num_folds": 2,
        "num_members": 2,
        "num_threads": 1,
    },
    "optimize": {"target": "target_loss/t", "num_candidates": 2000},
    "emit": {"split": "80,20,0"},
}
TARGET = "target_loss/t"


# -- the good workspace --------------------------------------------------------------------------


def _write_data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    band = VOCAB // 4
    for i, name in enumerate([*DOMAINS, "target"]):
        docs = [
            rng.integers(i * band, (i + 1) * band, size=int(rng.integers(20, 60)))
            for _ in range(120)
        ]
        write_indexed_dataset(folder / f"{name}_text_document", docs)


def _results(mixtures: Any) -> Any:
    """A results table of the mixtures: a smooth loss with its minimum inside the simplex."""
    from regmix_plugin.tables import Table

    w = mixtures.values
    centre = np.array([0.2, 0.5, 0.3])
    target = 2.0 + ((w - centre) ** 2).sum(axis=1)
    vals = np.column_stack([2.5 - 0.5 * w, target])
    cols = [*(f"val_loss/{d}" for d in DOMAINS), TARGET]
    return Table(mixtures.id_column, list(mixtures.ids), cols, vals)


def _finish_sweep(study: Any, layout: Any, catalogue: Any, results: Any) -> None:
    """A prepared sweep folder (the real runner) whose runs are done, in the worker's format."""
    from regmix_plugin import stages
    from regmix_plugin.io import atomic_write_json
    from regmix_plugin.layout import ATTEMPTS_FILE, DONE_FILE, METRICS_FILE
    from regmix_plugin.sweep.runner import check_fingerprint, prepare_runs

    plan = stages.plan_sweep(study, layout, catalogue)
    check_fingerprint(plan, force_mix=False, write=True)
    prepare_runs(plan)
    for k, mid in enumerate(results.ids):
        folder = plan.runs[mid].folder
        metrics = dict(zip(results.columns, map(float, results.values[k]), strict=True))
        atomic_write_json(folder / METRICS_FILE, {"mixture_id": mid, "metrics": metrics})
        atomic_write_json(folder / ATTEMPTS_FILE, [{"attempt": 1, "ended": True, "exit_code": 0}])
        atomic_write_json(folder / DONE_FILE, {"mixture_id": mid, "attempt": 1})


def build_workspace(root: Path) -> Path:
    """Write the good workspace under ``root`` (see the module docstring); returns ``root``."""
    from regmix_plugin import stages
    from regmix_plugin.study import load_study
    from regmix_plugin.tables import write_table

    _write_data(root / "data")
    (root / "study.yaml").write_text(yaml.safe_dump(STUDY, sort_keys=False))
    study = load_study(root / "study.yaml")
    layout = study.layout
    catalogue = stages.build_catalogue(study, layout)
    mixtures = stages.sample(study, layout, catalogue).mixtures
    table = stages.read_weights_table(layout.mixtures)
    results = _results(table)
    write_table(layout.results, results)
    stages.fit(study, layout, catalogue=catalogue)
    stages.optimize(study, layout, catalogue)
    stages.emit(study, catalogue, layout.blend_dir, weights_path=layout.weights)
    _finish_sweep(study, layout, catalogue, results)
    (root / "ids.txt").write_text("\n".join(mixtures.ids) + "\n")
    return root


# -- running one case ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """How a case ended."""

    code: int | None
    stdout: str
    stderr: str
    exception: str = ""
    new_files: list[str] = field(default_factory=list)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def run_cli(argv: list[str], workspace: Path) -> Outcome:
    """``regmix ARGV`` in-process in ``workspace`` (the cwd), stdout/stderr captured."""
    from regmix_plugin.cli import main

    before = _files(workspace)
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    exception = ""
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
            except Exception as exc:  # the judge reports it as a traceback
                exception = f"{type(exc).__name__}: {exc}"
    finally:
        os.chdir(cwd)
    new = sorted(_files(workspace) - before)
    return Outcome(code, out.getvalue(), err.getvalue(), exception, new)


def error_message(stderr: str) -> str:
    """The ``regmix CMD: error: ...`` paragraph (argparse's and ours) of a command's stderr."""
    m = re.search(r"^regmix[\w -]*: error: ", stderr, flags=re.M)
    return stderr[m.start() :].strip() if m else ""


def judge(outcome: Outcome, names: str) -> str:
    """``clear`` / ``traceback`` / ``accepted`` / ``leftover`` / ``unclear`` (module docstring).

    ``names`` is a regular expression the message must match: the file or setting to fix.
    """
    if outcome.exception or "Traceback" in outcome.stderr:
        return "traceback"
    if outcome.code != 2:
        return "accepted"
    if outcome.new_files:
        return "leftover"
    message = error_message(outcome.stderr)
    if not message or "\n\n" in message or not re.search(names, message):
        return "unclear"
    return "clear"


# -- mutations -------------------------------------------------------------------------------------

Mutation = Callable[[Path], None]


def edit_study(fn: Callable[[dict[str, Any]], Any], name: str = "study.yaml") -> Mutation:
    """Apply ``fn`` to the study's data and write it back as YAML."""

    def mutate(w: Path) -> None:
        data = yaml.safe_load((w / name).read_text())
        fn(data)
        _write(w / name, yaml.safe_dump(data, sort_keys=False).encode())

    return mutate


def set_key(dotted: str, value: Any) -> Mutation:
    """Set ``section.key`` (created if absent) of the study to ``value``."""

    def fn(data: dict[str, Any]) -> None:
        node = data
        *path, last = dotted.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value

    return edit_study(fn)


def write_text(rel: str, text: str) -> Mutation:
    return lambda w: _write(w / rel, text.encode())


def write_bytes(rel: str, data: bytes) -> Mutation:
    return lambda w: _write(w / rel, data)


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a new file (the workspace is hard-linked to the good one,
    so a file is never written through)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def append_text(rel: str, text: str) -> Mutation:
    return lambda w: _write(w / rel, ((w / rel).read_text() + text).encode())


def remove(rel: str) -> Mutation:
    def mutate(w: Path) -> None:
        p = w / rel
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()

    return mutate


def make_dir(rel: str) -> Mutation:
    def mutate(w: Path) -> None:
        p = w / rel
        if p.exists():
            remove(rel)(w)
        p.mkdir(parents=True)

    return mutate


def truncate(rel: str, keep: float | int) -> Mutation:
    """Cut a file to ``keep`` bytes (an int) or that share of its size (a float)."""

    def mutate(w: Path) -> None:
        data = (w / rel).read_bytes()
        n = keep if isinstance(keep, int) else int(len(data) * keep)
        _write(w / rel, data[:n])

    return mutate


def edit_csv(rel: str, fn: Callable[[list[list[str]]], Any]) -> Mutation:
    """Apply ``fn`` to the rows (header first) of a CSV file."""

    def mutate(w: Path) -> None:
        rows = [line.split(",") for line in (w / rel).read_text().splitlines()]
        fn(rows)
        _write(w / rel, ("\n".join(",".join(r) for r in rows) + "\n").encode())

    return mutate


def edit_json(rel: str, fn: Callable[[Any], Any]) -> Mutation:
    def mutate(w: Path) -> None:
        data = json.loads((w / rel).read_text())
        data = fn(data) or data
        _write(w / rel, json.dumps(data).encode())

    return mutate


def edit_yaml(rel: str, fn: Callable[[Any], Any]) -> Mutation:
    def mutate(w: Path) -> None:
        data = yaml.safe_load((w / rel).read_text())
        data = fn(data) or data
        _write(w / rel, yaml.safe_dump(data).encode())

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(w: Path) -> None:
        for m in mutations:
            m(w)

    return mutate


def _set_row(rows: list[list[str]], k: int, values: list[str]) -> None:
    rows[k] = [rows[k][0], *values]


def _idx_lengths_disagree(w: Path) -> None:
    """An ``.idx`` whose sequence lengths disagree with its pointers (same sizes)."""
    p = w / "data" / "b_text_document.idx"
    data = bytearray(p.read_bytes())
    # header: 9 magic, 8 version, 1 dtype, 8 sequences, 8 documents; then int32 lengths
    (num_sequences,) = struct.unpack_from("<Q", data, 18)
    first = 34
    (length,) = struct.unpack_from("<i", data, first)
    struct.pack_into("<i", data, first, length + 7)
    (last,) = struct.unpack_from("<i", data, first + 4 * (num_sequences - 1))
    struct.pack_into("<i", data, first + 4 * (num_sequences - 1), last - 7)
    _write(p, bytes(data))


# -- the case table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` (``{w}`` is the workspace, ``{id}`` a mixture id) after
    ``mutation``; the message must match ``names``."""

    name: str
    argv: tuple[str, ...]
    mutation: Mutation
    names: str


CFG = "{w}/study.yaml"
#: Commands that read the study config, each with a line that otherwise succeeds (or fails only
#: later, after reading everything the config mutations touch).
CONFIG_COMMANDS: dict[str, tuple[str, ...]] = {
    "domains": ("domains", CFG),
    "sample": ("sample", CFG, "--out", "{w}/out"),
    "train-proxy": ("train-proxy", CFG, "--mixture", "{id}", "--out", "{w}/out", "--dry-run"),
    "sweep": ("sweep", CFG, "--dry-run"),
    "fit": ("fit", CFG, "--out", "{w}/out/model"),
    "optimize": ("optimize", CFG, "--out", "{w}/out/weights.yaml"),
    "emit": ("emit", CFG, "--weights", "{w}/run/weights.yaml", "--out", "{w}/out/blend"),
    "run": ("run", CFG, "--dry-run"),
}

#: Mutations of the config file every command that reads it must refuse (name, mutation, names).
CONFIG_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("binary", write_bytes("study.yaml", b"\x89PNG\r\n\x1a\n\x00\xff\xfe"), r"study\.yaml"),
    ("directory", make_dir("study.yaml"), r"study\.yaml.*director"),
    ("missing", remove("study.yaml"), r"study\.yaml.*(does not exist|not found)"),
    ("list_top", write_text("study.yaml", "- a\n- b\n"), r"study\.yaml"),
    ("bad_yaml", write_text("study.yaml", "run_dir: [run\ndomains: {"), r"study\.yaml"),
    ("dup_section", append_text("study.yaml", "sample: {num_mixtures: 4}\n"), r"sample"),
    ("unknown_top", set_key("smaple", {"num_mixtures": 3}), r"smaple"),
    ("run_dir_list", set_key("run_dir", ["a", "b"]), r"run_dir"),
    ("run_dir_number", set_key("run_dir", 12345), r"run_dir"),
    ("fit_unknown_key", set_key("fit.num_fold", 3), r"fit.*num_fold"),
    ("optimize_bad_type", set_key("optimize.num_candidates", "many"), r"optimize\.num_candidates"),
    ("emit_bad_split", set_key("emit.split", "a,b"), r"emit"),
    (
        "domain_prefix_missing",
        set_key("domains.entries", [{"name": "a", "prefixes": ["data/nope"]}]),
        r"nope",
    ),
]

#: Mutations of the data or of what the config says of it, for the commands that read the data.
DATA_COMMANDS = ("domains", "sample", "train-proxy", "sweep", "optimize", "emit")
DATA_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("bin_truncated", truncate("data/b_text_document.bin", 0.5), r"b_text_document"),
    ("idx_truncated", truncate("data/b_text_document.idx", 40), r"b_text_document"),
    ("idx_garbage", write_bytes("data/b_text_document.idx", b"garbage" * 20), r"b_text_document"),
    ("idx_missing", remove("data/b_text_document.idx"), r"b_text_document"),
    ("idx_lengths_disagree", _idx_lengths_disagree, r"b_text_document"),
    (
        "same_prefix_twice",
        set_key(
            "domains.entries",
            [
                {"name": "a", "prefixes": ["data/a_text_document"]},
                {"name": "b", "prefixes": ["data/a_text_document"]},
            ],
        ),
        r"a_text_document",
    ),
    (
        "duplicate_domain",
        set_key(
            "domains.entries",
            [
                {"name": "a", "prefixes": ["data/a_text_document"]},
                {"name": "a", "prefixes": ["data/b_text_document"]},
            ],
        ),
        r"'a'",
    ),
    ("negative_budget", set_key("domains.num_target_tokens", -5), r"num_target_tokens"),
]

#: Bad mixtures tables (``run/mixtures.csv``), for every command that reads one.
MIX = "run/mixtures.csv"
TABLE_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("sum_1_068", edit_csv(MIX, lambda r: _set_row(r, 1, ["0.5", "0.5", "0.068"])), r"sum"),
    ("all_zero_row", edit_csv(MIX, lambda r: _set_row(r, 2, ["0", "0", "0"])), r"0"),
    ("negative", edit_csv(MIX, lambda r: _set_row(r, 1, ["1.2", "-0.2", "0"])), r"-0\.2|>= 0"),
    ("nan_cell", edit_csv(MIX, lambda r: _set_row(r, 1, ["nan", "0.5", "0.5"])), r"finite|nan"),
    ("empty_cell", edit_csv(MIX, lambda r: _set_row(r, 1, ["", "0.5", "0.5"])), r"mixtures"),
    ("text_cell", edit_csv(MIX, lambda r: _set_row(r, 1, ["x", "0.5", "0.5"])), r"'x'|mixtures"),
    ("missing_column", edit_csv(MIX, lambda r: [row.pop() for row in r]), r"'c'|\bc\b"),
    (
        "extra_column",
        edit_csv(MIX, lambda r: [row.append("d" if i == 0 else "0") for i, row in enumerate(r)]),
        r"'d'",
    ),
    ("header_only", edit_csv(MIX, lambda r: r.__delitem__(slice(1, None))), r"no (mixtures|rows)"),
    ("json", write_text(MIX, '{"m1": {"a": 1}}\n'), r"mixtures\.csv"),
    ("binary", write_bytes(MIX, b"\xff\xfe\x00\x01garbage\x00"), r"mixtures\.csv"),
    ("empty_file", write_text(MIX, ""), r"mixtures\.csv"),
    ("directory", make_dir(MIX), r"mixtures\.csv"),
    (
        "duplicate_ids",
        edit_csv(MIX, lambda r: _set_row(r, 2, r[1][1:]) or r[2].__setitem__(0, r[1][0])),
        r"mixtures\.csv",
    ),
    ("ragged_row", edit_csv(MIX, lambda r: r[1].pop()), r"mixtures\.csv"),
]
#: Commands that read a mixtures table, with their argv.
TABLE_COMMANDS: dict[str, tuple[str, ...]] = {
    "fit": ("fit", CFG, "--out", "{w}/out/model"),
    "predict": (
        "predict",
        "--model",
        "{w}/run/model",
        "--mixtures",
        "{w}/" + MIX,
        "--out",
        "{w}/out/p.csv",
    ),
    "emit": ("emit", CFG, "--mixture", "{id}", "--mixtures", "{w}/" + MIX, "--out", "{w}/out/b"),
    "train-proxy": ("train-proxy", CFG, "--mixture", "{id}", "--out", "{w}/out/p", "--dry-run"),
    "optimize": ("optimize", CFG, "--out", "{w}/out/weights.yaml"),
    "collect": ("collect", "{w}/run", "--mixtures", "{w}/" + MIX, "--out", "{w}/out/r.csv"),
}

#: Bad results tables for ``fit`` (and ``optimize``, which reads them for the observed best).
RES = "run/results.csv"
RESULTS_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("header_only", edit_csv(RES, lambda r: r.__delitem__(slice(1, None))), r"results\.csv"),
    ("binary", write_bytes(RES, b"\x00\xff\xfe binary"), r"results\.csv"),
    ("missing", remove(RES), r"results\.csv"),
    ("directory", make_dir(RES), r"results\.csv"),
    ("target_missing", edit_csv(RES, lambda r: [row.pop() for row in r]), r"target_loss/t"),
    (
        "ids_disjoint",
        edit_csv(RES, lambda r: [row.__setitem__(0, "x" + row[0]) for row in r[1:]]),
        r"results\.csv|mixtures\.csv",
    ),
    (
        "all_nan_target",
        edit_csv(RES, lambda r: [row.__setitem__(-1, "nan") for row in r[1:]]),
        r"target_loss/t",
    ),
    ("text_value", edit_csv(RES, lambda r: r[1].__setitem__(-1, "low")), r"results\.csv"),
]
RESULTS_COMMANDS: dict[str, tuple[str, ...]] = {
    "fit": ("fit", CFG, "--out", "{w}/out/model"),
    "optimize": ("optimize", CFG, "--out", "{w}/out/weights.yaml"),
}
#: Results tables ``optimize`` may go without (no best-observed baseline, with a warning): a
#: missing file, or one without the target's values. ``fit`` must refuse them.
OPTIONAL_FOR_OPTIMIZE = {"missing", "target_missing", "all_nan_target"}

#: Damaged model folders, for the commands that load a model.
MODEL = "run/model"
TDIR = MODEL + "/target_loss__t"
MODEL_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("lgbm_cut_header", truncate(TDIR + "/lightgbm.txt", 300), r"lightgbm\.txt"),
    ("lgbm_cut_half", truncate(TDIR + "/lightgbm.txt", 0.5), r"lightgbm\.txt"),
    ("lgbm_garbage", write_text(TDIR + "/lightgbm.txt", "tree\nnonsense=1\n"), r"lightgbm\.txt"),
    ("gp_garbage", write_bytes(TDIR + "/gp.npz", b"PK\x03\x04garbage"), r"gp\.npz"),
    ("gp_missing", remove(TDIR + "/gp.npz"), r"gp\.npz"),
    ("member_missing", remove(TDIR + "/members/lightgbm_001.txt"), r"lightgbm_001"),
    ("metadata_missing", remove(MODEL + "/metadata.json"), r"metadata\.json|model"),
    ("metadata_garbage", write_text(MODEL + "/metadata.json", "{not json"), r"metadata\.json"),
    ("metadata_binary", write_bytes(MODEL + "/metadata.json", b"\xff\xfe\x00"), r"metadata\.json"),
    ("model_is_file", write_text(MODEL, "not a folder\n"), r"model"),
    ("target_folder_missing", remove(TDIR), r"target_loss"),
]
MODEL_COMMANDS: dict[str, tuple[str, ...]] = {
    "predict": (
        "predict",
        "--model",
        "{w}/" + MODEL,
        "--mixtures",
        "{w}/" + MIX,
        "--out",
        "{w}/out/p.csv",
    ),
    "optimize": ("optimize", CFG, "--out", "{w}/out/weights.yaml"),
}

#: Bad weights files (``run/weights.yaml``), for the commands that read one.
WTS = "run/weights.yaml"


def _weights(fn: Callable[[dict[str, float]], Any]) -> Mutation:
    def edit(d: dict[str, Any]) -> None:
        fn(d["weights"])

    return edit_yaml(WTS, edit)


WEIGHTS_MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("directory", make_dir(WTS), r"weights\.yaml.*director"),
    ("missing", remove(WTS), r"weights\.yaml"),
    ("binary", write_bytes(WTS, b"\xff\xfe\x00\x01"), r"weights\.yaml"),
    ("no_weights_key", write_text(WTS, "chosen: {a: 1}\n"), r"weights"),
    ("weights_list", write_text(WTS, "weights: [0.2, 0.8]\n"), r"weights"),
    ("sum_1_2", _weights(lambda d: d.__setitem__("a", d["a"] + 0.2)), r"sum|weights\.yaml"),
    ("unknown_domain", _weights(lambda d: d.__setitem__("zz", 0.0)), r"zz"),
    ("missing_domain", _weights(lambda d: d.pop("c")), r"'c'|\bc\b"),
    ("negative", _weights(lambda d: d.update(a=-0.1, b=d["b"] + 0.1 + d["a"])), r"weights\.a"),
    ("text_weight", _weights(lambda d: d.__setitem__("a", "half")), r"weights\.a"),
]
WEIGHTS_COMMANDS: dict[str, tuple[str, ...]] = {
    "emit": ("emit", CFG, "--weights", "{w}/" + WTS, "--out", "{w}/out/blend"),
    "train-proxy": (
        "train-proxy",
        CFG,
        "--weights",
        "{w}/" + WTS,
        "--out",
        "{w}/out/p",
        "--dry-run",
    ),
    "report": ("report", "{w}/run"),
}

RUN1 = "run/sweep/runs/{id}"


def _run_file(name: str, text: str | bytes) -> Mutation:
    def mutate(w: Path) -> None:
        mid = (w / "ids.txt").read_text().split()[0]
        data = text.encode() if isinstance(text, str) else text
        _write(w / RUN1.format(id=mid) / name, data)

    return mutate


def _nothing(w: Path) -> None:
    """No mutation: the command line itself is the bad input."""


#: Single cases: the sweep records, status/collect, init, blend-demo, predict/report/fit flags,
#: overrides, the plan checks of `regmix run` and `regmix sweep`.
SINGLE: list[Case] = [
    Case("status/missing_dir", ("status", "{w}/nowhere"), _nothing, r"nowhere"),
    Case("status/file", ("status", "{w}/study.yaml"), _nothing, r"study\.yaml"),
    Case("status/empty_dir", ("status", "{w}/data"), _nothing, r"data.*sweep"),
    Case(
        "status/attempts_garbage",
        ("status", "{w}/run"),
        _run_file("attempts.json", "[{"),
        r"attempts\.json",
    ),
    Case("status/done_garbage", ("status", "{w}/run"), _run_file("DONE", "{"), r"DONE"),
    Case(
        "status/sweep_json_garbage",
        ("status", "{w}/run"),
        write_text("run/sweep/sweep.json", "{"),
        r"sweep\.json",
    ),
    Case(
        "status/attempts_not_list",
        ("status", "{w}/run"),
        _run_file("attempts.json", "{}"),
        r"attempts\.json",
    ),
    Case(
        "collect/missing_dir",
        ("collect", "{w}/nowhere", "--out", "{w}/out/r.csv"),
        _nothing,
        r"nowhere",
    ),
    Case(
        "collect/file",
        ("collect", "{w}/study.yaml", "--out", "{w}/out/r.csv"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "collect/empty_dir",
        ("collect", "{w}/out", "--out", "{w}/out/r.csv"),
        make_dir("out"),
        r"out",
    ),
    Case(
        "collect/metrics_garbage",
        ("collect", "{w}/run", "--out", "{w}/out/r.csv"),
        _run_file("metrics.json", "{"),
        r"metrics\.json",
    ),
    Case(
        "collect/metrics_binary",
        ("collect", "{w}/run", "--out", "{w}/out/r.csv"),
        _run_file("metrics.json", b"\xff\xfe\x00"),
        r"metrics\.json",
    ),
    Case(
        "collect/out_under_file",
        ("collect", "{w}/run", "--out", "{w}/study.yaml/r.csv"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "collect/bad_config",
        ("collect", "{w}/run", "--config", "{w}/nowhere.yaml", "--out", "{w}/out/r.csv"),
        _nothing,
        r"nowhere\.yaml",
    ),
    Case(
        "init/missing_dir",
        ("init", "{w}/nowhere", "--out", "{w}/out/s.yaml", "--vocab-size", "96"),
        _nothing,
        r"nowhere",
    ),
    Case(
        "init/empty_dir",
        ("init", "{w}/out", "--out", "{w}/s2.yaml", "--vocab-size", "96"),
        make_dir("out"),
        r"out",
    ),
    Case(
        "init/file",
        ("init", "{w}/study.yaml", "--out", "{w}/out/s.yaml", "--vocab-size", "96"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "init/target_missing",
        ("init", "{w}/data", "--target", "{w}/nowhere", "--out", "{w}/out/s.yaml"),
        _nothing,
        r"nowhere",
    ),
    Case(
        "init/out_exists",
        ("init", "{w}/data", "--out", "{w}/study.yaml", "--vocab-size", "96"),
        _nothing,
        r"study\.yaml.*--force",
    ),
    Case(
        "init/out_under_file",
        ("init", "{w}/data", "--out", "{w}/study.yaml/s.yaml", "--vocab-size", "96"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "init/vocab_zero",
        ("init", "{w}/data", "--out", "{w}/out/s.yaml", "--vocab-size", "0"),
        _nothing,
        r"vocab",
    ),
    Case(
        "init/damaged_prefix",
        ("init", "{w}/data", "--out", "{w}/out/s.yaml", "--vocab-size", "96"),
        truncate("data/b_text_document.bin", 0.5),
        r"b_text_document",
    ),
    Case(
        "blend-demo/out_is_file",
        ("blend-demo", "--out", "{w}/study.yaml"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "blend-demo/out_under_file",
        ("blend-demo", "--out", "{w}/study.yaml/demo"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "predict/interval_1_5",
        (
            "predict",
            "--model",
            "{w}/run/model",
            "--mixtures",
            "{w}/" + MIX,
            "--out",
            "{w}/out/p.csv",
            "--interval",
            "1.5",
        ),
        _nothing,
        r"--interval",
    ),
    Case(
        "predict/unknown_target",
        (
            "predict",
            "--model",
            "{w}/run/model",
            "--mixtures",
            "{w}/" + MIX,
            "--out",
            "{w}/out/p.csv",
            "--target",
            "nope",
        ),
        _nothing,
        r"nope",
    ),
    Case(
        "predict/out_under_file",
        (
            "predict",
            "--model",
            "{w}/run/model",
            "--mixtures",
            "{w}/" + MIX,
            "--out",
            "{w}/study.yaml/p.csv",
        ),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "predict/out_is_dir",
        ("predict", "--model", "{w}/run/model", "--mixtures", "{w}/" + MIX, "--out", "{w}/run"),
        _nothing,
        r"run",
    ),
    Case(
        "predict/model_missing",
        ("predict", "--model", "{w}/nowhere", "--mixtures", "{w}/" + MIX, "--out", "{w}/out/p.csv"),
        _nothing,
        r"nowhere",
    ),
    Case(
        "fit/out_under_file",
        ("fit", CFG, "--out", "{w}/study.yaml/model"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "fit/unknown_target",
        ("fit", CFG, "--target", "nope", "--out", "{w}/out/model"),
        _nothing,
        r"nope",
    ),
    Case(
        "fit/two_configs",
        ("fit", CFG, "--config", "{w}/other.yaml", "--out", "{w}/out/m"),
        _nothing,
        r"config",
    ),
    Case("fit/no_inputs", ("fit", "--out", "{w}/out/model"), _nothing, r"--mixtures"),
    Case(
        "fit/too_few_rows",
        ("fit", CFG, "--out", "{w}/out/model"),
        edit_csv(MIX, lambda r: r.__delitem__(slice(4, None))),
        r"fit\.num_folds|rows",
    ),
    Case(
        "optimize/out_under_file",
        ("optimize", CFG, "--out", "{w}/study.yaml/w.yaml"),
        _nothing,
        r"study\.yaml",
    ),
    Case("optimize/out_is_dir", ("optimize", CFG, "--out", "{w}/run"), _nothing, r"run"),
    Case(
        "optimize/prior_missing",
        (
            "optimize",
            "--prior",
            "{w}/nowhere.yaml",
            "--model",
            "{w}/run/model",
            "--out",
            "{w}/out/w.yaml",
        ),
        _nothing,
        r"nowhere\.yaml",
    ),
    Case(
        "optimize/prior_bad_sum",
        (
            "optimize",
            "--prior",
            "{w}/prior.yaml",
            "--model",
            "{w}/run/model",
            "--out",
            "{w}/out/w.yaml",
        ),
        write_text("prior.yaml", "a: 0.5\nb: 0.9\nc: 0.1\n"),
        r"--prior|optimize\.prior",
    ),
    Case(
        "optimize/prior_unknown_domain",
        (
            "optimize",
            "--prior",
            "{w}/prior.yaml",
            "--model",
            "{w}/run/model",
            "--out",
            "{w}/out/w.yaml",
        ),
        write_text("prior.yaml", "a: 0.5\nb: 0.3\nzz: 0.2\n"),
        r"zz|prior\.yaml",
    ),
    Case(
        "optimize/unknown_target",
        ("optimize", CFG, "--out", "{w}/out/w.yaml"),
        set_key("optimize.target", "nope"),
        r"optimize\.target",
    ),
    Case(
        "optimize/bounds_infeasible",
        ("optimize", CFG, "--out", "{w}/out/w.yaml"),
        set_key("optimize.min_weights", {"a": 0.6, "b": 0.6}),
        r"min_weights|optimize",
    ),
    Case(
        "emit/out_is_file",
        ("emit", CFG, "--weights", "{w}/" + WTS, "--out", "{w}/study.yaml"),
        _nothing,
        r"study\.yaml",
    ),
    Case(
        "emit/unknown_mixture",
        ("emit", CFG, "--mixture", "nope", "--mixtures", "{w}/" + MIX, "--out", "{w}/out/b"),
        _nothing,
        r"nope",
    ),
    Case(
        "emit/unknown_format",
        ("emit", CFG, "--weights", "{w}/" + WTS, "--out", "{w}/out/b"),
        set_key("emit.formats", ["megatron_lm", "nonsense"]),
        r"nonsense",
    ),
    Case(
        "train-proxy/unknown_mixture",
        ("train-proxy", CFG, "--mixture", "nope", "--out", "{w}/out/p"),
        _nothing,
        r"nope",
    ),
    Case(
        "train-proxy/no_proxy",
        ("train-proxy", CFG, "--mixture", "{id}", "--out", "{w}/out/p"),
        edit_study(lambda d: d.pop("proxy")),
        r"proxy",
    ),
    Case(
        "train-proxy/target_missing",
        ("train-proxy", CFG, "--mixture", "{id}", "--out", "{w}/out/p"),
        set_key("proxy.targets", {"t": ["data/nowhere_text_document"]}),
        r"proxy\.targets",
    ),
    Case("report/missing_dir", ("report", "{w}/nowhere"), _nothing, r"nowhere"),
    Case("report/empty_dir", ("report", "{w}/out"), make_dir("out"), r"out"),
    Case("report/file", ("report", "{w}/study.yaml"), _nothing, r"study\.yaml"),
    Case(
        "report/model_damaged",
        ("report", "{w}/run"),
        write_text(TDIR + "/lightgbm.txt", "tree\n"),
        r"lightgbm\.txt",
    ),
    Case(
        "report/mixtures_bad",
        ("report", "{w}/run"),
        edit_csv(MIX, lambda r: _set_row(r, 1, ["0.5", "0.5", "0.068"])),
        r"mixtures\.csv",
    ),
    Case("run/from_unknown", ("run", CFG, "--from", "nope", "--dry-run"), _nothing, r"nope"),
    Case(
        "run/from_after_to",
        ("run", CFG, "--from", "emit", "--to", "fit", "--dry-run"),
        _nothing,
        r"--from",
    ),
    Case(
        "run/too_few_proxies",
        ("run", CFG, "--dry-run"),
        set_key("sample.num_mixtures", 3),
        r"sample\.num_mixtures",
    ),
    Case(
        "run/no_domains",
        ("run", CFG, "--dry-run"),
        edit_study(lambda d: d.pop("domains")),
        r"domains",
    ),
    Case(
        "run/target_missing",
        ("run", CFG, "--from", "sweep", "--to", "sweep"),
        both(set_key("proxy.targets", {"t": ["data/nowhere_text_document"]}), remove("run/sweep")),
        r"proxy\.targets",
    ),
    Case(
        "run/eval_too_large",
        ("run", CFG, "--from", "sweep", "--to", "sweep"),
        both(set_key("proxy.num_eval_tokens", 10**6), remove("run/sweep")),
        r"proxy\.num_eval_tokens",
    ),
    Case(
        "sweep/target_missing",
        ("sweep", CFG),
        both(set_key("proxy.targets", {"t": ["data/nowhere_text_document"]}), remove("run/sweep")),
        r"proxy\.targets",
    ),
    Case(
        "sweep/eval_too_large",
        ("sweep", CFG),
        both(set_key("proxy.num_eval_tokens", 10**6), remove("run/sweep")),
        r"proxy\.num_eval_tokens",
    ),
    Case(
        "sweep/split_no_valid",
        ("sweep", CFG),
        set_key("proxy.split", "100,0,0"),
        r"proxy\.split|split",
    ),
    Case("sweep/other_config", ("sweep", CFG), set_key("proxy.lr", 0.5), r"sweep"),
    Case("set/malformed", ("domains", CFG, "--set", "proxy"), _nothing, r"--set"),
    Case("set/unknown_key", ("domains", CFG, "--set", "proxy.nope=1"), _nothing, r"nope"),
    Case(
        "set/bad_value",
        ("domains", CFG, "--set", "sample.num_mixtures=[1"),
        _nothing,
        r"sample\.num_mixtures",
    ),
    Case("set/into_scalar", ("domains", CFG, "--set", "run_dir.x=1"), _nothing, r"run_dir"),
    Case("cli/unknown_command", ("frobnicate",), _nothing, r"frobnicate"),
    Case("cli/missing_argument", ("predict", "--model", "{w}/run/model"), _nothing, r"--mixtures"),
]


def all_cases() -> list[Case]:
    """Every case of the suite, generated from the tables above."""
    cases: list[Case] = []
    for mname, mutation, names in CONFIG_MUTATIONS:
        for cmd, argv in CONFIG_COMMANDS.items():
            cases.append(Case(f"config/{mname}/{cmd}", argv, mutation, names))
    for mname, mutation, names in DATA_MUTATIONS:
        for cmd in DATA_COMMANDS:
            cases.append(Case(f"data/{mname}/{cmd}", CONFIG_COMMANDS[cmd], mutation, names))
    for table, commands, mutations in (
        ("mixtures", TABLE_COMMANDS, TABLE_MUTATIONS),
        ("results", RESULTS_COMMANDS, RESULTS_MUTATIONS),
        ("model", MODEL_COMMANDS, MODEL_MUTATIONS),
        ("weights", WEIGHTS_COMMANDS, WEIGHTS_MUTATIONS),
    ):
        for mname, mutation, names in mutations:
            for cmd, argv in commands.items():
                if (table, cmd) == ("results", "optimize") and mname in OPTIONAL_FOR_OPTIMIZE:
                    continue
                if (table, cmd, mname) == ("weights", "report", "missing"):
                    continue  # a report of a run stopped before optimize: legitimate
                if (table, cmd, mname) == ("mixtures", "collect", "extra_column"):
                    continue  # collect reads the ids alone and knows no domains: a valid table
                # A table's message must name the table's file (what to fix).
                named = r"mixtures\.csv" if table == "mixtures" else names
                cases.append(Case(f"{table}/{mname}/{cmd}", argv, mutation, named))
    return cases + SINGLE


def run_case(case: Case, good: Path, scratch: Path) -> Outcome:
    """Copy the good workspace to ``scratch``, mutate it, run the case's command line."""
    shutil.copytree(good, scratch, symlinks=True, copy_function=os.link)
    case.mutation(scratch)
    first_id = (scratch / "ids.txt").read_text().split()[0]
    argv = [a.replace("{w}", str(scratch)).replace("{id}", first_id) for a in case.argv]
    return run_cli(argv, scratch)


def main() -> None:
    """Print the tally of every case (``python tests/bad_input_cases.py``)."""
    import collections
    import logging
    import sys
    import tempfile
    import time

    logging.disable(logging.CRITICAL)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        good = build_workspace(Path(tmp) / "good")
        tally: collections.Counter[str] = collections.Counter()
        seconds: dict[str, float] = {}
        print(f"workspace built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for i, case in enumerate(all_cases()):
            t1 = time.perf_counter()
            outcome = run_case(case, good, Path(tmp) / f"case{i}")
            verdict = judge(outcome, case.names)
            seconds[case.name] = time.perf_counter() - t1
            tally[verdict] += 1
            if verdict != "clear":
                detail = outcome.exception or error_message(outcome.stderr)[:300]
                extra = f" new files {outcome.new_files[:3]}" if outcome.new_files else ""
                print(f"{verdict:9s} {case.name}: rc={outcome.code} {detail!r}{extra}")
            shutil.rmtree(Path(tmp) / f"case{i}", ignore_errors=True)
    slow = sorted(seconds.items(), key=lambda kv: -kv[1])[:15]
    print("slowest:", ", ".join(f"{k} {v:.1f} s" for k, v in slow), file=sys.stderr)
    total = sum(tally.values())
    print(f"{total} cases in {time.perf_counter() - t0:.0f} s: {dict(tally)}", file=sys.stderr)


if __name__ == "__main__":
    main()
