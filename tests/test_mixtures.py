"""The RegMix mixture design: Dirichlet draws, caps, rounding, ids, tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from regmix_plugin import cli, stages
from regmix_plugin.config import from_dict
from regmix_plugin.domains import load_catalogue
from regmix_plugin.errors import ConfigError, DataError, InfeasibleError
from regmix_plugin.layout import RunLayout
from regmix_plugin.mixtures import (
    SampleConfig,
    _round_to_grid,
    load_weights_yaml,
    mixture_id,
    read_mixtures,
    sample_mixtures,
)
from regmix_plugin.simplex import dirichlet_mixed_strengths
from regmix_plugin.study import StudyConfig, load_study

REPO = Path(__file__).resolve().parents[1]
PAPER_MIXTURES = REPO / "benchmarks" / "data" / "regmix_paper" / "train_mixture_1m.csv"


def planning_study(tmp_path: Path, tokens: dict[str, int], budget: int, **sections) -> StudyConfig:
    """A study over planning domains (num_tokens, no files)."""
    domains = {
        "num_target_tokens": budget,
        "entries": [{"name": n, "num_tokens": t} for n, t in tokens.items()],
    }
    domains.update(sections.pop("domains_extra", {}))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"run_dir": "run", "domains": domains, **sections}))
    return load_study(path)


def sample(tmp_path, tokens, budget, domains_extra=None, **sample_kw):
    study = planning_study(tmp_path, tokens, budget, domains_extra=domains_extra or {})
    return sample_mixtures(load_catalogue(study.domains), SampleConfig(**sample_kw))


TOKENS = {"web": 6000, "code": 2500, "books": 1000, "math": 500}


def test_mixture_id_is_a_stable_hash_of_the_weights():
    a = {"web": 0.3, "code": 0.7}
    assert len(mixture_id(a)) == 12 and int(mixture_id(a), 16) >= 0
    assert mixture_id(a) == mixture_id({"code": 0.7, "web": 0.3})
    assert mixture_id(a) == mixture_id({"web": 0.1 + 0.2, "code": 0.7, "books": 0.0})
    assert mixture_id(a) != mixture_id({"web": 0.31, "code": 0.69})
    assert mixture_id(a) != mixture_id({"web": 0.7, "code": 0.3})
    with pytest.raises(DataError):
        mixture_id({"web": -0.1, "code": 1.1})


def test_dirichlet_block_has_the_right_moments():
    rng = np.random.default_rng(0)
    p = np.array([0.6, 0.25, 0.1, 0.05])
    for s in (0.05, 1.0, 50.0):
        w = dirichlet_mixed_strengths(rng, p, np.array([s]), 40_000)
        assert np.all(np.isfinite(w)) and np.allclose(w.sum(axis=1), 1.0)
        var = p * (1 - p) / (s + 1)
        np.testing.assert_allclose(w.mean(axis=0), p, atol=5 * np.sqrt(var.max() / 40_000))
        np.testing.assert_allclose(w.var(axis=0), var, rtol=0.1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).filter(lambda v: sum(v) > 0),
    st.sampled_from([1, 2, 10, 1000, 5000]),
)
def test_round_to_grid_sums_exactly_and_moves_each_weight_under_one_step(raw, num_units):
    w = np.array(raw) / sum(raw)
    units = _round_to_grid(w[None, :], num_units)[0]
    assert units.sum() == num_units
    assert np.all(np.abs(units - w * num_units) < 1.0 + 1e-9)
    assert np.all(units[w == 0] == 0)


def test_sampled_mixtures_respect_every_rule(tmp_path):
    res = sample(
        tmp_path,
        TOKENS,
        20_000,
        domains_extra={"max_epochs": 4},
        num_mixtures=64,
        seed=1,
        min_weight=0.01,
        grid=0.005,
        temperature=0.5,
    )
    w = res.mixtures.weights
    assert w.shape == (64, 4) and res.mixtures.names == list(TOKENS)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(w * 200, np.round(w * 200), atol=1e-9)  # on the grid
    assert not np.any((w > 0) & (w < 0.01 - 0.005))  # small weights dropped before rounding
    caps = 4 * np.array(list(TOKENS.values())) / 20_000
    assert np.all(w <= caps + 1e-12)
    assert len({tuple(r) for r in w}) == 64
    assert res.mixtures.ids == [mixture_id(r) for r in res.mixtures.rows()]
    s = res.summary
    assert s["num_draws"] == 64 * 100
    assert s["num_rejected"] > 0  # math's cap (0.1) binds
    assert s["domains"]["math"]["draws_rejected_by_cap"] > 0
    assert s["domains"]["web"]["draws_rejected_by_cap"] == 0  # cap 1.2: never binds
    assert s["num_rejected"] <= sum(d["draws_rejected_by_cap"] for d in s["domains"].values())
    assert s["num_distinct_accepted"] + s["num_duplicates"] + s["num_rejected"] == s["num_draws"]
    assert s["domains"]["math"]["max"] == pytest.approx(w[:, 3].max())
    nz = (w > 0).sum(axis=1)
    assert s["nonzero_domains_per_mixture"]["mean"] == pytest.approx(nz.mean())


def test_temperature_and_strength_steer_the_mixtures(tmp_path):
    tokens = {"a": 7000, "b": 2000, "c": 1000}
    kw = {"num_mixtures": 300, "min_strength": 2000.0, "max_strength": 2000.0, "num_strengths": 1}
    near_prior = sample(tmp_path, tokens, 10_000, temperature=1.0, **kw).mixtures.weights
    np.testing.assert_allclose(near_prior.mean(axis=0), [0.7, 0.2, 0.1], atol=0.01)
    uniform = sample(tmp_path, tokens, 10_000, temperature=0.0, **kw).mixtures.weights
    np.testing.assert_allclose(uniform.mean(axis=0), [1 / 3] * 3, atol=0.01)
    sparse = sample(
        tmp_path, tokens, 10_000, num_mixtures=100, min_strength=0.05, max_strength=0.05
    ).mixtures.weights
    assert (sparse > 0).sum(axis=1).mean() < (near_prior > 0).sum(axis=1).mean()


def test_the_pile_with_the_papers_settings(tmp_path):
    """512 mixtures with the paper's settings: all under 15 x the token share; reproducible."""
    study = load_study(REPO / "configs" / "pile.yaml")
    cat = stages.build_catalogue(study)
    one, two = RunLayout(tmp_path / "one"), RunLayout(tmp_path / "two")
    stages.sample(study, one, cat)
    stages.sample(study, two, cat)
    first = one.mixtures
    assert first.read_bytes() == two.mixtures.read_bytes()
    assert (tmp_path / "one" / "mixtures_summary.json").read_bytes() == (
        tmp_path / "two" / "mixtures_summary.json"
    ).read_bytes()
    mix = read_mixtures(first)
    assert len(mix) == 512 and mix.names == cat.names
    shares = cat.token_shares()
    assert np.all(mix.weights <= 15 * shares + 1e-12)
    # The cap binds: small domains get close to it but never above.
    assert np.any(mix.weights[:, cat.names.index("enron_emails")] > 10 * shares[9])
    header = first.read_text().splitlines()[0].split(",")
    assert header == ["mixture_id", *cat.names]
    paper = read_mixtures(PAPER_MIXTURES, tolerance=0.005)
    assert paper.names == [f"train_the_pile_{n}" for n in cat.names]


