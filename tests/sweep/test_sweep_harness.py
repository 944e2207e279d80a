"""``sweep.harness_command``: a command run after each proxy trained, whose lm-evaluation-harness
result files ``regmix collect`` reads (issue 12 part 3).

The harness here is a stand-in script (named as such): it writes a result file in the layout and
key format of lm-evaluation-harness 0.4 (``<output>/<model>/results_<time>.json``, keys
``<metric>,<filter>``). tests/test_harness.py reads files written by the real harness.
"""

from __future__ import annotations

import json
from pathlib import Path

from sweep_helpers import fake_command, run_sweep

from regmix_plugin.sweep.collect import collect_runs
from regmix_plugin.sweep.registry import sweep_status

STAND_IN_HARNESS = """
import json, sys
from pathlib import Path
run_dir, code = Path(sys.argv[1]), int(sys.argv[2])
if code:
    sys.exit(code)
assert (run_dir / "metrics.json").is_file(), "the harness runs after training"
acc = len(run_dir.name) / 100
out = run_dir / "lm_eval" / "tiny-model"
out.mkdir(parents=True, exist_ok=True)
doc = {"results": {"tiny_qa": {"alias": "tiny_qa", "acc,none": acc, "acc_stderr,none": "N/A"}}}
(out / "results_2026-01-01T00-00-00.json").write_text(json.dumps(doc))
"""


def _section(script: Path, code: int) -> dict:
    return {
        "launcher": "local",
        "command": fake_command(),
        "harness_command": f"{{python}} {script} {{run_dir}} {code}",
        "poll_interval_s": 0.2,
        "num_retries": 0,
    }


def test_harness_runs_after_training_and_collect_reads_it(make_sweep, tmp_path: Path) -> None:
    script = tmp_path / "stand_in_harness.py"
    script.write_text(STAND_IN_HARNESS)
    s = make_sweep.write(_section(script, 0), num_mixtures=2)
    assert run_sweep(s.config).ok
    spec = json.loads((s.sweep_dir / "runs" / s.ids[0] / "command.json").read_text())
    assert spec["harness_argv"][-3:] == [str(script), str(s.sweep_dir / "runs" / s.ids[0]), "0"]
    t = collect_runs(s.sweep_dir).table
    assert "eval/tiny_qa/acc" in t.columns and "eval/tiny_qa/acc_stderr" not in t.columns
    for i, mid in enumerate(t.ids):
        assert t.column("eval/tiny_qa/acc")[i] == len(mid) / 100


def test_a_failing_harness_fails_the_run(make_sweep, tmp_path: Path) -> None:
    script = tmp_path / "stand_in_harness.py"
    script.write_text(STAND_IN_HARNESS)
    s = make_sweep.write(_section(script, 3), num_mixtures=1)
    assert not run_sweep(s.config).ok
    status = sweep_status(s.sweep_dir)
    assert status.counts["failed"] == 1
    attempts = json.loads((s.sweep_dir / "runs" / s.ids[0] / "attempts.json").read_text())
    assert "sweep.harness_command" in attempts[-1]["error"]
    assert not (s.sweep_dir / "runs" / s.ids[0] / "DONE").exists()
