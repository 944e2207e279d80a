"""The domain catalogue over real .bin/.idx files written by megatron-core."""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from regmix_plugin import cli
from regmix_plugin.domains import format_catalogue, load_catalogue
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.indexed import read_index_counts
from regmix_plugin.study import StudyConfig, load_study

REPO = Path(__file__).resolve().parents[1]
PAPER_SHARES = {
    "arxiv": 0.113285273,
    "freelaw": 0.079608651,
    "nih_exporter": 0.003913491,
    "pubmed_central": 0.185375901,
    "wikipedia_en": 0.051081359,
    "dm_mathematics": 0.015962925,
    "github": 0.101750772,
    "philpapers": 0.003707518,
    "stackexchange": 0.066529351,
    "enron_emails": 0.001750772,
    "gutenberg_pg_19": 0.027085479,
    "pile_cc": 0.236869207,
    "ubuntu_irc": 0.01184346,
    "europarl": 0.007929969,
    "hackernews": 0.008032956,
    "pubmed_abstracts": 0.038825953,
    "uspto_backgrounds": 0.046446962,
}


def write_study(tmp_path: Path, domains: dict, **sections) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"run_dir": "run", "domains": domains, **sections}))
    return path


def study_of(tmp_path: Path, domains: dict, **sections) -> StudyConfig:
    return load_study(write_study(tmp_path, domains, **sections))


@pytest.fixture
def corpus(make_corpus):
    """Four prefixes: web_a, web_b (one domain via a glob), code, books."""
    return make_corpus({"web_a": 40, "web_b": 25, "code": 30, "books": 12}, mean_len=32)


def three_domains(**extra) -> dict:
    return {
        "num_target_tokens": 20_000,
        "entries": [
            {"name": "web", "prefixes": ["data/web_*_text_document"]},
            {"name": "code", "prefixes": ["data/code_text_document"]},
            {"name": "books", "prefixes": ["data/books_text_document"], "max_epochs": 2},
        ],
        **extra,
    }


def test_counts_match_megatrons_own_reader(corpus):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for prefix in corpus.values():
        counts = read_index_counts(prefix)
        ds = IndexedDataset(prefix)
        assert counts.num_tokens == int(ds.sequence_lengths.sum())
        assert counts.num_documents == len(ds.document_indices) - 1
        assert counts.num_sequences == len(ds)
        assert counts.token_bytes * counts.num_tokens == os.path.getsize(f"{prefix}.bin")


def test_catalogue_resolves_globs_relative_to_the_config(tmp_path, corpus):
    cat = load_catalogue(study_of(tmp_path, three_domains(max_epochs=4)).domains)
    assert cat.names == ["web", "code", "books"]
    web = cat.domain("web")
    assert web.prefixes == sorted([corpus["web_a"], corpus["web_b"]])
    assert all(os.path.isabs(p) for p in web.prefixes)
    assert web.prefix_tokens == [read_index_counts(p).num_tokens for p in web.prefixes]
    assert web.num_tokens == sum(web.prefix_tokens)
    assert web.num_documents == 65
    assert cat.domain("books").num_documents == 12
    tokens = cat.token_counts()
    np.testing.assert_allclose(cat.token_shares(), tokens / tokens.sum())
    np.testing.assert_allclose(cat.prior(), cat.token_shares())
    assert [d.max_epochs for d in cat.domains] == [4, 4, 2]


def test_max_weights_are_epochs_times_tokens_over_budget(tmp_path, corpus):
    cat = load_catalogue(study_of(tmp_path, three_domains()).domains)
    caps = cat.max_weights()
    assert math.isinf(caps[0]) and math.isinf(caps[1])
    assert caps[2] == pytest.approx(2 * cat.domain("books").num_tokens / 20_000)
    assert cat.max_weights(1000)[2] == pytest.approx(2 * cat.domain("books").num_tokens / 1000)
    with pytest.raises(ConfigError):
        cat.max_weights(0)


