"""Proxy training speed: the megatron-core proxy beside a plain PyTorch GPT of the same shape.

Both models are built in the same process from the same preset (RMSNorm, SwiGLU, rotary
positions, no biases, untied embeddings; the parameter counts are checked to be equal) and
trained with the same AdamW step on the same batches. Repeats alternate between the two, and
the medians are compared, so a burst of load on a shared machine hits both alike.

Three figures, in tokens per second (training: forward, backward, optimizer step):

* ``plain``: the plain PyTorch GPT (``torch.nn.functional.scaled_dot_product_attention``);
* ``megatron``: the proxy's megatron-core ``GPTModel`` in the same loop;
* ``train_proxy``: the whole ``regmix_plugin.proxy.train.train_proxy`` on a real ``.bin/.idx``
  corpus (data loading, exact-ratio blend, logging included), from its ``metrics.json``.

Usage::

    python benchmarks/bench_proxy.py                        # CPU, preset cpu-small, seq 128
    python benchmarks/bench_proxy.py --device cuda --preset 1m --seq-length 2048 \
        --micro-batch-size 64 --vocab-size 50304           # the paper's 1M proxy on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from regmix_plugin.config import from_dict
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.proxy.presets import ModelPreset

# -- the plain PyTorch reference ---------------------------------------------------------------


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of the head dimension (the non-interleaved RoPE layout)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class PlainBlock(nn.Module):
    """Pre-norm decoder layer: RMSNorm, causal self-attention with RoPE, RMSNorm, SwiGLU."""

    def __init__(self, p: ModelPreset) -> None:
        super().__init__()
        h, f = p.hidden_size, p.ffn_hidden_size
        self.heads = p.num_attention_heads
        self.norm1 = nn.RMSNorm(h, eps=1e-5)
        self.qkv = nn.Linear(h, 3 * h, bias=False)
        self.proj = nn.Linear(h, h, bias=False)
        self.norm2 = nn.RMSNorm(h, eps=1e-5)
        self.fc1 = nn.Linear(h, 2 * f, bias=False)
        self.fc2 = nn.Linear(f, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, h // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads, s, head_dim]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, s, h))
        gate, up = self.fc1(self.norm2(x)).chunk(2, dim=-1)
        return x + self.fc2(F.silu(gate) * up)


class PlainGPT(nn.Module):
    """A plain PyTorch GPT of a preset's shape; ``forward`` returns per-token losses."""

    def __init__(self, p: ModelPreset, vocab_size: int, seq_length: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, p.hidden_size)
        self.blocks = nn.ModuleList(PlainBlock(p) for _ in range(p.num_layers))
        self.norm = nn.RMSNorm(p.hidden_size, eps=1e-5)
        self.out = nn.Linear(p.hidden_size, vocab_size, bias=False)
        if p.tie_embeddings:
            self.out.weight = self.embed.weight
        head_dim = p.hidden_size // p.num_attention_heads
        inv = 1.0 / 10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(seq_length, dtype=torch.float32), inv)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.out(self.norm(x)).float()
        return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")


# -- timing --------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def _timed_steps(step: Any, batches: list[Any], device: torch.device, clock: str) -> float:
    """Seconds (wall, or this process's CPU time) for one optimizer step per batch."""
    now = _CLOCKS[clock]
    _sync(device)
    t0 = now()
    for batch in batches:
        step(batch)
    _sync(device)
    return now() - t0


