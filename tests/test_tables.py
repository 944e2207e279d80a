"""Id-keyed CSV tables, and atomic writes that leave nothing behind on failure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from regmix_plugin.errors import DataError
from regmix_plugin.io import atomic_open
from regmix_plugin.tables import Table, read_table, write_table


def test_round_trip_keeps_floats_exactly_and_nan_as_empty(tmp_path: Path) -> None:
    values = np.array([[0.1, 1 / 3], [math.nan, 2.5e-17]])
    write_table(tmp_path / "t.csv", Table("mixture_id", ["r1", "r2"], ["a", "b"], values))
    text = (tmp_path / "t.csv").read_text()
    assert text.splitlines()[2] == "r2,,2.5e-17"
    back = read_table(tmp_path / "t.csv")
    assert back.ids == ["r1", "r2"] and back.columns == ["a", "b"]
    np.testing.assert_array_equal(back.values, values)  # NaN compares equal here
    assert back.select(["b", "a"])[0].tolist() == [1 / 3, 0.1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,a\n1,0.5\n1,0.2\n", "duplicate id '1'"),
        ("id,a\n1,abc\n", "column 'a' holds 'abc'"),
        ("id,a,a\n1,2,3\n", "duplicate column"),
        ("id,a\n1,2,3\n", "3 cells, the header has 2"),
        ("", "empty file"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_table(tmp_path / "t.csv")


def test_atomic_open_leaves_old_file_and_no_temp_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("partial")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