def test_blend_splits_a_domain_over_its_prefixes_by_tokens(tmp_path, corpus):
    cat = load_catalogue(study_of(tmp_path, three_domains()).domains)
    blend = cat.blend({"web": 0.6, "code": 0.4, "books": 0.0})
    prefixes = [p for p, _ in blend]
    assert corpus["books"] not in prefixes  # weight 0 is left out
    web = cat.domain("web")
    assert prefixes == [*web.prefixes, corpus["code"]]
    for (_, w), tokens in zip(blend[:2], web.prefix_tokens, strict=True):
        assert w == pytest.approx(0.6 * tokens / web.num_tokens)
    assert sum(w for _, w in blend) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"web": 0.5, "code": 0.5, "books": 0.0, "wiki": 0.0}, "unknown domain"),
        ({"web": 0.5, "code": 0.5}, "no weight for domain"),
        ({"web": 0.5, "code": 0.4, "books": 0.0}, "sum to"),
        ({"web": 1.5, "code": -0.5, "books": 0.0}, "finite and >= 0"),
        ({"web": float("nan"), "code": 0.5, "books": 0.5}, "finite"),
    ],
)
def test_blend_rejects_bad_weights(tmp_path, corpus, weights, message):
    cat = load_catalogue(study_of(tmp_path, three_domains()).domains)
    with pytest.raises(DataError, match=message):
        cat.blend(weights)


def test_explicit_prior(tmp_path, corpus):
    prior = {"web": 0.2, "code": 0.3, "books": 0.5}
    cat = load_catalogue(study_of(tmp_path, three_domains(prior=prior)).domains)
    np.testing.assert_allclose(cat.prior(), [0.2, 0.3, 0.5])
    assert not np.allclose(cat.prior(), cat.token_shares())


@pytest.mark.parametrize(
    ("prior", "message"),
    [
        ({"web": 0.5, "code": 0.5}, "no weight for domain"),
        ({"web": 0.5, "code": 0.3, "books": 0.1, "wiki": 0.1}, "unknown domain"),
        ({"web": 0.5, "code": 0.5, "books": 0.0}, "> 0"),
        ({"web": 0.5, "code": 0.3, "books": 0.1}, "sum to"),
        ("uniform", "token_shares"),
    ],
)
def test_bad_prior_is_a_config_error(tmp_path, corpus, prior, message):
    with pytest.raises(ConfigError, match=message):
        load_catalogue(study_of(tmp_path, three_domains(prior=prior)).domains)


def test_planning_catalogue_of_the_pile_needs_no_files():
    cat = load_catalogue(load_study(REPO / "configs" / "pile.yaml").domains)
    assert cat.names == list(PAPER_SHARES)
    np.testing.assert_allclose(cat.token_shares(), list(PAPER_SHARES.values()), rtol=1e-8)
    # The paper's cap: 15 x the token share.
    np.testing.assert_allclose(
        cat.max_weights(), 15 * np.array(list(PAPER_SHARES.values())), rtol=1e-8
    )
    assert all(d.is_planning and d.num_documents is None for d in cat.domains)
    with pytest.raises(ConfigError, match="no prefixes"):
        cat.blend(dict.fromkeys(cat.names, 1 / 17))


