"""Speed changes of the default regressor must not change a number: folds tuned in threads
(issue 17, part 4); the LightGBM text parser the ensemble's members go through."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from regmix_plugin.errors import DataError
from regmix_plugin.regression.fitting import kfold
from regmix_plugin.regression.regressors import (
    BlendRegressor,
    GPRegressor,
    LightGBMRegressor,
    RegressorSettings,
    model_text,
)
from regmix_plugin.regression.trees import (
    ForestArrays,
    _parse_regular,
    parse_lightgbm_model,
    parse_lightgbm_model_lines,
)


def _rows(n: int = 160, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.dirichlet(np.full(k, 0.5), size=n)
    y = np.log(x[:, 0] + 0.01) - 2 * x[:, 1] * x[:, 2] + 0.05 * rng.standard_normal(n)
    return x, y


def _tuned(monkeypatch: pytest.MonkeyPatch, threads: int) -> tuple[np.ndarray, BlendRegressor]:
    monkeypatch.setattr(LightGBMRegressor, "fold_threads", threads)
    monkeypatch.setattr(GPRegressor, "fold_threads", threads)
    x, y = _rows()
    settings = RegressorSettings()
    model = BlendRegressor(settings)
    oof = model.tune(x, y, kfold(len(y), 5, 42))
    return oof, model


def test_threaded_folds_give_the_numbers_of_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    one, m1 = _tuned(monkeypatch, 1)
    two, m2 = _tuned(monkeypatch, 3)
    assert np.all(np.isfinite(one))
    np.testing.assert_array_equal(one, two)  # bit for bit
    assert (m1.weight, m1.trees.num_rounds) == (m2.weight, m2.trees.num_rounds)
    assert m1.gp._theta is not None and m2.gp._theta is not None
    np.testing.assert_array_equal(m1.gp._theta, m2.gp._theta)


def _model_text() -> str:
    x, y = _rows(300, 4)
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1, "num_leaves": 7}
    return str(lgb.train(params, lgb.Dataset(x, y), num_boost_round=20).model_to_string())


def test_parser_reads_every_value_as_lightgbm_wrote_it() -> None:
    text = _model_text()
    arrays = parse_lightgbm_model(text)
    # An independent reading of the text: tree by tree, value by value, with Python's float.
    trees = text.split("Tree=")[1:]
    want_threshold: list[float] = []
    want_leaf: list[float] = []
    for tree in trees:
        fields = dict(line.split("=", 1) for line in tree.splitlines()[1:] if "=" in line)
        want_threshold += [float(v) for v in fields["threshold"].split()]
        want_leaf += [float(v) for v in fields["leaf_value"].split()]
    assert arrays.num_trees == 20
    assert arrays.threshold.tolist() == want_threshold
    assert arrays.leaf_value.tolist() == want_leaf


def test_parser_names_the_tree_with_a_bad_value() -> None:
    text = _model_text()
    head, sep, rest = text.partition("Tree=3\n")
    start = rest.index("threshold=") + len("threshold=")
    fewer = rest[:start] + rest[start:].split(" ", 1)[1]  # the first value dropped
    with pytest.raises(DataError, match=r"tree 3: field 'threshold' holds"):
        parse_lightgbm_model(head + sep + fewer)
    bad_value = rest[:start] + "x" + rest[start + 1 :]  # same count, one value not a number
    with pytest.raises(DataError, match=r"tree 3: field 'threshold' is not a list of numbers"):
        parse_lightgbm_model(head + sep + bad_value)


def _assert_same_arrays(a: ForestArrays, b: ForestArrays) -> None:
    assert a.num_features == b.num_features
    for name in ForestArrays.__dataclass_fields__:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and va.flags.c_contiguous, name
            np.testing.assert_array_equal(va, vb, err_msg=name)


def test_whole_model_reading_equals_the_line_by_line_one() -> None:
    """LightGBM's own texts take the fast reading (all trees field by field) and give the
    arrays of the line-by-line reading; anything irregular is left to the latter."""
    x, y = _rows(300, 4)
    x[::5, 1] = np.nan  # missing values: other decision types
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1, "num_leaves": 7}
    text = str(lgb.train(params, lgb.Dataset(x, y), num_boost_round=20).model_to_string())
    stumps = lgb.train({**params, "min_data_in_leaf": 1000}, lgb.Dataset(x, y), 3)
    constant = str(stumps.model_to_string())
    assert (np.diff(parse_lightgbm_model_lines(constant).node_offset) == 0).all()  # 1-leaf trees
    for t in (text, text.replace("\n", "\r\n"), constant):
        assert _parse_regular(t, "m") is not None
        _assert_same_arrays(parse_lightgbm_model(t), parse_lightgbm_model_lines(t))
    head, sep, rest = text.partition("Tree=3\n")
    start = rest.index("threshold=") + len("threshold=")
    irregular = {
        # a field twice in tree 3 (the line-by-line reading keeps the last)
        "twice": head + sep + "threshold=1 2 3 4 5 6\n" + rest,
        "old Mac line ends": text.replace("\n", "\r"),
        "a key with a space": head + sep + rest.replace("\nthreshold=", "\n threshold=", 1),
        "a tab between values": head + sep + rest[:start] + rest[start:].replace(" ", "\t", 1),
        "a plus sign": head + sep + rest[:start] + "+" + rest[start:],
        "not ASCII": head + sep + rest.replace("\nshrinkage=", "\nnote=\u00e9\nshrinkage=", 1),
        "num_cat 00": head + sep + rest.replace("num_cat=0", "num_cat=00", 1),
    }
    for why, t in irregular.items():
        assert _parse_regular(t, "m") is None, why
        _assert_same_arrays(parse_lightgbm_model(t), parse_lightgbm_model_lines(t))
    odd = irregular["old Mac line ends"]
    _assert_same_arrays(parse_lightgbm_model(odd), parse_lightgbm_model(text))


_GP_FIT_IN_FRESH_PROCESS = """
import sys
import numpy as np
if sys.argv[1] == "scipy-first":
    import scipy.linalg  # noqa: F401
