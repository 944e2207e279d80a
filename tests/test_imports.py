"""Imports of other tools' swarms (regmix_plugin.sweep.imports, issue 12 part 4): round trips
through the files each tool writes, and the errors for inputs that must not be fixed silently."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from regmix_plugin.errors import DataError
from regmix_plugin.sweep.imports import import_climb, import_olmix, import_plain
from regmix_plugin.tables import check_weights_table, read_table

DOMAINS = ["arxiv", "github", "pile_cc", "wiki"]


def swarm(n: int = 6, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(len(DOMAINS), 0.7), size=n)
    w[0, 1] = 0.0  # a zero weight: CLIMB leaves the line out
    w[0] /= w[0].sum()
    w = np.round(w, 5)
    w[:, -1] = np.round(1.0 - w[:, :-1].sum(axis=1), 5)  # rows exact to 5 decimals, like CLIMB
    metrics = {"arc_easy_acc": rng.uniform(0.3, 0.5, n), "valid_avg": rng.uniform(30, 40, n)}
    return w, metrics


def write_climb(folder: Path, w: np.ndarray, prefix_dir: str = "/data/tokens") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(w, start=1):
        lines = ["#!/bin/bash", "cat <<EOF"]
        lines += [f"{x:g} {prefix_dir}/{d}" for d, x in zip(DOMAINS, row, strict=True) if x > 0]
        lines.append("EOF")
        (folder / f"n{i}.sh").write_text("\n".join(lines) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def test_climb_round_trip(tmp_path: Path) -> None:
    w, metrics = swarm()
    write_climb(tmp_path / "mixtures", w)
    # CLIMB's lm_harness_results.csv: the run folder path, the metrics, the weights again.
    header = ["model_benchmark_path", *metrics, *DOMAINS]
    rows = [
        [f"/out/eval/n{i + 1}", *[metrics[m][i] for m in metrics], *w[i]] for i in range(len(w))
    ]
    write_csv(tmp_path / "lm_harness_results.csv", header, rows)
    got = import_climb(tmp_path / "mixtures", tmp_path / "lm_harness_results.csv", domains=DOMAINS)
    assert got.mixtures.ids == [f"n{i}" for i in range(1, len(w) + 1)]
    assert got.mixtures.columns == DOMAINS
    np.testing.assert_allclose(got.mixtures.values, w, atol=1e-12)
    assert got.results.columns == sorted(metrics)  # the weight columns are not metrics
    for m, v in metrics.items():
        np.testing.assert_allclose(got.results.column(m), v, rtol=1e-12)
    got.write(tmp_path / "mixtures.csv", tmp_path / "results.csv")
    back = read_table(tmp_path / "mixtures.csv")
    check_weights_table(back, tmp_path / "mixtures.csv", domains=DOMAINS)
    np.testing.assert_allclose(back.values, w, atol=1e-9)
    np.testing.assert_allclose(
        read_table(tmp_path / "results.csv").column("valid_avg"), metrics["valid_avg"], rtol=1e-9
    )


def test_climb_prefix_mapping_and_unknown_domain(tmp_path: Path) -> None:
    w, metrics = swarm(3)
    write_climb(tmp_path / "m", w, prefix_dir="/lustre/climb/cluster")
    write_csv(
        tmp_path / "ev.csv",
        ["run_id", "valid_avg"],
        [[f"n{i + 1}", metrics["valid_avg"][i]] for i in range(3)],
    )
    with pytest.raises(DataError, match=r"n1\.sh line 3: prefix .* not in the catalogue"):
        import_climb(tmp_path / "m", tmp_path / "ev.csv", domains=["a", "b", "c", "d"])
    mapping = {"/lustre/climb/cluster/arxiv": "a", "github": "b", "pile_cc": "c", "wiki": "d"}
    got = import_climb(
        tmp_path / "m", tmp_path / "ev.csv", domains=["a", "b", "c", "d"], prefix_domains=mapping
    )
    np.testing.assert_allclose(got.mixtures.values, w, atol=1e-12)


def test_climb_sum_and_missing_runs(tmp_path: Path) -> None:
    w, _ = swarm(3)
    w[2, 0] += 0.01  # off by 1e-2: an error, never renormalised
    write_climb(tmp_path / "m", w)
    write_csv(tmp_path / "ev.csv", ["run_id", "x"], [["n1", 1.0], ["n2", 2.0], ["n3", 3.0]])
    with pytest.raises(DataError, match=r"run 'n3' sum to 1\.01"):
        import_climb(tmp_path / "m", tmp_path / "ev.csv", domains=DOMAINS)
    write_csv(tmp_path / "ev2.csv", ["run_id", "x"], [["n1", 1.0], ["n2", 2.0], ["n9", 3.0]])
    w[2, 0] -= 0.01
    write_climb(tmp_path / "m", w)
    with pytest.raises(DataError, match=r"no results \['n3'\].*no weights \['n9'\]"):
        import_climb(tmp_path / "m", tmp_path / "ev2.csv", domains=DOMAINS)


def test_climb_rounded_rows_are_rescaled_and_listed(tmp_path: Path) -> None:
    w, _ = swarm(2)
    w[1, 0] += 3e-5  # rounding-sized: inside the import tolerance, reported
    write_climb(tmp_path / "m", w)
    write_csv(tmp_path / "ev.csv", ["run_id", "x"], [["n1", 1.0], ["n2", 2.0]])
    got = import_climb(tmp_path / "m", tmp_path / "ev.csv", domains=DOMAINS)
    assert list(got.rescaled) == ["n2"]
    assert got.rescaled["n2"] == pytest.approx(w[1].sum(), abs=1e-12)
    np.testing.assert_allclose(got.mixtures.values[1], w[1] / w[1].sum(), atol=1e-12)


def write_olmix(folder: Path, w: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
    folder.mkdir(exist_ok=True)
    ids = [f"run-{i:03d}" for i in range(len(w))]
    write_csv(
        folder / "ratios.csv",
        ["run_id", "name", *DOMAINS],
        [[r, f"swarm-{r}", *row] for r, row in zip(ids, w, strict=True)],
    )
    write_csv(
        folder / "metrics.csv",
        ["run_id", "name", *metrics],
        [[r, f"swarm-{r}", *[metrics[m][i] for m in metrics]] for i, r in enumerate(ids)],
    )


def test_olmix_round_trip(tmp_path: Path) -> None:
    w, metrics = swarm(5, seed=1)
    write_olmix(tmp_path, w, metrics)
    got = import_olmix(tmp_path / "ratios.csv", tmp_path / "metrics.csv", domains=DOMAINS)
    assert got.mixtures.ids == [f"run-{i:03d}" for i in range(5)]
    np.testing.assert_allclose(got.mixtures.values, w, atol=1e-12)
    for m, v in metrics.items():
        np.testing.assert_allclose(got.results.column(m), v, rtol=1e-12)
    got.write(tmp_path / "mixtures.csv", tmp_path / "results.csv")
    again = read_table(tmp_path / "mixtures.csv")
    np.testing.assert_allclose(again.values, w, atol=1e-9)


def test_olmix_errors(tmp_path: Path) -> None:
    w, metrics = swarm(3, seed=2)
    write_olmix(tmp_path, w, metrics)
    with pytest.raises(DataError, match=r"missing \['stack'\], unknown \['wiki'\]"):
        import_olmix(
            tmp_path / "ratios.csv",
            tmp_path / "metrics.csv",
            domains=["arxiv", "github", "pile_cc", "stack"],
        )
    text = (tmp_path / "metrics.csv").read_text().splitlines()
    (tmp_path / "metrics.csv").write_text("\n".join([*text, text[1]]) + "\n")  # run-000 twice
    with pytest.raises(DataError, match=r"run id\(s\) \['run-000'\] appear more than once"):
        import_olmix(tmp_path / "ratios.csv", tmp_path / "metrics.csv", domains=DOMAINS)


def test_plain_csv_round_trip_and_errors(tmp_path: Path) -> None:
    w, metrics = swarm(4, seed=3)
    header = ["mixture_id", *DOMAINS, "loss"]
    rows = [[f"m{i}", *w[i], metrics["valid_avg"][i]] for i in range(4)]
    write_csv(tmp_path / "swarm.csv", header, rows)
    got = import_plain(tmp_path / "swarm.csv", domains=DOMAINS)
    np.testing.assert_allclose(got.mixtures.values, w, atol=1e-12)
    np.testing.assert_allclose(got.results.column("loss"), metrics["valid_avg"], rtol=1e-12)
    with pytest.raises(DataError, match=r"no column for domain\(s\) \['books'\]"):
        import_plain(tmp_path / "swarm.csv", domains=[*DOMAINS, "books"])
    rows[1][1] = 0.9  # row m1 now sums well above 1
    write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DataError, match="run 'm1' sum to"):
        import_plain(tmp_path / "bad.csv", domains=DOMAINS)


def test_regmix_collect_import_command(tmp_path: Path) -> None:
    from regmix_plugin.cli import main

    w, metrics = swarm(4, seed=5)
    write_olmix(tmp_path, w, metrics)
    code = main(
        [
            "collect",
            str(tmp_path / "ratios.csv"),
            "--import",
            "olmix",
            "--evaluation",
            str(tmp_path / "metrics.csv"),
            "--domains",
            ",".join(DOMAINS),
            "--mixtures-out",
            str(tmp_path / "mixtures.csv"),
            "--out",
            str(tmp_path / "results.csv"),
        ]
    )
    assert code == 0
    mixtures = read_table(tmp_path / "mixtures.csv")
    check_weights_table(mixtures, tmp_path / "mixtures.csv", domains=DOMAINS)
    np.testing.assert_allclose(mixtures.values, w, atol=1e-9)
    results = read_table(tmp_path / "results.csv")
    assert results.ids == mixtures.ids
    np.testing.assert_allclose(results.column("arc_easy_acc"), metrics["arc_easy_acc"], rtol=1e-9)
    # A CLIMB import without its evaluation is refused (exit status 2 and a message, no file).
    assert (
        main(
            [
                "collect",
                str(tmp_path),
                "--import",
                "climb",
                "--domains",
                "a,b",
                "--mixtures-out",
                str(tmp_path / "m2.csv"),
                "--out",
                str(tmp_path / "r2.csv"),
            ]
        )
        != 0
    )
    assert not (tmp_path / "m2.csv").exists()