def test_seeds_change_the_draws(tmp_path):
    a = sample(tmp_path, TOKENS, 10_000, num_mixtures=16, seed=1).mixtures
    b = sample(tmp_path, TOKENS, 10_000, num_mixtures=16, seed=2).mixtures
    c = sample(tmp_path, TOKENS, 10_000, num_mixtures=16, seed=1).mixtures
    assert a.ids == c.ids and np.array_equal(a.weights, c.weights)
    assert a.ids != b.ids


def test_caps_that_sum_below_one_are_infeasible(tmp_path):
    with pytest.raises(InfeasibleError, match=r"sum to 0\.\d+ < 1") as info:
        sample(tmp_path, TOKENS, 10**6, domains_extra={"max_epochs": 10}, num_mixtures=4)
    assert "max_epochs" in str(info.value) and "num_target_tokens" in str(info.value)


def test_a_budget_under_which_every_draw_fails(tmp_path):
    # Caps of exactly 0.5 each: only the draw (0.5, 0.5) passes, and sparse draws never land there.
    with pytest.raises(InfeasibleError, match="all 20 draws broke a weight cap") as info:
        sample(
            tmp_path,
            {"a": 500, "b": 500},
            1000,
            domains_extra={"max_epochs": 1},
            num_mixtures=2,
            draw_multiplier=10,
            min_strength=0.1,
            max_strength=0.1,
            num_strengths=1,
        )
    assert "a 2" in str(info.value) or "b " in str(info.value)