from regmix_plugin.regression.regressors import GPRegressor, GPSettings
rng = np.random.default_rng(3)
x = rng.dirichlet(np.full(6, 0.5), size=120)
y = np.log(x[:, 0] + 0.01) - 2 * x[:, 1] * x[:, 2] + 0.05 * rng.standard_normal(120)
model = GPRegressor(GPSettings())
model.fit(x, y)
print(model.state["length_scale"].tobytes().hex(), model.state["dual_coef"].tobytes().hex())
"""


def test_gp_fit_bits_do_not_depend_on_what_the_process_imported_first() -> None:
    """The GP's LAPACK runs on one thread (``gp.num_threads: 1``) even when SciPy's own
    OpenBLAS is first loaded inside the fit: a fresh process (as ``regmix fit`` alone) and one
    that imported SciPy before (as within ``regmix run``) give the same bits, with OpenBLAS
    free to use two threads."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}

    def run(mode: str) -> str:
        cmd = [sys.executable, "-c", _GP_FIT_IN_FRESH_PROCESS, mode]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout

    assert run("fresh") == run("scipy-first")


def test_tree_section_reader_compiles_cleanly_without_python() -> None:
    """lgbm_text.cpp builds warning-free with -Wall -Wextra and needs no Python headers."""
    csrc = Path(__file__).resolve().parents[1] / "csrc" / "trees"
    for name in ("lgbm_text.h", "lgbm_text.cpp"):
        text = (csrc / name).read_text()
        assert "pybind11" not in text and "Python.h" not in text
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler on PATH")
    cmd = [compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-c"]
    result = subprocess.run(
        [*cmd, str(csrc / "lgbm_text.cpp"), "-o", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_model_text_is_lightgbms_own_text() -> None:
    """Through a file, for a model past LightGBM's first 1 MiB string buffer and a small one."""
    x, y = _rows(400, 6)
    params = {"objective": "regression", "verbosity": -1, "num_threads": 1, "learning_rate": 0.01}
    for rounds in (1000, 5):
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
        text = booster.model_to_string()
        assert (len(text) > 1 << 20) == (rounds == 1000)
        assert model_text(booster) == text
