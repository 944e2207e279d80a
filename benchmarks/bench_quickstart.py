"""Wall time of the quickstart (`regmix run configs/quickstart.yaml`), stage by stage.

Runs the bundled default from nothing (a fresh run directory and a fresh synthetic corpus, in a
temporary folder) in a subprocess, as a newcomer's `make quickstart` would from a set-up
environment, and reads each stage's time from its completion marker. Target: at most 10 minutes
on the 2-core reference machine.

    python benchmarks/bench_quickstart.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="run in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="regmix-quickstart-"))
    work.mkdir(parents=True, exist_ok=True)
    study = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    # The same study, with every path under the work folder (the config's own paths point at
    # ../runs relative to configs/).
    text = (ROOT / "configs" / "quickstart.yaml").read_text().replace("../runs/", "runs/")
    config = work / "quickstart.yaml"
    config.write_text(text)
    run_dir = work / yaml.safe_load(text)["run_dir"]
    assert study["run_dir"] == "../runs/quickstart"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "regmix_plugin", "run", str(config)],
        cwd=work,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        return 1
    # Timings are in the console output ("<stage> done in S s"), never in the artifacts.
    rows = [
        (m.group(1), float(m.group(2)))
        for m in re.finditer(r"^(\w+)\s+done in ([0-9.]+) s$", proc.stdout, re.MULTILINE)
    ]
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    # What the console showed (progress lines redrawn in place are one line each here).
    console = ROOT / "benchmarks" / "out" / "quickstart_console.txt"
    console.parent.mkdir(parents=True, exist_ok=True)
    console.write_text(proc.stdout, encoding="utf-8")
    load = os.getloadavg()[0]
    print(f"quickstart on {os.cpu_count()} cores (load average at the end {load:.1f})\n")
    print("| stage | seconds |")
    print("|---|---:|")
    for stage, seconds in rows:
        print(f"| {stage} | {seconds:.1f} |")
    print(f"| **total (process wall time)** | **{total:.1f}** |")
    print(f"\ntarget: at most {TARGET_S:.0f} s -> {'met' if total <= TARGET_S else 'NOT met'}")
    print("\n| mixture | measured target loss, mean ± std over seeds | L1 to planted optimum |")
    print("|---|---:|---:|")
    for name, r in evaluation["runs"].items():
        mean, std = r.get("mean"), r.get("std")
        cell = "-" if mean is None else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")
        print(f"| {name} | {cell} | {r.get('l1_to_planted', float('nan')):.3f} |")
    level = evaluation.get("level", 0.95)
    print(f"\n| baseline | baseline - chosen | {level:.0%} paired interval | verdict |")
    print("|---|---:|---:|---|")
    for name, c in (evaluation.get("comparisons") or {}).items():
        interval = "-" if c["lo"] is None else f"[{c['lo']:+.4f}, {c['hi']:+.4f}]"
        print(f"| {name} | {c['mean_difference']:+.4f} | {interval} | {c['verdict']} |")
    print(f"\nchosen beats every baseline: {evaluation['chosen_beats_all']}")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "quickstart.json").write_text(
        json.dumps({"stages": dict(rows), "total_s": total, "evaluation": evaluation}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
