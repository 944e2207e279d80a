"""lm-evaluation-harness results as targets (regmix_plugin.sweep.harness, issue 12 part 3).

The result files are written by the real harness: ``lm_eval`` (its command-line entry point)
evaluates a tiny randomly initialised GPT-2 with a word-level tokenizer, both built here and
saved to a temporary folder, on a local multiple-choice task defined over a JSONL file; all
offline. The expected accuracy is computed independently, from the same model's
log-likelihoods of each choice (torch directly), in the same subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _requirements import require_or_skip

from regmix_plugin.sweep.collect import collect_runs
from regmix_plugin.sweep.harness import find_results, read_run_results
from regmix_plugin.sweep.imports import import_climb

pytestmark = pytest.mark.slow  # about 25 s of CPU, most of it importing torch and transformers


@pytest.fixture(scope="module", autouse=True)
def _harness_installed() -> None:
    for module in ("lm_eval", "transformers"):
        require_or_skip(
            importlib.util.find_spec(module) is not None,
            f"{module} is missing: install the dev extra (lm-eval[hf])",
        )


DOCS = [
    {"question": "what color is the sky", "choices": ["blue", "red"], "label": 0},
    {"question": "the cat sat on the", "choices": ["mat", "sea"], "label": 0},
    {"question": "what color is the sea", "choices": ["red", "blue"], "label": 1},
    {"question": "the dog ran on the", "choices": ["log", "sky"], "label": 0},
    {"question": "what is on the mat", "choices": ["a cat", "the sea"], "label": 0},
]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    root = Path(sys.argv[1])
    docs = [json.loads(line) for line in (root / "task" / "tiny.jsonl").read_text().splitlines()]
    words = {w for d in docs for w in d["question"].split() + " ".join(d["choices"]).split()}
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        [" ".join(sorted(words)) + " answer"],
        trainers.WordLevelTrainer(special_tokens=["<unk>", "<eos>"]),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    fast.save_pretrained(root / "model")
    torch.manual_seed(int(sys.argv[2]))
    eos = fast.eos_token_id
    cfg = GPT2Config(vocab_size=fast.vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                     bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    model = GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(root / "model")

    # Independent expectation: the choice with the highest log-likelihood (acc) and the highest
    # log-likelihood per byte of the continuation (acc_norm).
    acc = acc_norm = 0
    for d in docs:
        ctx = fast.encode("question " + d["question"] + " answer")
        scores, normed = [], []
        for c in d["choices"]:
            cont = fast.encode(" " + c)
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            ll = sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
            scores.append(ll)
            normed.append(ll / len((" " + c).encode()))
        acc += int(max(range(len(scores)), key=scores.__getitem__) == d["label"])
        acc_norm += int(max(range(len(normed)), key=normed.__getitem__) == d["label"])
    (root / "expected.json").write_text(json.dumps(
        {"acc": acc / len(docs), "acc_norm": acc_norm / len(docs)}))

    from lm_eval.__main__ import cli_evaluate
    sys.argv = ["lm_eval", "--model", "hf",
                "--model_args", f"pretrained={root / 'model'},dtype=float32",
                "--tasks", "tiny_qa", "--include_path", str(root / "task"),
                "--output_path", str(root / "out"), "--device", "cpu", "--batch_size", "8"]
    cli_evaluate()
    """
)


def task_yaml(jsonl: Path) -> str:
    return textwrap.dedent(
        f"""\
        task: tiny_qa
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {jsonl}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "question {{{{question}}}} answer"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: label
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
          - metric: acc_norm
            aggregation: mean
            higher_is_better: true
        """
    )


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """One real harness run (its ``--output_path``) and the independently expected scores."""
    root = tmp_path_factory.mktemp("harness")
    (root / "task").mkdir()
    jsonl = root / "task" / "tiny.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (root / "task" / "tiny.yaml").write_text(task_yaml(jsonl))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf"),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root), "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "out", json.loads((root / "expected.json").read_text())


def test_reads_the_harness_file(harness_run: tuple[Path, dict[str, float]]) -> None:
    out, expected = harness_run
    files = find_results(out)
    assert len(files) == 1 and files[0].name.startswith("results_")
    metrics = read_run_results(out)
    n = len(DOCS)
    assert metrics["eval/tiny_qa/acc"] == pytest.approx(expected["acc"], abs=1e-12)
    assert metrics["eval/tiny_qa/acc_norm"] == pytest.approx(expected["acc_norm"], abs=1e-12)
    # The harness's stderr of a mean of n Bernoulli outcomes: sqrt(p (1 - p) / (n - 1)).
    p = expected["acc"]
    assert metrics["eval/tiny_qa/acc_stderr"] == pytest.approx(np.sqrt(p * (1 - p) / (n - 1)))
    assert set(metrics) == {
        "eval/tiny_qa/acc",
        "eval/tiny_qa/acc_stderr",
        "eval/tiny_qa/acc_norm",
        "eval/tiny_qa/acc_norm_stderr",
    }


def test_collect_takes_eval_columns(harness_run: tuple[Path, dict[str, float]], tmp_path) -> None:
    out, expected = harness_run
    runs = tmp_path / "runs"
    for mid in ("m1", "m2"):
        shutil.copytree(out, runs / mid / "lm_eval")
    (runs / "m3").mkdir()  # a run with nothing: listed missing, never dropped
    collected = collect_runs(runs)
    t = collected.table
    assert t.ids == ["m1", "m2", "m3"]
    assert "eval/tiny_qa/acc" in t.columns
    np.testing.assert_allclose(t.column("eval/tiny_qa/acc")[:2], expected["acc"])
    assert np.isnan(t.column("eval/tiny_qa/acc")[2]) and "m3" in collected.missing


def test_climb_import_with_harness_folders(
    harness_run: tuple[Path, dict[str, float]], tmp_path: Path
) -> None:
    out, expected = harness_run
    mixtures = tmp_path / "mixtures"
    mixtures.mkdir()
    weights = {"n1": {"a": 0.25, "b": 0.75}, "n2": {"a": 1.0}}
    for rid, w in weights.items():
        lines = [f"{v:g} /data/{d}" for d, v in w.items()]
        (mixtures / f"{rid}.sh").write_text(
            "#!/bin/bash\ncat <<EOF\n" + "\n".join(lines) + "\nEOF\n"
        )
        shutil.copytree(out, tmp_path / "eval" / rid / "results")
    got = import_climb(mixtures, tmp_path / "eval", domains=["a", "b"])
    np.testing.assert_allclose(got.mixtures.values, [[0.25, 0.75], [1.0, 0.0]])
    np.testing.assert_allclose(got.results.column("eval/tiny_qa/acc_norm"), expected["acc_norm"])
