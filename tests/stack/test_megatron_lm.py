"""``-m regmix_plugin.megatron_lm``: exact ratios in an unchanged Megatron-LM script, on 2 ranks.

torchrun starts two gloo ranks of ``hosts/gpt_data_host.py``, a script that builds its datasets
the way Megatron-LM's ``pretrain_gpt.py`` does (megatron-core's builder) and never imports
regmix. Through the launcher entry, rank 0 builds the exact-ratio index caches and rank 1 loads
them (memory-mapped), and both see the same sequence, whose exact-ratio property is checked here
from the sequence alone. Without the entry the same script gets megatron-core's own blend.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from stack_helpers import HOSTS, max_prefix_deviation, rank_results, torchrun

from regmix_plugin.errors import ConfigError
from regmix_plugin.megatron_lm import parse_launch

WEIGHTS = [0.45, 0.35, 0.2]
SAMPLES = 240


@pytest.fixture
def blend_file(make_corpus, tmp_path: Path) -> Path:
    prefixes = make_corpus({"web": 120, "code": 120, "math": 120}, mean_len=40)
    path = tmp_path / "blend.json"
    path.write_text(json.dumps({"prefixes": list(prefixes.values()), "weights": WEIGHTS}))
    return path


def _host_args(blend: Path, tmp_path: Path, name: str) -> tuple[list[str], Path, Path]:
    out, cache = tmp_path / f"out-{name}", tmp_path / f"cache-{name}"
    out.mkdir()
    args = ["--blend", str(blend), "--cache", str(cache), "--samples", str(SAMPLES)]
    return [*args, "--out", str(out)], out, cache


@pytest.mark.slow
def test_two_ranks_share_the_exact_ratio_sequence(blend_file: Path, tmp_path: Path) -> None:
    host = str(HOSTS / "gpt_data_host.py")
    args, out, cache = _host_args(blend_file, tmp_path, "regmix")
    proc = torchrun(sys.executable, ["-m", "regmix_plugin.megatron_lm", host, *args])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank0, rank1 = rank_results(out)
    assert rank0["world_size"] == 2 and rank0["pid"] != rank1["pid"]
    assert rank0["class"] == rank1["class"] == "ExactRatioBlendedDataset"
    assert not rank0["loaded_from_cache"] and rank1["loaded_from_cache"]
    assert rank0["dataset_index"] == rank1["dataset_index"]
    assert len(rank0["dataset_index"]) == SAMPLES
    assert max_prefix_deviation(rank0["dataset_index"], WEIGHTS) < 1.0
    assert len(list(cache.glob("*-ExactRatioBlendedDataset-train-dataset_index.npy"))) == 1

    # The same script without the entry: megatron-core's own BlendedDataset.
    args, out, cache = _host_args(blend_file, tmp_path, "plain")
    proc = torchrun(sys.executable, [host, *args])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plain0, plain1 = rank_results(out)
    assert plain0["class"] == plain1["class"] == "BlendedDataset"
    assert not list(cache.glob("*ExactRatio*"))


def test_command_line_of_the_entry(tmp_path: Path) -> None:
    script = tmp_path / "pretrain_gpt.py"
    script.write_text("")
    t = parse_launch([str(script), "--data-path", "1", "x", "--lazy-above", "5"])
    assert t.script == str(script) and t.lazy_above is None
    assert t.args == ["--data-path", "1", "x", "--lazy-above", "5"]  # the script's own
    t = parse_launch(["--lazy-above", "1000", "-m", "pkg.train", "--x"])
    assert (t.module, t.args, t.lazy_above) == ("pkg.train", ["--x"], 1000)
    for bad, message in [
        ([], "no training script"),
        (["--lazy-above"], "needs a number"),
        (["--lazy-above", "many", str(script)], "not a whole number"),
        (["--verbose", str(script)], "unknown option"),
        ([str(tmp_path / "nope.py")], "nope.py does not exist"),
        (["-m"], "needs a module"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_launch(bad)


def test_a_script_runs_as_main_with_its_own_argv(tmp_path: Path) -> None:
    import subprocess

    from stack_helpers import child_env

    (tmp_path / "helper_mod.py").write_text("VALUE = 7\n")
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, helper_mod\n"
        "from megatron.core.datasets import blended_megatron_dataset_builder as b\n"
        "print(__name__, sys.argv[1:], helper_mod.VALUE, b.BlendedDataset.__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "regmix_plugin.megatron_lm", str(script), "--a", "1"],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=tmp_path / "..",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "__main__ ['--a', '1'] 7 ExactRatioBlendedDataset"