@pytest.mark.parametrize(
    ("entries", "error", "message"),
    [
        (
            [{"name": "a", "prefixes": ["data/code_text_document"]}] * 2,
            ConfigError,
            "duplicate domain name",
        ),
        ([{"name": "a b", "num_tokens": 10}], ConfigError, "letters, digits"),
        ([{"name": "a"}], ConfigError, "neither prefixes nor num_tokens"),
        (
            [{"name": "a", "prefixes": ["data/code_text_document"], "num_tokens": 5}],
            ConfigError,
            "both prefixes and num_tokens",
        ),
        (
            [{"name": "a", "prefixes": ["data/code_text_document.bin"]}],
            ConfigError,
            "without the extension",
        ),
        ([{"name": "a", "prefixes": ["data/nothing_*"]}], DataError, "matches no .idx"),
        ([{"name": "a", "prefixes": ["data/missing_text_document"]}], DataError, "no index file"),
        (
            [
                {"name": "a", "prefixes": ["data/code_text_document"]},
                {"name": "b", "prefixes": ["data/*_text_document"]},
            ],
            ConfigError,
            "belongs to both",
        ),
        ([{"name": "a", "num_tokens": 10, "max_epochs": 0}], ConfigError, "max_epochs"),
        ([{"name": "a", "num_tokens": 10, "tokens": 3}], ConfigError, "unknown key"),
    ],
)
def test_bad_domain_entries(tmp_path, corpus, entries, error, message):
    with pytest.raises(error, match=message):
        load_catalogue(study_of(tmp_path, {"num_target_tokens": 100, "entries": entries}).domains)


def test_missing_section_and_budget(tmp_path, corpus):
    path = tmp_path / "nodomains.yaml"
    path.write_text("run_dir: x\n")
    with pytest.raises(ConfigError, match="no `domains`"):
        load_study(path).require("domains")
    with pytest.raises(ConfigError, match="num_target_tokens"):
        load_catalogue(study_of(tmp_path, {"entries": [{"name": "a", "num_tokens": 5}]}).domains)


def _corrupt(prefix: str, how: str) -> None:
    idx = Path(f"{prefix}.idx")
    data = bytearray(idx.read_bytes())
    if how == "magic":
        data[:4] = b"XXXX"
    elif how == "version":
        data[9:17] = struct.pack("<Q", 7)
    elif how == "dtype":
        data[17] = 99
    elif how == "truncated":
        data = data[:-5]
    elif how == "count":
        data[18:26] = struct.pack("<Q", struct.unpack("<Q", data[18:26])[0] + 1)
    elif how == "bin":
        with open(f"{prefix}.bin", "ab") as f:
            f.write(b"\0\0\0\0")
        return
    idx.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("magic", "not a Megatron index"),
        ("version", "index version 7"),
        ("dtype", "dtype code 99"),
        ("truncated", "truncated or corrupt"),
        ("count", "truncated or corrupt"),
        ("bin", "does not match"),
    ],
)
def test_corrupt_index_is_a_clear_error(tmp_path, corpus, how, message):
    _corrupt(corpus["code"], how)
    with pytest.raises(DataError, match=message) as info:
        load_catalogue(study_of(tmp_path, three_domains()).domains)
    assert "code_text_document" in str(info.value)


def test_format_catalogue_lists_every_domain(tmp_path, corpus):
    cat = load_catalogue(study_of(tmp_path, three_domains()).domains)
    text = format_catalogue(cat)
    for d in cat.domains:
        line = next(ln for ln in text.splitlines() if ln.startswith(d.name + " "))
        assert f"{d.num_tokens:,}" in line and f"{d.num_documents:,}" in line
    assert f"{int(cat.token_counts().sum()):,}" in text


def test_format_catalogue_warns_when_caps_leave_no_mixture(tmp_path, corpus):
    cat = load_catalogue(
        study_of(tmp_path, three_domains(max_epochs=1, num_target_tokens=10**9)).domains
    )
    assert "no mixture respects them" in format_catalogue(cat)


def test_cli_domains_prints_the_table_and_errors_cleanly(tmp_path, corpus, capsys):
    path = write_study(tmp_path, three_domains())
    assert cli.main(["domains", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:5] == ["domain", "prefixes", "documents", "tokens", "share"]
    assert "2: data/web_*_text_document" in out
    bad = write_study(
        tmp_path, {"num_target_tokens": 5, "entries": [{"name": "x", "prefixes": ["nope"]}]}
    )
    assert cli.main(["domains", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no index file" in err and "Traceback" not in err
