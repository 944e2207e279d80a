"""GPU smoke test of the proxy path: about 10 minutes on one GPU node (issue 19).

Run it once on a GPU node before a real sweep, and after upgrading torch, megatron-core or
Transformer Engine. It trains real proxies on a synthetic ``.bin/.idx`` corpus it writes itself,
with the ``regmix`` commands a team runs, and checks:

``environment``
    CUDA, the GPU count and names, bf16 support, Transformer Engine present or not.
``bf16_local`` / ``bf16_transformer_engine``
    a proxy trains in bf16 on ``cuda:0`` with each layer spec (TE skipped when not installed):
    ``metrics.json`` says ``cuda:0``, ``bfloat16`` and the spec, every loss is finite and the
    training loss falls.
``resume``
    a proxy SIGKILLed after its first checkpoint and rerun resumes (``resumed_from_step > 0``)
    and ends with the same realised samples and validation losses as an uninterrupted run.
``data_parallel``
    the same proxy under ``torchrun`` on 2 GPUs (NCCL: the sample counts' all-reduce at each
    checkpoint included) realises the same samples and validation losses (needs 2 GPUs).
``sweep_placement``
    a ``regmix sweep`` with ``num_devices_per_proxy: 1`` runs one proxy per GPU at a time: the
    live proxies' ``CUDA_VISIBLE_DEVICES`` are distinct GPUs of the node.
``orphans``
    a sweep whose proxy runs under ``torchrun`` is SIGKILLed mid-training: no process of it
    (worker, torchrun, ranks) survives.
``fused_loss``
    megatron-core's fused cross-entropy (``labels=``, used on CUDA in bf16) gives the plain
    cross-entropy's per-token losses and gradients on the same model and batch.
``throughput``
    the paper's 1M preset at sequence 2048 (vocabulary 50,304): training tokens/s and the peak
    GPU memory at micro-batch 16, 32 and 64 (megatron-core model, fused cross-entropy, AdamW, the
    proxy's own loss path), against the paper's ~0.8M tokens/s on an A100 and the target of
    1M tokens/s on an H100-class GPU.

Usage::

    python benchmarks/gpu_smoke.py --dry-run                # any machine: checks what it can
    python benchmarks/gpu_smoke.py --out gpu_smoke.json     # on a GPU node
    python benchmarks/gpu_smoke.py --only throughput resume

``--dry-run`` needs no CUDA: it writes the corpus and every config, validates them with the
same loaders the commands use, plans the sweeps (device slots for ``--assume-gpus`` GPUs,
the fingerprinted device and precision), builds the 1M model on the CPU, and prints every
command it would run. Exit status: 0 when every check passed (or was skipped), 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
CHECKS = (
    "environment",
    "bf16_local",
    "bf16_transformer_engine",
    "resume",
    "data_parallel",
    "sweep_placement",
    "orphans",
    "fused_loss",
    "throughput",
)
VOCAB = 512
DOMAINS = ("a", "b", "c")
MIXTURES = {
    "m1": (0.5, 0.3, 0.2),
    "m2": (0.2, 0.3, 0.5),
    "m3": (0.1, 0.8, 0.1),
    "m4": (0.34, 0.33, 0.33),
    "m5": (0.6, 0.2, 0.2),
    "m6": (0.2, 0.6, 0.2),
    "m7": (0.2, 0.2, 0.6),
    "m8": (0.4, 0.4, 0.2),
}
#: A small proxy that trains in seconds on a GPU: 1M preset at sequence 512, 60 steps.
PROXY: dict[str, Any] = {
    "preset": "1m",
    "vocab_size": VOCAB,
    "seq_length": 512,
    "num_tokens": 512 * 32 * 60,
    "micro_batch_size": 16,
    "global_batch_size": 32,
    "lr": 2e-3,
    "split": "90,10,0",
    "num_eval_tokens": 512 * 32,
    "log_interval": 10,
    "checkpoint_interval": 10,
    "device": "cuda",
    "num_threads": 2,
}
#: Validation losses of two runs that must agree (bf16 kernels are not bitwise reproducible).
LOSS_RTOL = 1e-2
THROUGHPUT_BATCHES = (16, 32, 64)
THROUGHPUT_SEQ = 2048
THROUGHPUT_VOCAB = 50_304


@dataclass
class Smoke:
    """The workspace of one smoke run."""

    work: Path
    dry_run: bool
    gpus: int
    """GPUs CUDA counts here (``--assume-gpus`` in a dry run)."""
    prefixes: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        env.update(extra)
        return env

    def commands_of(self, out: Path) -> bool:
        """Whether a recorded command already writes to ``out``."""
        return any(str(out) in c for c in self.commands)

    def run(
        self, argv: list[str], *, timeout: float, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (recorded; in a dry run only recorded)."""
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.commands.append((shown + " " if shown else "") + shlex.join(argv))
        if self.dry_run:
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.run(
            argv, env=self.env(**env), capture_output=True, text=True, timeout=timeout, check=False
        )