def test_fewer_distinct_mixtures_than_asked(tmp_path):
    # A grid of 0.5 over two domains allows three mixtures only.
    with pytest.raises(InfeasibleError, match="only 3 distinct mixtures") as info:
        sample(tmp_path, {"a": 1, "b": 1}, 10, num_mixtures=5, grid=0.5, min_weight=0.0)
    assert "draw_multiplier" in str(info.value)


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({}, "required key"),
        ({"num_mixtures": 0}, "num_mixtures"),
        ({"num_mixtures": 4, "grid": 0.3}, "1/grid"),
        ({"num_mixtures": 4, "num_strengths": 1}, "num_strengths is 1"),
        ({"num_mixtures": 4, "min_strength": 5, "max_strength": 1}, "min_strength"),
        ({"num_mixtures": 4, "temperature": -1}, "temperature"),
        ({"num_mixtures": 4, "min_weight": 1.5}, "min_weight"),
        ({"num_mixtures": 4, "draws": 3}, "unknown key"),
    ],
)
def test_bad_sample_settings(settings_, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(SampleConfig, settings_, "sample")


def test_min_weight_too_large_for_the_domain_count(tmp_path):
    with pytest.raises(ConfigError, match="min_weight"):
        sample(tmp_path, TOKENS, 10_000, num_mixtures=2, min_weight=0.3, grid=0.1)


def test_read_mixtures_checks_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("mixture_id,a,b\nx,0.5,0.5\ny,0.25,0.75\n")
    mix = read_mixtures(path)
    assert mix.ids == ["x", "y"] and mix.row("y") == {"a": 0.25, "b": 0.75}
    with pytest.raises(DataError, match="not in the table"):
        mix.row("z")
    path.write_text("mixture_id,a,b\nx,0.5,0.4\n")
    with pytest.raises(DataError, match=r"sum to 0\.9,"):
        read_mixtures(path)
    path.write_text("mixture_id,a,b\nx,1.5,-0.5\n")
    with pytest.raises(DataError, match="finite number >= 0"):
        read_mixtures(path)
    with pytest.raises(DataError, match="sum to"):
        read_mixtures(PAPER_MIXTURES)  # rounded to 3 decimals: needs a tolerance


def test_load_weights_yaml(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_text(yaml.safe_dump({"weights": {"a": 0.25, "b": 0.75}, "predicted": {"x": 1}}))
    assert load_weights_yaml(path) == {"a": 0.25, "b": 0.75}
    path.write_text(yaml.safe_dump({"a": 0.25, "b": 0.75}))
    with pytest.raises(DataError, match="'weights:' mapping"):
        load_weights_yaml(path)
    path.write_text(yaml.safe_dump({"weights": {"a": "lots"}}))
    with pytest.raises(DataError, match="not a number"):
        load_weights_yaml(path)
    with pytest.raises(DataError, match="does not exist"):
        load_weights_yaml(tmp_path / "missing.yaml")


def test_cli_sample_writes_the_table_and_summary(tmp_path, capsys):
    planning_study(tmp_path, TOKENS, 10_000, sample={"num_mixtures": 8, "seed": 3})
    config = tmp_path / "study.yaml"
    assert cli.main(["sample", str(config)]) == 0
    out = capsys.readouterr().out
    assert "8 mixtures from 800 draws" in out
    mix = read_mixtures(tmp_path / "run" / "mixtures.csv")
    summary = json.loads((tmp_path / "run" / "mixtures_summary.json").read_text())
    assert len(mix) == 8 and summary["num_mixtures"] == 8
    assert summary["settings"]["seed"] == 3
    assert cli.main(["sample", str(config), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["num_mixtures"] == 8


def test_cli_sample_infeasible_writes_nothing(tmp_path, capsys):
    planning_study(
        tmp_path, TOKENS, 10**6, domains_extra={"max_epochs": 1}, sample={"num_mixtures": 8}
    )
    assert cli.main(["sample", str(tmp_path / "study.yaml")]) == 2
    err = capsys.readouterr().err
    assert "< 1" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# -- replicates: anchor mixtures trained with several proxy seeds --------------------------------


def test_replicates_append_rows_with_derived_ids_and_keep_the_design(tmp_path):
    plain = sample(tmp_path, TOKENS, 20000, num_mixtures=12, seed=3)
    reps = sample(tmp_path, TOKENS, 20000, num_mixtures=12, seed=3, num_anchor_mixtures=3,
                  num_seeds=3)  # fmt: skip
    m, p = reps.mixtures, plain.mixtures
    # The first 12 rows are the plain design, bit for bit; then 3 anchors x 2 extra seeds.
    assert m.ids[:12] == p.ids and np.array_equal(m.weights[:12], p.weights)
    assert len(m) == 12 + 3 * 2 and len(set(m.ids)) == len(m.ids)
    expected_ids = [f"{p.ids[i]}.s{k}" for k in (1, 2) for i in range(3)]
    assert m.ids[12:] == expected_ids
    for i, _rid in enumerate(expected_ids):
        assert np.array_equal(m.weights[12 + i], p.weights[i % 3])
    r = reps.replicates
    assert r is not None and plain.replicates is not None and not plain.replicates.groups
    assert r.seed_offsets == {rid: int(rid[-1]) for rid in expected_ids}
    assert r.groups == [[p.ids[i], f"{p.ids[i]}.s1", f"{p.ids[i]}.s2"] for i in range(3)]
    assert r.seed_offset(p.ids[0]) == 0 and r.group_of(p.ids[5]) == [p.ids[5]]
    assert reps.summary["num_mixtures"] == 12 and reps.summary["replicates"]["num_runs"] == 18
    from regmix_plugin.mixtures import format_summary

    assert "replicates: the first 3 mixtures x 3 proxy seeds, 18 runs" in format_summary(
        reps.summary
    )


def test_sample_stage_writes_the_seeds_file_and_removes_a_stale_one(tmp_path):
    study = planning_study(
        tmp_path,
        TOKENS,
        20000,
        sample={"num_mixtures": 6, "num_anchor_mixtures": 2, "num_seeds": 2},
    )
    layout = study.layout
    stages.sample(study, layout, load_catalogue(study.domains))
    ids = read_mixtures(layout.mixtures).ids
    data = json.loads(layout.mixture_seeds.read_text())
    assert layout.mixture_seeds.name == "mixtures.csv.seeds.json"
    assert data == {
        "seed_offsets": {f"{ids[0]}.s1": 1, f"{ids[1]}.s1": 1},
        "groups": [[ids[0], f"{ids[0]}.s1"], [ids[1], f"{ids[1]}.s1"]],
    }
    assert stages.replicates(layout).groups == data["groups"]
    plain = planning_study(tmp_path, TOKENS, 20000, sample={"num_mixtures": 6})
    stages.sample(plain, plain.layout, load_catalogue(plain.domains))
    assert not plain.layout.mixture_seeds.exists()  # the default design has no replicates
    assert stages.replicates(plain.layout).seed_offsets == {}


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"num_mixtures": 4, "num_anchor_mixtures": 5, "num_seeds": 2}, "num_anchor_mixtures"),
        ({"num_mixtures": 4, "num_anchor_mixtures": 2}, "repeat nothing"),
        ({"num_mixtures": 4, "num_seeds": 3}, "repeat nothing"),
        ({"num_mixtures": 4, "num_seeds": 0}, "num_seeds must be >= 1"),
    ],
)
def test_bad_replicate_settings(settings_, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(SampleConfig, settings_, "sample")


def test_a_damaged_seeds_file_is_a_data_error_naming_it(tmp_path):
    from regmix_plugin.mixtures import read_replicates

    path = tmp_path / "mixtures.csv.seeds.json"
    for text, needle in [
        ("{", "not valid JSON"),
        ('{"seed_offsets": {"a.s1": -1}, "groups": []}', "integer >= 0"),
        ('{"seed_offsets": {}, "groups": [["a"]]}', "two or more"),
        ('{"seed_offsets": {"z.s1": 1}, "groups": [["a", "a.s1"]]}', "not in the mixtures"),
    ]:
        path.write_text(text)
        with pytest.raises(DataError, match=needle) as err:
            read_replicates(path, ids=["a", "a.s1"])
        assert str(path) in str(err.value)


def test_replicate_runs_get_their_seed_in_the_sweep(tmp_path):
    """Each run's ``{seed}`` is proxy.seed plus its offset; the sweep keeps a copy of the seeds
    beside its mixtures table, where ``regmix train-proxy --mixtures`` reads them."""
    from regmix_plugin.sweep.runner import prepare_runs

    study = planning_study(
        tmp_path, TOKENS, 20000,
        sample={"num_mixtures": 4, "num_anchor_mixtures": 1, "num_seeds": 3},
        proxy={"vocab_size": 16, "seed": 100},
        sweep={"command": "{python} train.py --out {run_dir} --seed {seed}"},
    )  # fmt: skip
    catalogue = load_catalogue(study.domains)
    stages.sample(study, study.layout, catalogue)
    plan = stages.plan_sweep(study, study.layout, catalogue)
    first = read_mixtures(study.layout.mixtures).ids[0]
    seeds = {mid: spec.seed for mid, spec in plan.runs.items()}
    assert seeds[first] == 100 and seeds[f"{first}.s1"] == 101 and seeds[f"{first}.s2"] == 102
    assert plan.runs[f"{first}.s2"].argv[-2:] == ["--seed", "102"]
    assert sorted(seeds.values()) == [100] * 4 + [101, 102]
    prepare_runs(plan)
    copy = json.loads((study.layout.sweep_dir / "mixtures.csv.seeds.json").read_text())
    assert copy == json.loads(study.layout.mixture_seeds.read_text())


def test_a_custom_command_without_seed_refuses_replicates(tmp_path):
    study = planning_study(
        tmp_path, TOKENS, 20000,
        sample={"num_mixtures": 4, "num_anchor_mixtures": 1, "num_seeds": 2},
        proxy={"vocab_size": 16},
        sweep={"command": "{python} train.py --out {run_dir}"},
    )  # fmt: skip
    catalogue = load_catalogue(study.domains)
    stages.sample(study, study.layout, catalogue)
    with pytest.raises(ConfigError, match=r"passes no \{seed\}"):
        stages.plan_sweep(study, study.layout, catalogue)


def test_train_proxy_takes_the_replicate_seed_beside_the_table_and_seed_overrides(tmp_path, capsys):
    """``regmix train-proxy --dry-run`` shows the proxy seed it would train with."""
    from regmix_plugin.corpus import write_indexed_dataset

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_indexed_dataset(tmp_path / name, [rng.integers(0, 16, 40) for _ in range(20)])
    study = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 1000,
            "entries": [{"name": n, "prefixes": [n]} for n in "ab"],
        },
        "sample": {"num_mixtures": 3, "num_anchor_mixtures": 1, "num_seeds": 3, "grid": 0.01},
        "proxy": {"vocab_size": 16, "seed": 7},
    }
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    assert cli.main(["sample", str(config)]) == 0
    first = read_mixtures(tmp_path / "run" / "mixtures.csv").ids[0]
    capsys.readouterr()

    def seed_of(*args: str) -> int:
        assert cli.main(["train-proxy", str(config), *args, "--dry-run"]) == 0
        return int(json.loads(capsys.readouterr().out)["proxy"]["seed"])

    assert seed_of("--mixture", first) == 7
    assert seed_of("--mixture", f"{first}.s2") == 9
    assert seed_of("--mixture", f"{first}.s2", "--seed", "40") == 40
