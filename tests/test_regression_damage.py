"""A damaged model folder is refused with a clear error naming the file (issue 18, class 1):
real model files, fitted here, then cut or garbled; ``load_model`` and ``regmix predict``."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from regmix_plugin.cli import main
from regmix_plugin.config import from_dict
from regmix_plugin.errors import DataError
from regmix_plugin.regression import FitConfig, fit, load_model
from regmix_plugin.tables import Table, write_table

DOMAINS = ["web", "code", "books", "math"]
TARGET = "val_loss"
FOLDER = "val_loss"


@pytest.fixture(scope="module")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    x = rng.dirichlet(np.ones(4), size=64)
    y = 3.0 - np.log(x[:, 0] + 0.05) * 0.3 + 0.1 * x[:, 1] + 0.01 * rng.standard_normal(64)
    ids = [f"m{i}" for i in range(64)]
    base = tmp_path_factory.mktemp("damage")
    write_table(base / "mixtures.csv", Table("mixture_id", ids, DOMAINS, x))
    config = from_dict(
        FitConfig,
        {
            "regressor": "lgbm_gp",
            "num_folds": 4,
            "num_members": 2,
            "num_threads": 1,
            "settings": {
                "lightgbm": {"num_boost_round": 40, "select_rounds": False},
                "blend": {"weights": [0.5]},
            },
        },
        "fit",
    )
    fit(
        Table("mixture_id", ids, DOMAINS, x),
        Table("mixture_id", ids, [TARGET], y[:, None]),
        None,
        config,
        base / "model",
    )
    return base


def _lines_before_tree(text: str, k: int) -> str:
    """The text up to (not including) the k-th ``Tree=`` line: a cut at a tree boundary."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("Tree=")]
    return "".join(lines[: starts[k]])


def _cut_after_header(p: Path) -> None:
    p.write_text(_lines_before_tree(p.read_text(), 0))


def _cut_at_tree_boundary(p: Path) -> None:
    p.write_text(_lines_before_tree(p.read_text(), 17))


def _cut_mid_file(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _valid_npz_other_numbers(p: Path) -> None:
    with np.load(p) as data:
        arrays = {k: np.asarray(data[k]) for k in data.files}
    arrays["dual_coef"] = arrays["dual_coef"] * 1.01
    with p.open("wb") as f:
        np.savez(f, **arrays)


def _flip_one_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x01
    p.write_bytes(bytes(data))


CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("lightgbm.txt", _cut_after_header, r"holds 0 of the 40 trees"),
    ("lightgbm.txt", _cut_at_tree_boundary, r"holds 17 of the 40 trees"),
    ("lightgbm.txt", _cut_mid_file, r"lightgbm\.txt"),
    ("lightgbm.txt", _garbage, r"lightgbm\.txt"),
    ("lightgbm.txt", _flip_one_byte, r"lightgbm\.txt.*checksum"),
    ("members/lightgbm_001.txt", _cut_at_tree_boundary, r"lightgbm_001\.txt.*17 of the 40"),
    ("gp.npz", _garbage, r"gp\.npz"),
    ("gp.npz", _empty, r"gp\.npz"),
    ("gp.npz", _cut_mid_file, r"gp\.npz"),
    ("gp.npz", _valid_npz_other_numbers, r"gp\.npz.*checksum"),
    ("cv_predictions.csv", _flip_one_byte, r"cv_predictions\.csv"),
]


@pytest.mark.parametrize(
    ("name", "damage", "message"), CASES, ids=[f"{c[0]}-{c[1].__name__}" for c in CASES]
)
def test_damaged_file_is_refused(
    good_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    damage: Callable[[Path], None],
    message: str,
) -> None:
    model = tmp_path / "model"
    shutil.copytree(good_model / "model", model)
    load_model(model)  # intact: loads
    damage(model / FOLDER / name)
    with pytest.raises(DataError, match=message) as info:
        load_model(model)
    assert "refit" in str(info.value)
    # The command: exit code 2, the message on stderr, no traceback, no predictions file.
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--mixtures",
            str(good_model / "mixtures.csv"),
            "--out",
            str(tmp_path / "pred.csv"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and name.split("/")[-1] in err and "Traceback" not in err
    assert not (tmp_path / "pred.csv").exists()


def test_missing_file_and_stripped_checksums(good_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(good_model / "model", model)
    (model / FOLDER / "members" / "lightgbm_000.txt").unlink()
    with pytest.raises(DataError, match=r"lightgbm_000\.txt.*missing"):
        load_model(model)
    shutil.rmtree(model)
    shutil.copytree(good_model / "model", model)
    meta_path = model / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["targets"][TARGET]["files"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"metadata\.json"):
        load_model(model)


def test_cut_file_with_forged_checksum_still_fails_on_its_tree_count(
    good_model: Path, tmp_path: Path
) -> None:
    """Even when metadata.json's checksum is rewritten to match the cut file, the tree count
    (from metadata.json's record and again from the parsed file against num_rounds) refuses it."""
    model = tmp_path / "model"
    shutil.copytree(good_model / "model", model)
    path = model / FOLDER / "lightgbm.txt"
    _cut_at_tree_boundary(path)
    meta_path = model / "metadata.json"
    meta = json.loads(meta_path.read_text())
    data = path.read_bytes()
    rec = meta["targets"][TARGET]["files"]["lightgbm.txt"]
    rec.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="17 of the 40 trees"):
        load_model(model)
    rec["trees"] = 17
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"holds 17 trees, metadata\.json records 40"):
        load_model(model)