# ---------------------------------------------------------------- corpus and configs
def write_corpus(
    folder: Path, *, vocab: int = VOCAB, docs: int = 1500, seed: int = 0
) -> dict[str, str]:
    """Three domains whose tokens come from disjoint bands of the vocabulary."""
    from regmix_plugin.corpus import write_indexed_dataset

    rng = np.random.default_rng(seed)
    band = vocab // len(DOMAINS)
    out = {}
    for i, name in enumerate(DOMAINS):
        lo = i * band
        documents = [
            rng.integers(lo, lo + band, size=int(rng.integers(200, 600))) for _ in range(docs)
        ]
        prefix = folder / f"{name}_text_document"
        if not Path(f"{prefix}.idx").is_file():
            write_indexed_dataset(prefix, documents)
        out[name] = str(prefix)
    return out


def write_study(
    folder: Path,
    prefixes: dict[str, str],
    proxy: dict[str, Any],
    sweep: dict[str, Any] | None = None,
) -> Path:
    """``study.yaml`` and ``run/mixtures.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    study: dict[str, Any] = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 10**9,
            "entries": [{"name": n, "prefixes": [p]} for n, p in prefixes.items()],
        },
        "proxy": proxy,
    }
    if sweep is not None:
        study["sweep"] = sweep
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    (folder / "run").mkdir(exist_ok=True)
    lines = ["mixture_id," + ",".join(DOMAINS)]
    lines += [mid + "," + ",".join(repr(w) for w in ws) for mid, ws in MIXTURES.items()]
    (folder / "run" / "mixtures.csv").write_text("\n".join(lines) + "\n")
    return path


def validate(config: Path) -> dict[str, Any]:
    """Load a config as the commands do; the proxy's model size and resolved blend."""
    from regmix_plugin.domains import load_catalogue
    from regmix_plugin.study import load_study

    study = load_study(config)
    cfg = study.require("proxy")
    catalogue = load_catalogue(study.require("domains"))
    blend = catalogue.blend(dict(zip(DOMAINS, MIXTURES["m1"], strict=True)))
    return {"num_steps": cfg.num_steps, "preset": cfg.preset, "blend": [[p, w] for p, w in blend]}


def train_cmd(config: Path, mixture: str, out: Path, *, nproc: int = 0) -> list[str]:
    """``regmix train-proxy``, under torchrun when ``nproc`` > 0."""
    head = [sys.executable]
    if nproc:
        head += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return [
        *head,
        "-m",
        "regmix_plugin",
        "train-proxy",
        str(config),
        "--mixture",
        mixture,
        "--mixtures",
        str(config.parent / "run" / "mixtures.csv"),
        "--out",
        str(out),
    ]


def read_metrics(out: Path) -> dict[str, Any]:
    """A proxy's metrics.json with its timings (from the run's timings log) merged in."""
    from regmix_plugin.proxy.train import proxy_timings

    return {**json.loads((out / "metrics.json").read_text()), **proxy_timings(out)}


