"""The generated bad-input suite (issue 18): every command refuses every bad input of
``bad_input_cases`` with exit code 2, a one-paragraph message naming the file or setting, no
traceback and no new file; the blending API raises its ``RegMixError`` naming the argument.

The workspace is one good study (real ``.bin/.idx`` files, a real fitted model, a prepared sweep);
each case hard-links a copy, mutates it and runs ``regmix_plugin.cli.main`` in-process. A handful
go through a real ``python -m regmix_plugin`` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_input_cases import (
    all_cases,
    build_workspace,
    error_message,
    judge,
    run_case,
    run_cli,
)

from regmix_plugin import blending
from regmix_plugin.errors import RegMixError

CASES = all_cases()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("good"))


def test_the_suite_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 150
    commands = {c.argv[0] for c in CASES}
    expected = {
        "init", "domains", "sample", "train-proxy", "sweep", "status", "collect", "fit",
        "predict", "optimize", "emit", "report", "run", "blend-demo",
    }  # fmt: skip
    assert expected <= commands
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_clear_error(case, good: Path, tmp_path: Path) -> None:
    outcome = run_case(case, good, tmp_path / "w")
    verdict = judge(outcome, case.names)
    assert verdict == "clear", (
        f"{verdict}: exit {outcome.code}, exception {outcome.exception!r}, new files "
        f"{outcome.new_files[:5]}, message {error_message(outcome.stderr)!r}, expected to match "
        f"{case.names!r}\nstderr: {outcome.stderr[-2000:]}"
    )


def _ids(good: Path) -> list[str]:
    return (good / "ids.txt").read_text().split()


@pytest.mark.parametrize(
    "argv",
    [
        ("domains", "{w}/study.yaml"),
        ("predict", "--model", "{w}/run/model", "--mixtures", "{w}/run/mixtures.csv", "--out",
         "{w}/out/p.csv"),
        ("emit", "{w}/study.yaml", "--weights", "{w}/run/weights.yaml", "--out", "{w}/out/b"),
        ("collect", "{w}/run", "--mixtures", "{w}/run/mixtures.csv", "--out", "{w}/out/r.csv"),
        ("status", "{w}/run"),
        ("train-proxy", "{w}/study.yaml", "--mixture", "{id}", "--out", "{w}/out/p", "--dry-run"),
        ("run", "{w}/study.yaml", "--dry-run"),
        ("report", "{w}/run"),
    ],
    ids=lambda a: a[0],
)  # fmt: skip
def test_the_good_workspace_is_accepted(argv, good: Path, tmp_path: Path) -> None:
    """The controls: the unmutated inputs pass, so each case's refusal is its mutation's."""
    import shutil

    w = tmp_path / "w"
    shutil.copytree(good, w)
    line = [a.replace("{w}", str(w)).replace("{id}", _ids(good)[0]) for a in argv]
    outcome = run_cli(line, w)
    assert outcome.code == 0 and not outcome.exception, outcome.stderr[-2000:]


#: Cases run through a real process: the console a user sees.
SUBPROCESS = [
    "config/binary/domains",
    "mixtures/sum_1_068/fit",
    "model/lgbm_cut_header/predict",
    "weights/directory/emit",
    "predict/out_under_file",
    "status/attempts_garbage",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_bad_input_in_a_real_process(name: str, good: Path, tmp_path: Path) -> None:
    import shutil

    case = next(c for c in CASES if c.name == name)
    w = tmp_path / "w"
    shutil.copytree(good, w)
    case.mutation(w)
    argv = [a.replace("{w}", str(w)).replace("{id}", _ids(good)[0]) for a in case.argv]
    before = {p for p in w.rglob("*") if p.is_file()}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "regmix_plugin", *argv],
        cwd=w,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    message = error_message(proc.stderr)
    assert message and "\n\n" not in message
    import re

    assert re.search(case.names, message), message
    assert {p for p in w.rglob("*") if p.is_file()} == before


# -- the blending API: its own errors, naming the argument --------------------------------------

API_CASES = [
    ("weights_nan", lambda: blending.build_blend_indices([0.5, float("nan")], 10), r"weights\[1\]"),
    ("weights_negative", lambda: blending.counts_after([0.5, -1.0], 10), r"weights\[1\]"),
    ("weights_empty", lambda: blending.build_blend_indices([], 10), r"weights is empty"),
    ("weights_zero", lambda: blending.counts_after([0.0, 0.0], 10), r"are 0"),
    ("weights_2d", lambda: blending.counts_after([[0.5, 0.5]], 10), r"flat list"),
    ("weights_text", lambda: blending.counts_after(["a", "b"], 10), r"real numbers"),
    ("num_samples_zero", lambda: blending.build_blend_indices([1.0], 0), r"num_samples"),
    ("num_samples_float", lambda: blending.counts_after([1.0], 2.5), r"num_samples"),
    ("num_samples_2_64", lambda: blending.counts_after([1.0, 1.0], 2**64), r"num_samples"),
    ("threads_negative", lambda: blending.build_blend_indices([1.0], 4, num_threads=-3),
     r"num_threads"),
    ("threads_bool", lambda: blending.build_blend_indices([1.0], 4, num_threads=True),
     r"num_threads"),
    ("huge_eager", lambda: blending.build_blend_indices([0.5, 0.5], 10**12), r"LazyBlendIndex"),
    ("tiny_weight_walk", lambda: blending.counts_after([1e-17, 1.0], 10**18), r"counts_after"),
    ("tiny_weight_lazy", lambda: blending.LazyBlendIndex([1e-17, 1.0], 10**18), r"lazy"),
    ("sizes_too_small", lambda: blending.build_blend_indices(
        [0.5, 0.5], 100, dataset_sizes=[10, 10], allow_repetition=False), r"dataset"),
    ("deviation_bad_index", lambda: blending.max_prefix_deviation(
        np.array([0, 5], dtype=np.int64), [0.5, 0.5]), r"5|dataset"),
]  # fmt: skip


@pytest.mark.parametrize("call,names", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_blending_api_refuses_with_its_own_error(call, names: str) -> None:
    with pytest.raises(RegMixError, match=names):
        call()