def _train_step(model: nn.Module, loss_of: Any, dtype: torch.dtype, device: torch.device) -> Any:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")

    def step(batch: Any) -> None:
        opt.zero_grad(set_to_none=True)
        ctx = (
            torch.autocast(device_type=device.type, dtype=dtype)
            if dtype != torch.float32
            else torch.autocast(device_type=device.type, enabled=False)
        )
        with ctx:
            loss = loss_of(model, batch).float().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def bench_models(cfg: ProxyConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Alternate timed repeats of the megatron-core and the plain model; medians of each."""
    from regmix_plugin.proxy.cpu_compat import seed_model_parallel
    from regmix_plugin.proxy.model import (
        build_model,
        layer_spec_name,
        token_losses,
        uses_fused_loss,
    )
    from regmix_plugin.proxy.runtime import proxy_runtime

    preset = cfg.model_preset()
    with proxy_runtime(cfg) as rt:
        device, dtype = rt.device, rt.dtype
        seed_model_parallel(0, device)
        fused = uses_fused_loss(device, dtype)  # as the trainer: fused cross-entropy on CUDA bf16
        megatron = build_model(preset, cfg, device, fused_loss=fused)
        plain = PlainGPT(preset, cfg.vocab_size, cfg.seq_length).to(device)
        n_meg = sum(p.numel() for p in megatron.parameters())
        n_plain = sum(p.numel() for p in plain.parameters())
        if n_meg != n_plain:
            raise SystemExit(f"shape mismatch: megatron {n_meg} vs plain {n_plain} parameters")
        s = cfg.seq_length
        mask = torch.triu(torch.ones(1, 1, s, s, dtype=torch.bool, device=device), diagonal=1)
        pos = torch.arange(s, device=device).unsqueeze(0).expand(args.micro_batch_size, s)
        gen = torch.Generator().manual_seed(0)
        batches = [
            torch.randint(0, cfg.vocab_size, (args.micro_batch_size, s + 1), generator=gen).to(
                device
            )
            for _ in range(args.steps)
        ]
        meg_step = _train_step(
            megatron,
            lambda m, t: token_losses(m, t[:, :-1], pos, mask, t[:, 1:], fused=fused),
            dtype,
            device,
        )
        plain_step = _train_step(plain, lambda m, t: m(t[:, :-1], t[:, 1:]), dtype, device)
        for step in (meg_step, plain_step):  # warm up (allocator, kernels, autotuning)
            _timed_steps(step, batches[:2], device, args.clock)
        times: dict[str, list[float]] = {"megatron": [], "plain": []}
        for _ in range(args.repeats):
            times["megatron"].append(_timed_steps(meg_step, batches, device, args.clock))
            times["plain"].append(_timed_steps(plain_step, batches, device, args.clock))
        tokens = args.steps * args.micro_batch_size * s
        med = {k: statistics.median(v) for k, v in times.items()}
        return {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(),
            "precision": str(dtype).replace("torch.", ""),
            "layer_spec": layer_spec_name(cfg, device),
            "fused_loss": fused,
            "attention": cfg.attention,
            "clock": args.clock,
            "num_parameters": n_meg,
            "tokens_per_repeat": tokens,
            "plain_tokens_per_s": tokens / med["plain"],
            "megatron_tokens_per_s": tokens / med["megatron"],
            "megatron_over_plain": med["plain"] / med["megatron"],
            "seconds": times,
        }


def bench_train_proxy(cfg_section: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Tokens per second of the whole ``train_proxy`` on a real corpus written to a temp dir."""
    from regmix_plugin.corpus import write_indexed_dataset
    from regmix_plugin.domains import load_catalogue
    from regmix_plugin.proxy.train import proxy_timings, train_proxy
    from regmix_plugin.study import study_from_dict

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        entries = []
        tokens_per_domain = max(200_000, 4 * args.num_tokens)
        for name in ("a", "b", "c"):
            docs, total = [], 0
            while total < tokens_per_domain:
                n = int(rng.integers(256, 2048))
                docs.append(rng.integers(0, min(cfg_section["vocab_size"], 65_000), size=n))
                total += n
            prefix = Path(tmp) / f"{name}_text_document"
            write_indexed_dataset(prefix, docs)
            entries.append({"name": name, "prefixes": [str(prefix)]})
        study = {
            "domains": {"num_target_tokens": 10**9, "entries": entries},
            "proxy": {
                **cfg_section,
                "num_tokens": args.num_tokens,
                "split": "90,10,0",
                "num_eval_tokens": cfg_section["seq_length"] * 4,
                "log_interval": 10**6,
                "checkpoint_interval": 0,
                "keep_checkpoint": False,
            },
        }
        typed = study_from_dict(study, Path(tmp) / "study.yaml")
        catalogue = load_catalogue(typed.require("domains"))
        weights = {"a": 0.5, "b": 0.3, "c": 0.2}
        runs = []
        for r in range(args.repeats):
            train_proxy(typed.require("proxy"), catalogue, weights, f"bench{r}", Path(tmp) / str(r))
            runs.append(proxy_timings(Path(tmp) / str(r))["tokens_per_second"])
        return {"train_proxy_tokens_per_s": statistics.median(runs), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument(
        "--clock",
        choices=list(_CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (steadier on a shared machine; CPU only)",
    )
    parser.add_argument("--attention", choices=["sdpa", "megatron"], default="sdpa")
    parser.add_argument(
        "--num-tokens", type=int, default=0, help="train_proxy run length (0: skip that part)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    section = {
        "vocab_size": args.vocab_size,
        "preset": args.preset,
        "seq_length": args.seq_length,
        "micro_batch_size": args.micro_batch_size,
        "global_batch_size": args.micro_batch_size,
        "num_tokens": args.micro_batch_size * args.seq_length,
        "num_eval_tokens": args.seq_length + 1,
        "device": args.device,
        "precision": args.precision,
        "num_threads": args.threads,
        "attention": args.attention,
    }
    cfg = from_dict(ProxyConfig, section, "proxy")
    result: dict[str, Any] = {"preset": args.preset, "seq_length": args.seq_length}
    result["micro_batch_size"] = args.micro_batch_size
    result.update(bench_models(cfg, args))
    if args.num_tokens:
        result.update(bench_train_proxy(section, args))
        result["train_proxy_over_plain"] = (
            result["train_proxy_tokens_per_s"] / result["plain_tokens_per_s"]
        )
    print(
        f"{args.preset} on {result['device_name']} ({result['precision']}, "
        f"{result['threads']} threads, {args.attention} attention, {args.clock} clock), "
        f"{result['num_parameters']:,} parameters, seq {args.seq_length} x batch "
        f"{args.micro_batch_size}, medians of {args.repeats}:"
    )
    print(f"  plain PyTorch GPT     {result['plain_tokens_per_s']:>12,.0f} tokens/s")
    print(
        f"  megatron-core proxy   {result['megatron_tokens_per_s']:>12,.0f} tokens/s"
        f"   ratio {result['megatron_over_plain']:.3f}"
    )
    if args.num_tokens:
        print(
            f"  train_proxy (all in)  {result['train_proxy_tokens_per_s']:>12,.0f} tokens/s"
            f"   ratio {result['train_proxy_over_plain']:.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if math.isfinite(result["megatron_over_plain"]) else 1


if __name__ == "__main__":
    sys.exit(main())
