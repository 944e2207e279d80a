"""The proxy side of the GPU path, as far as the CPU can check it (issue 19, issue 18 parts 6, 8).

* the local layer spec is plain PyTorch down to the final norm, also when apex is installed
  (checked with an import stand-in for apex, a GPU-only package: an empty ``apex`` package on
  ``PYTHONPATH`` of a subprocess, which is all megatron-core's ``LayerNormImpl`` choice looks at);
* a kill in the middle of megatron-core's cache write (a truncated ``.npy``) is rebuilt, not
  tripped on;
* the evaluation indices are built once per study, under a lock, by concurrent proxies;
* a diverged proxy fails with the reason, and leaves no cache files in its ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from proxy_corpus import study_dict, train

from regmix_plugin.errors import RegMixError
from regmix_plugin.proxy.train import METRICS_FILE

REPO = Path(__file__).resolve().parents[2]
MIX = {"a": 0.5, "b": 0.3, "c": 0.2}

_PROBE = """
import json
import megatron.core.transformer.transformer_block as block
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.proxy.model import build_model
from regmix_plugin.proxy.runtime import proxy_runtime

cfg = ProxyConfig(vocab_size=64)
with proxy_runtime(cfg) as rt:
    model = build_model(cfg.model_preset(), cfg, rt.device)
final = type(model.decoder.final_layernorm)
print(json.dumps({
    "impl": block.LayerNormImpl.__name__,
    "final": f"{final.__module__}.{final.__qualname__}",
    "layer": type(model.decoder.layers[0].input_layernorm).__qualname__,
    "final_keys": [k for k in model.state_dict() if k.startswith("decoder.final_layernorm")],
}))
"""


def _probe(extra_path: list[str]) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*extra_path, str(REPO)]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_local_spec_final_norm_is_plain_pytorch_even_with_apex(tmp_path: Path) -> None:
    # Import stand-in for apex (GPU-only): an empty package makes megatron-core's
    # transformer_block pick apex's FusedLayerNorm as LayerNormImpl, which rejects RMSNorm.
    (tmp_path / "apex").mkdir()
    (tmp_path / "apex" / "__init__.py").write_text('"""Import stand-in for apex (tests only)."""\n')
    with_apex = _probe([str(tmp_path)])
    assert with_apex["impl"] == "FusedLayerNorm"  # the stand-in took effect
    assert with_apex["final"] == "torch.nn.modules.normalization.RMSNorm"
    assert with_apex["layer"] == "RMSNorm"
    assert with_apex["final_keys"] == ["decoder.final_layernorm.weight"]  # no TE _extra_state
    plain = _probe([])
    assert plain["final"] == with_apex["final"]


def _write_config(folder: Path, prefixes: dict[str, str], **proxy) -> Path:
    study = study_dict(prefixes, folder, **proxy)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    (folder / "mixtures.csv").write_text(
        "mixture_id,a,b,c\nm1,0.5,0.3,0.2\nm2,0.2,0.3,0.5\n", encoding="utf-8"
    )
    return path


def _eval_cache_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*GPTDataset-valid-*.npy"))


def test_truncated_evaluation_cache_is_rebuilt_not_tripped_on(band_corpus, tmp_path) -> None:
    study = study_dict(band_corpus, tmp_path)
    out = tmp_path / "run" / "proxies" / "m1"
    first = train(study, MIX, "m1", out)
    caches = _eval_cache_files(tmp_path / "run")
    assert caches, "no evaluation index cache was written"
    # A kill in the middle of megatron-core's np.save leaves a truncated file behind.
    victim = max(caches, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    (out / METRICS_FILE).unlink()  # the retry trains again and rebuilds its datasets
    again = train(study, MIX, "m1", out)
    assert again["metrics"] == first["metrics"]
    assert victim.stat().st_size > 0 and victim in _eval_cache_files(tmp_path / "run")


@pytest.mark.slow
def test_concurrent_proxies_build_the_evaluation_cache_once(band_corpus, tmp_path) -> None:
    config = _write_config(tmp_path, band_corpus)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regmix_plugin",
                "train-proxy",
                str(config),
                "--mixture",
                mid,
                "--mixtures",
                str(tmp_path / "mixtures.csv"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for mid in ("m1", "m2")
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    # megatron-core logs one "Build and save" per index it builds (it loads the others):
    # three domains' validation parts, each built by one proxy only.
    builds = sum(log.count("Build and save the GPTDataset valid indices") for log in logs)
    assert builds == 3, builds
    # and the proxies' own folders keep no megatron cache files
    for mid in ("m1", "m2"):
        left = [p for p in (tmp_path / "run" / "proxies" / mid).rglob("*") if p.suffix == ".npy"]
        assert left == [], left
    a = json.loads((tmp_path / "run" / "proxies" / "m1" / METRICS_FILE).read_text())
    b = json.loads((tmp_path / "run" / "proxies" / "m2" / METRICS_FILE).read_text())
    assert a["num_eval_tokens"] == b["num_eval_tokens"]


def test_diverged_proxy_fails_with_the_reason_and_leaves_no_cache(band_corpus, tmp_path) -> None:
    study = study_dict(band_corpus, tmp_path, lr=1e30, grad_clip=0.0, num_tokens=32 * 16 * 10)
    out = tmp_path / "run" / "proxies" / "m1"
    with pytest.raises(RegMixError, match="diverged") as err:
        train(study, MIX, "m1", out)
    assert "proxy.lr" in str(err.value)
    metrics = json.loads((out / METRICS_FILE).read_text())  # strict JSON: no NaN / Infinity
    assert metrics["complete"] is False and metrics["failure"] == str(err.value)
    assert "metrics" not in metrics
    assert not (out / "cache").exists()
    assert [p for p in out.rglob("*") if p.suffix in (".npy", ".txt")] == []


@pytest.mark.slow
def test_gpu_smoke_script_passes_its_dry_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_smoke.py"),
            "--dry-run",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
            "--assume-gpus",
            "8",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert {r["status"] for r in summary["results"].values()} == {"planned"}
    placement = summary["results"]["sweep_placement"]
    assert placement["slots"] == [["0"], ["1"], ["2"], ["3"]]
    assert placement["placement"] == {"device": "cuda", "precision": "bf16"}
    assert (
        summary["results"]["throughput"]["final_norm"] == "torch.nn.modules.normalization.RMSNorm"
    )
    assert len(summary["commands"]) >= 10
