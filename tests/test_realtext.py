"""The real-text corpus builder on a small subset of Debian packages (the ``small`` preset).

The packages come from ``.ci/system-packages.sh``. Without them, and without root to install
them, the tests that read packages skip (CI sets ``REGMIX_REQUIRE_ALL=1``: they fail instead).
The expected values are computed here from the packages' own files (the fortune files' strfile
``.dat`` headers, the dictionary's index, the KJV's published chapter and verse counts) or by
hand, never by the builder's code.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from _requirements import require_or_skip

from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.realtext import debian
from regmix_plugin.realtext.build import (
    EOD_TOKEN,
    MANIFEST,
    TOKENIZER,
    DomainSpec,
    RealTextConfig,
    build_corpus,
    read_domain,
    small_config,
    split_documents,
)
from regmix_plugin.realtext.extract import (
    extract_bible,
    extract_dictd,
    extract_fortune,
    roff_to_text,
)

SMALL = small_config()


def _require_packages(packages: list[str]) -> None:
    """Skip (or fail under REGMIX_REQUIRE_ALL) unless the packages are or can be installed."""
    require_or_skip(
        debian.package_version("dpkg") is not None, "not a Debian system (no dpkg-query)"
    )
    missing = debian.missing_packages(packages)
    require_or_skip(
        not missing or debian.is_root(),
        f"the Debian packages {missing} are missing and this is not root to install them: "
        f"run as root `bash .ci/system-packages.sh`",
    )
    if missing:
        debian.install_packages(missing)


def _require_tokenizers() -> None:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        require_or_skip(
            False, "Hugging Face tokenizers is missing: pip install 'regmix-plugin[realtext]'"
        )


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_packages(SMALL.packages)
    _require_tokenizers()
    out = tmp_path_factory.mktemp("realtext") / "a"
    build_corpus(out, SMALL)
    return out


# --- document splitting (no packages needed) ----------------------------------------------------


def test_roff_to_text_resolves_macros_escapes_and_fill() -> None:
    page = "\n".join(
        [
            '.\\" a comment line',
            ".TH OPEN 2 2023-02-05",
            ".SH NAME",
            "open \\- open a file",
            ".SH DESCRIPTION",
            "The",
            ".BR open ()",
            "call opens",
            ".I pathname",
            "\\(em see",
            ".BR close (2).",
            ".PP",
            ".nf",
            "int fd;",
            "  fd = open(p);",
            ".fi",
        ]
    )
    assert roff_to_text(page) == (
        "OPEN(2)\n\nNAME\n\nopen - open a file\n\nDESCRIPTION\n\n"
        "The open() call opens pathname \u2014 see close(2).\n\n"
        "int fd;\n  fd = open(p);\n"
    )


def test_fortune_file_splits_on_percent_lines(tmp_path: Path) -> None:
    f = tmp_path / "cookies"
    f.write_text("first\nline two\n%\nsecond\n%\n100% sure\n")
    assert extract_fortune([str(f)]) == ["first\nline two\n", "second\n", "100% sure\n"]


def _spec(name: str = "d", max_bytes: int = 10_000) -> DomainSpec:
    return DomainSpec(
        name=name, description="t", packages=("x",), format="text", pattern=".", max_bytes=max_bytes
    )


def test_split_documents_filters_caps_and_holds_out_disjoint_documents() -> None:
    cfg = RealTextConfig(domains=(_spec("a"), _spec("b")), valid_fraction=0.1, min_document_bytes=5)
    docs = [f"document number {i:03d} " + "x" * (i % 7) for i in range(200)] + ["tiny", " "]
    spec = _spec(max_bytes=2_000)
    train, valid = split_documents(docs, spec, cfg)
    kept = train + valid
    assert "tiny" not in kept and " " not in kept  # under min_document_bytes
    assert len(set(kept)) == len(kept) and set(kept) <= set(docs)
    total = sum(len(d.encode()) for d in kept)
    assert total <= 2_000 < total + len(docs[0].encode()) + 6  # filled up to the cap
    assert len(valid) == round(0.1 * len(kept)) and not set(train) & set(valid)
    assert kept != [d for d in docs if d in kept]  # shuffled, not file order
    # the same seed and name give the same split; another name shuffles differently
    assert split_documents(docs, spec, cfg) == (train, valid)
    assert split_documents(docs, _spec("other", 2_000), cfg) != (train, valid)


def test_domain_spec_rejects_unknown_format_and_bad_name() -> None:
    with pytest.raises(ConfigError, match="format 'pdf' is unknown"):
        DomainSpec(name="a", description="", packages=("p",), format="pdf", pattern=".")
    with pytest.raises(ConfigError, match="letters, digits"):
        DomainSpec(name="a-b", description="", packages=("p",), format="text", pattern=".")


def test_missing_package_without_install_names_the_command() -> None:
    require_or_skip(debian.package_version("dpkg") is not None, "not a Debian system")
    with pytest.raises(DataError, match="apt-get install -y --no-install-recommends regmix-none"):
        debian.install_packages(["regmix-none"], install=False)


# --- extraction from real packages --------------------------------------------------------------


def test_fortunes_match_the_strfile_headers() -> None:
    _require_packages(["fortunes-it"])
    files = sorted(
        str(p)
        for p in Path("/usr/share/games/fortunes/it").iterdir()
        if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8")
    )
    assert files
    for f in files:
        # strfile's .dat header: version, number of strings, ... (big-endian uint32)
        num_strings = struct.unpack(">2I", Path(f + ".dat").read_bytes()[:8])[1]
        assert len(extract_fortune([f])) == num_strings, f


def test_dictionary_gives_one_entry_per_headword() -> None:
    _require_packages(["dict-devil"])
    index = Path("/usr/share/dictd/devil.index").read_text(encoding="utf-8").splitlines()
    headwords = {line.split("\t")[0] for line in index if not line.startswith("00database")}
    entries = extract_dictd(["/usr/share/dictd/devil.dict.dz"])
    assert len(entries) == len(headwords) > 900
    first_words = {e.split(",")[0].strip().lower() for e in entries}
    assert len(first_words & headwords) > 0.95 * len(headwords)
    with gzip.open("/usr/share/dictd/devil.dict.dz") as f:
        raw = f.read().decode()
    assert all(e in raw for e in entries[:50])


def test_bible_has_the_kjv_chapters_and_verses() -> None:
    _require_packages(["bible-kjv-text", "bible-kjv"])
    chapters = extract_bible(["/usr/lib/bible.data"])
    assert len(chapters) == 1189  # the KJV: 66 books, 1189 chapters, 31102 verses
    assert sum(len(c.strip().split("\n")) - 1 for c in chapters) == 31102
    assert chapters[0].startswith("Ge1\n1 In the beginning God created the heaven and the earth.")


# --- the built corpus ---------------------------------------------------------------------------


def _indexed(prefix: Path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    return IndexedDataset(str(prefix), multimodal=False)


def test_tokenizer_round_trips_every_domain(small_corpus: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(small_corpus / TOKENIZER))
    assert tok.get_vocab_size() == SMALL.vocab_size and tok.token_to_id(EOD_TOKEN) == 0
    samples = ["Привет, мир! Ça va? 100% — naïve \t tabs\n\n", "def f(x):\n    return x ** 2\n"]
    for spec in SMALL.domains:
        samples += read_domain(spec, SMALL).valid[:5]
    for text in samples:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert 0 not in ids and tok.decode(ids) == text


def test_prefixes_hold_the_documents_and_the_manifest_counts(small_corpus: Path) -> None:
    import json

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(small_corpus / TOKENIZER))
    manifest = json.loads((small_corpus / MANIFEST).read_text())
    assert set(manifest["packages"]) == set(SMALL.packages)
    assert all(manifest["packages"].values())
    for spec in SMALL.domains:
        text = read_domain(spec, SMALL)
        record = manifest["domains"][spec.name]
        assert record["files"] and all(Path(f["path"]).is_file() for f in record["files"])
        for part, docs in (("train", text.train), ("valid", text.valid)):
            ds = _indexed(small_corpus / record[part]["prefix"])
            assert len(ds) == len(docs) == record[part]["documents"]
            assert int(np.sum(ds.sequence_lengths)) == record[part]["tokens"]
            for i in (0, len(ds) - 1):
                ids = np.asarray(ds[i])
                assert ids[-1] == 0 and 0 not in ids[:-1]  # one end-of-document token
                assert tok.decode(ids[:-1].tolist()) == docs[i]
    target = _indexed(small_corpus / manifest["target"]["set"]["prefix"])
    assert len(target) == manifest["target"]["set"]["documents"] > 100


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_rebuild_is_byte_identical(small_corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from regmix_plugin.cli import main

    again = small_corpus.parent / "b"  # the second build through the command-line entry
    assert main(["realtext", "build", str(again), "--preset", "small", "--no-install"]) == 0
    assert "fortunes_it" in capsys.readouterr().out
    first, second = _hashes(small_corpus), _hashes(again)
    assert MANIFEST in first and len(first) == 2 * 2 * (len(SMALL.domains)) + 2 + 2
    assert first == second