def _close(a: dict[str, float], b: dict[str, float]) -> tuple[bool, float]:
    worst = max(abs(a[k] - b[k]) / abs(b[k]) for k in b)
    return set(a) == set(b) and worst <= LOSS_RTOL, worst


# ---------------------------------------------------------------- checks
def check_environment(smoke: Smoke) -> dict[str, Any]:
    import megatron.core
    import torch

    from regmix_plugin.proxy.model import has_transformer_engine

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "megatron_core": getattr(megatron.core, "__version__", "?"),
        "cuda_available": torch.cuda.is_available(),
        "gpus": torch.cuda.device_count(),
        "transformer_engine": has_transformer_engine(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if torch.cuda.is_available():
        info["names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    if smoke.dry_run:
        return {"status": "planned", **info}
    ok = info["cuda_available"] and info.get("bf16_supported", False)
    return {"status": "passed" if ok else "failed", **info}


def _bf16(smoke: Smoke, impl: str) -> dict[str, Any]:
    from regmix_plugin.proxy.model import has_transformer_engine

    if impl == "transformer_engine" and not has_transformer_engine() and not smoke.dry_run:
        return {"status": "skipped", "why": "Transformer Engine is not installed"}
    folder = smoke.work / f"bf16_{impl}"
    config = write_study(folder, smoke.prefixes, {**PROXY, "transformer_impl": impl})
    plan = validate(config)
    out = folder / "run" / "proxies" / "m1"
    done = smoke.run(train_cmd(config, "m1", out), timeout=300, CUDA_VISIBLE_DEVICES=_first_gpu())
    if smoke.dry_run:
        return {"status": "planned", "num_steps": plan["num_steps"]}
    if done.returncode != 0:
        return {"status": "failed", "stderr": done.stderr[-3000:]}
    m = read_metrics(out)
    curve = [v for _, v in m["train_loss"]]
    checks = {
        "device": m["device"] == "cuda:0",
        "precision": m["precision"] == "bfloat16",
        "layer_spec": m["layer_spec"] == impl,
        "finite": all(math.isfinite(v) for v in m["metrics"].values()),
        "learns": curve[-1] < curve[0],
    }
    return {
        "status": "passed" if all(checks.values()) else "failed",
        "checks": checks,
        "tokens_per_second": m["tokens_per_second"],
        "metrics": m["metrics"],
    }


def check_bf16_local(smoke: Smoke) -> dict[str, Any]:
    return _bf16(smoke, "local")


def check_bf16_transformer_engine(smoke: Smoke) -> dict[str, Any]:
    return _bf16(smoke, "transformer_engine")


def _first_gpu() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[0] if visible else "0"


def _reference(smoke: Smoke) -> tuple[Path, Path]:
    """(config, out) of an uninterrupted single-GPU run of mixture m1 (trained once)."""
    folder = smoke.work / "reference"
    config = write_study(folder, smoke.prefixes, dict(PROXY))
    out = folder / "run" / "proxies" / "m1"
    if not (out / "metrics.json").is_file() and not (smoke.dry_run and smoke.commands_of(out)):
        smoke.run(train_cmd(config, "m1", out), timeout=300, CUDA_VISIBLE_DEVICES=_first_gpu())
    return config, out


def check_resume(smoke: Smoke) -> dict[str, Any]:
    config, ref_out = _reference(smoke)
    validate(config)
    out = smoke.work / "resume" / "m1"
    argv = train_cmd(config, "m1", out)
    smoke.commands.append(f"{shlex.join(argv)}  # SIGKILLed after its first checkpoint, then rerun")
    if smoke.dry_run:
        return {"status": "planned"}
    proc = subprocess.Popen(
        argv,
        env=smoke.env(CUDA_VISIBLE_DEVICES=_first_gpu()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoint = out / "checkpoint" / "state.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = smoke.run(argv, timeout=300, CUDA_VISIBLE_DEVICES=_first_gpu())
    if done.returncode != 0:
        return {"status": "failed", "stderr": done.stderr[-3000:]}
    ref, m = read_metrics(ref_out), read_metrics(out)
    same_losses, worst = _close(m["metrics"], ref["metrics"])
    checks = {
        "killed_mid_run": killed,
        "resumed": m["resumed_from_step"] > 0,
        "same_samples": m["realised_samples"] == ref["realised_samples"],
        "same_losses": same_losses,
    }
    return {
        "status": "passed" if all(checks.values()) else "failed",
        "checks": checks,
        "resumed_from_step": m["resumed_from_step"],
        "max_relative_loss_difference": worst,
    }


def check_data_parallel(smoke: Smoke) -> dict[str, Any]:
    if smoke.gpus < 2:
        return {"status": "skipped", "why": f"needs 2 GPUs, {smoke.gpus} here"}
    config, ref_out = _reference(smoke)
    out = smoke.work / "data_parallel" / "m1"
    done = smoke.run(train_cmd(config, "m1", out, nproc=2), timeout=300)
    if smoke.dry_run:
        return {"status": "planned"}
    if done.returncode != 0:
        return {"status": "failed", "stderr": done.stderr[-3000:]}
    ref, m = read_metrics(ref_out), read_metrics(out)
    same_losses, worst = _close(m["metrics"], ref["metrics"])
    checks = {
        "world_size": m["world_size"] == 2,
        "same_samples": m["realised_samples"] == ref["realised_samples"],
        "same_losses": same_losses,
    }
    return {
        "status": "passed" if all(checks.values()) else "failed",
        "checks": checks,
        "max_relative_loss_difference": worst,
        "tokens_per_second": m["tokens_per_second"],
    }


# -- processes, read from /proc
def _parents() -> dict[int, int]:
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            out[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(root: int) -> set[int]:
    """Every process below ``root``."""
    parents = _parents()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw if b"=" in item)
    return {k: v for k, _, v in pairs}


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _sweep_study(smoke: Smoke, name: str, proxy: dict[str, Any], sweep: dict[str, Any]) -> Path:
    config = write_study(smoke.work / name, smoke.prefixes, proxy, sweep)
    validate(config)
    return config


def _plan_text(config: Path, gpus: int) -> dict[str, Any]:
    """The sweep's fingerprinted placement and its device slots for ``gpus`` GPUs."""
    from regmix_plugin import stages
    from regmix_plugin.study import load_study
    from regmix_plugin.sweep.launchers.local import device_slots

    study = load_study(config)
    plan = stages.plan_sweep(study, study.layout, stages.build_catalogue(study))
    slots = device_slots(plan.settings.local, os.environ, gpus)
    return {
        "placement": plan.description["placement"],
        "slots": slots,
        "fingerprint": plan.fingerprint,
    }


def check_sweep_placement(smoke: Smoke) -> dict[str, Any]:
    n = max(1, min(smoke.gpus, 4))
    proxy = {**PROXY, "num_tokens": 512 * 32 * 150, "checkpoint_interval": 0}
    sweep = {
        "launcher": "local",
        "local": {"num_concurrent": n, "num_devices_per_proxy": 1},
        "num_retries": 0,
    }
    config = _sweep_study(smoke, "sweep_placement", proxy, sweep)
    planned = _plan_text(config, smoke.gpus)
    argv = [sys.executable, "-m", "regmix_plugin", "sweep", str(config)]
    smoke.commands.append(shlex.join(argv) + f"  # {2 * n} proxies, {n} at a time, one GPU each")
    if smoke.dry_run:
        return {"status": "planned", **planned}
    # keep two rounds of proxies: 2n mixtures
    table = config.parent / "run" / "mixtures.csv"
    table.write_text("\n".join(table.read_text().splitlines()[: 2 * n + 1]) + "\n")
    sweep_proc = subprocess.Popen(
        argv, env=smoke.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    most, clashes, seen = 0, 0, set()
    while sweep_proc.poll() is None:
        live = [p for p in descendants(sweep_proc.pid) if "train-proxy" in _cmdline(p) and alive(p)]
        devices = [environ_of(p).get("CUDA_VISIBLE_DEVICES", "?") for p in live]
        most = max(most, len(live))
        clashes += len(devices) != len(set(devices))
        seen.update(devices)
        time.sleep(0.25)
    err = sweep_proc.stderr.read() if sweep_proc.stderr else ""
    from regmix_plugin.sweep.registry import sweep_status

    status = sweep_status(config.parent / "run")
    checks = {
        "all_done": status.finished,
        "one_gpu_per_proxy": clashes == 0,
        "concurrent": most == n,
        "gpus_used": sorted(seen) == sorted(str(s[0]) for s in planned["slots"]),
    }
    return {
        "status": "passed" if all(checks.values()) else "failed",
        "checks": checks,
        "devices_seen": sorted(seen),
        "most_concurrent": most,
        "stderr": err[-2000:] if not checks["all_done"] else "",
        **planned,
    }


def check_orphans(smoke: Smoke) -> dict[str, Any]:
    nproc = 2 if smoke.gpus >= 2 else 1
    proxy = {**PROXY, "num_tokens": 512 * 32 * 100_000}
    sweep: dict[str, Any] = {"launcher": "local", "local": {"num_devices_per_proxy": nproc}}
    if nproc == 1:  # {python} is torchrun only above one device per proxy: ask for it here
        sweep["command"] = (
            "{python} -m torch.distributed.run --standalone --nproc-per-node=1 -m regmix_plugin "
            "train-proxy {config} --mixture {mixture_id} --mixtures {mixtures} --out {run_dir}"
        )
    config = _sweep_study(smoke, "orphans", proxy, sweep)
    planned = _plan_text(config, smoke.gpus)
    argv = [sys.executable, "-m", "regmix_plugin", "sweep", str(config)]
    smoke.commands.append(
        shlex.join(argv) + f"  # {nproc} rank(s) under torchrun, SIGKILLed mid-training"
    )
    if smoke.dry_run:
        return {"status": "planned", **planned}
    table = config.parent / "run" / "mixtures.csv"
    table.write_text("\n".join(table.read_text().splitlines()[:2]) + "\n")
    proc = subprocess.Popen(
        argv, env=smoke.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = config.parent / "run" / "sweep" / "runs" / "m1" / "train.log"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and "loss" in log.read_text(errors="replace"):
            break
        time.sleep(0.2)
    tree = descendants(proc.pid)
    ranks = [p for p in tree if "LOCAL_RANK" in environ_of(p)]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 30
    while any(alive(p) for p in tree) and time.monotonic() < end:
        time.sleep(0.1)
    survivors = [p for p in tree if alive(p)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    checks = {"ranks_found": len(ranks) == nproc, "no_survivors": not survivors}
    return {
        "status": "passed" if all(checks.values()) else "failed",
        "checks": checks,
        "processes": len(tree),
        "survivors": len(survivors),
    }


def _throughput_config(micro_batch: int) -> Any:
    from regmix_plugin.config import from_dict
    from regmix_plugin.proxy.config import ProxyConfig

    section = {
        "preset": "1m",
        "vocab_size": THROUGHPUT_VOCAB,
        "seq_length": THROUGHPUT_SEQ,
        "micro_batch_size": micro_batch,
        "global_batch_size": micro_batch,
        "num_tokens": micro_batch * THROUGHPUT_SEQ,
        "num_eval_tokens": THROUGHPUT_SEQ + 1,
        "device": "cuda",
    }
    return from_dict(ProxyConfig, section, "proxy")


def measure_throughput(
    micro_batch: int | str, *, steps: int = 20, repeats: int = 3
) -> dict[str, Any]:
    """Tokens/s (median of ``repeats``) and peak memory of the proxy's training step."""
    import torch

    micro_batch = int(micro_batch)

    from regmix_plugin.proxy.cpu_compat import seed_model_parallel
    from regmix_plugin.proxy.model import build_model, token_losses, uses_fused_loss
    from regmix_plugin.proxy.runtime import proxy_runtime

    cfg = _throughput_config(micro_batch)
    with proxy_runtime(cfg) as rt:
        seed_model_parallel(0, rt.device)
        fused = uses_fused_loss(rt.device, rt.dtype)
        model = build_model(cfg.model_preset(), cfg, rt.device, fused_loss=fused)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        s = cfg.seq_length
        mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool, device=rt.device), diagonal=1)
        pos = torch.arange(s, device=rt.device).unsqueeze(0).expand(micro_batch, s)
        tokens = torch.randint(0, cfg.vocab_size, (micro_batch, s + 1), device=rt.device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with rt.autocast():
                losses = token_losses(model, tokens[:, :-1], pos, mask, tokens[:, 1:], fused=fused)
            losses.float().mean().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        torch.cuda.reset_peak_memory_stats(rt.device)
        try:
            for _ in range(3):
                step()
            torch.cuda.synchronize(rt.device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                torch.cuda.synchronize(rt.device)
                times.append(time.perf_counter() - t0)
        except torch.cuda.OutOfMemoryError:
            return {"micro_batch": micro_batch, "status": "out of memory"}
        peak = torch.cuda.max_memory_allocated(rt.device)
        return {
            "micro_batch": micro_batch,
            "status": "ok",
            "tokens_per_second": steps * micro_batch * s / statistics.median(times),
            "peak_memory_gib": peak / 2**30,
            "fused_loss": fused,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "seconds": times,
        }


def compare_losses() -> dict[str, Any]:
    """Fused vs plain cross-entropy of one model on one batch (bf16 autocast, CUDA)."""
    import torch

    from regmix_plugin.proxy.cpu_compat import seed_model_parallel
    from regmix_plugin.proxy.model import build_model, token_losses
    from regmix_plugin.proxy.runtime import proxy_runtime

    cfg = _throughput_config(8)
    out: dict[str, Any] = {}
    with proxy_runtime(cfg) as rt:
        s = cfg.seq_length
        mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool, device=rt.device), diagonal=1)
        pos = torch.arange(s, device=rt.device).unsqueeze(0).expand(8, s)
        tokens = torch.randint(0, cfg.vocab_size, (8, s + 1), device=rt.device)
        for fused in (False, True):
            seed_model_parallel(0, rt.device)  # the same initial weights both times
            model = build_model(cfg.model_preset(), cfg, rt.device, fused_loss=fused)
            with rt.autocast():
                losses = token_losses(model, tokens[:, :-1], pos, mask, tokens[:, 1:], fused=fused)
            losses.float().mean().backward()
            grad = model.embedding.word_embeddings.weight.grad.float()
            out[str(fused)] = (losses.detach().float(), grad)
    (plain, g_plain), (fused_l, g_fused) = out["False"], out["True"]
    loss_diff = float((plain - fused_l).abs().max() / plain.abs().max())
    grad_diff = float((g_plain - g_fused).norm() / g_plain.norm())
    return {
        "status": "passed" if loss_diff < 1e-2 and grad_diff < 5e-2 else "failed",
        "max_relative_loss_difference": loss_diff,
        "relative_gradient_difference": grad_diff,
        "mean_loss": float(plain.mean()),
    }


def _in_subprocess(smoke: Smoke, call: str, *args: str) -> dict[str, Any]:
    """Run ``gpu_smoke.<call>(*args)`` in a fresh process on the first GPU; its JSON result."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import gpu_smoke; "
        f"print(json.dumps(gpu_smoke.{call}(*sys.argv[2:])))"
    )
    done = smoke.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), *args],
        timeout=300,
        CUDA_VISIBLE_DEVICES=_first_gpu(),
    )
    if smoke.dry_run:
        return {"status": "planned"}
    if done.returncode != 0:
        return {"status": "failed", "stderr": done.stderr[-2000:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def check_fused_loss(smoke: Smoke) -> dict[str, Any]:
    return _in_subprocess(smoke, "compare_losses")


def check_throughput(smoke: Smoke) -> dict[str, Any]:
    # one process per micro-batch: a clean allocator, and its own peak
    rows = [_in_subprocess(smoke, "measure_throughput", str(mb)) for mb in THROUGHPUT_BATCHES]
    if smoke.dry_run:
        return {"status": "planned", **_dry_build_1m()}
    for mb, row in zip(THROUGHPUT_BATCHES, rows, strict=True):
        row.setdefault("micro_batch", mb)
    best = max((r.get("tokens_per_second", 0.0) for r in rows), default=0.0)
    return {
        "status": "passed" if all(r["status"] != "failed" for r in rows) else "failed",
        "rows": rows,
        "best_tokens_per_second": best,
        "paper_a100_tokens_per_second": 0.8e6,
        "target_tokens_per_second": 1.0e6,
        "meets_target": best >= 1.0e6,
    }


def _dry_build_1m() -> dict[str, Any]:
    """Build the 1M preset on the CPU: its size, its final norm, and the configs of each batch."""
    from regmix_plugin.proxy.cpu_compat import seed_model_parallel
    from regmix_plugin.proxy.model import build_model
    from regmix_plugin.proxy.runtime import proxy_runtime

    configs = [_throughput_config(mb) for mb in THROUGHPUT_BATCHES]
    cfg = _throughput_config(THROUGHPUT_BATCHES[0])
    cpu = dataclasses.replace(cfg, device="cpu")
    with proxy_runtime(cpu) as rt:
        seed_model_parallel(0, rt.device)
        model = build_model(cpu.model_preset(), cpu, rt.device)
        final = type(model.decoder.final_layernorm)
    return {
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "final_norm": f"{final.__module__}.{final.__qualname__}",
        "micro_batches": [c.micro_batch_size for c in configs],
        "tokens_per_step": [c.tokens_per_step for c in configs],
    }


CHECK_FUNCTIONS: dict[str, Callable[[Smoke], dict[str, Any]]] = {
    "environment": check_environment,
    "bf16_local": check_bf16_local,
    "bf16_transformer_engine": check_bf16_transformer_engine,
    "resume": check_resume,
    "data_parallel": check_data_parallel,
    "sweep_placement": check_sweep_placement,
    "orphans": check_orphans,
    "fused_loss": check_fused_loss,
    "throughput": check_throughput,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="check what needs no CUDA; print the plan"
    )
    parser.add_argument("--only", nargs="+", choices=CHECKS, help="run only these checks")
    parser.add_argument("--work", type=Path, help="workspace (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--assume-gpus", type=int, default=8, help="GPUs to plan for in a dry run")
    args = parser.parse_args(argv)
    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="regmix-gpu-smoke-"))
    gpus = args.assume_gpus if args.dry_run else torch.cuda.device_count()
    smoke = Smoke(work=work, dry_run=args.dry_run, gpus=gpus)
    if not args.dry_run and not torch.cuda.is_available():
        print(
            "gpu_smoke: torch sees no CUDA device; run with --dry-run on a machine without GPUs",
            file=sys.stderr,
        )
        return 1
    started = time.perf_counter()
    smoke.prefixes = write_corpus(work / "corpus")
    results: dict[str, Any] = {}
    for name in args.only or CHECKS:
        t0 = time.perf_counter()
        try:
            results[name] = CHECK_FUNCTIONS[name](smoke)
        except Exception as exc:  # a smoke test reports every check, whatever happens
            results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(
            f"{name:24s} {results[name]['status']:8s} {results[name]['seconds']:7.1f} s", flush=True
        )
    summary = {
        "dry_run": args.dry_run,
        "work": str(work),
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
        "commands": smoke.commands,
    }
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if args.dry_run:
        print("\nwhat each check would use:")
        print(json.dumps(results, indent=2, default=str))
        print("\ncommands a GPU run executes:")
        for command in smoke.commands:
            print("  " + command)
    print(json.dumps({k: v["status"] for k, v in results.items()}, indent=2))
    bad = [k for k, v in results.items() if v["status"] == "failed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
