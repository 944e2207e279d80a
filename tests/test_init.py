"""``regmix init`` on real ``.bin/.idx`` folders: the study it writes loads and plans; bad folders
are clear errors that write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regmix_plugin import cli
from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.domains import load_catalogue
from regmix_plugin.indexed import read_index_counts
from regmix_plugin.pipeline import select_stages
from regmix_plugin.study import load_study


def _write(prefix: Path, num_docs: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    docs = (rng.integers(0, 60, size=int(n)) for n in rng.integers(20, 60, num_docs))
    write_indexed_dataset(prefix, docs, dtype=np.uint16)


def test_init_writes_a_study_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _write(data / "web_text_document", 40, 1)
    _write(data / "code" / "github_text_document", 30, 2)
    _write(tmp_path / "heldout" / "wiki_text_document", 10, 3)
    out = tmp_path / "study.yaml"
    args = ["init", str(data), "--target", str(tmp_path / "heldout" / "wiki_text_document")]
    assert cli.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"next: regmix run {out} --dry-run" in printed
    text = out.read_text()
    web = read_index_counts(data / "web_text_document").num_tokens
    assert f"# {web:,} tokens" in text  # the token counts, from the .idx headers, in comments
    study = load_study(out)
    assert [e.name for e in study.domains.entries] == ["github", "web"]
    catalogue = load_catalogue(study.domains)
    assert catalogue.domain("web").num_tokens == web
    assert study.proxy.targets == {"wiki": [str(tmp_path / "heldout" / "wiki_text_document")]}
    assert study.optimize.target == "target_loss/wiki" and study.proxy.vocab_size == 65_536
    assert [s.name for s in select_stages(study, None, None)][:3] == ["domains", "sample", "sweep"]
    # It never overwrites a study without --force.
    assert cli.main([*args, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(out), "--force", "--per-folder"]) == 0
    assert [e.name for e in load_study(out).domains.entries] == ["code", "web"]


def test_init_errors_name_the_problem_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "study.yaml"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["init", str(empty), "--out", str(out)]) == 2
    assert "holds no Megatron prefix" in capsys.readouterr().err

    clash = tmp_path / "clash"
    _write(clash / "a" / "web_text_document", 5)
    _write(clash / "b" / "web_text_document", 5)
    assert cli.main(["init", str(clash), "--out", str(out)]) == 2
    assert "would all be domain 'web'" in capsys.readouterr().err

    broken = tmp_path / "broken"
    _write(broken / "web_text_document", 5)
    idx = broken / "web_text_document.idx"
    idx.write_bytes(idx.read_bytes()[:-8])
    assert cli.main(["init", str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(idx) in err and "truncated" in err and "Traceback" not in err
    wide = tmp_path / "wide"
    write_indexed_dataset(wide / "web_text_document", [[1, 2, 3]], dtype=np.int32)
    assert cli.main(["init", str(wide), "--out", str(out)]) == 2
    assert "pass --vocab-size" in capsys.readouterr().err
    assert not out.exists()
