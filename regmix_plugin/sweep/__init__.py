"""Proxy sweeps: one proxy run per mixture through a launcher (local, NeMo-Run, Slurm).

* :func:`run_sweep` plans, launches and waits (``regmix sweep``);
* :func:`sweep_status` reads done / running / failed / pending from the run folders
  (``regmix status``);
* :func:`collect` / :func:`write_results` gather the results table (``regmix collect``), also from
  runs launched with a team's own Megatron-LM or NeMo scripts.
"""

from regmix_plugin.sweep.collect import Collected, collect, collect_runs, write_results
from regmix_plugin.sweep.config import SweepConfig
from regmix_plugin.sweep.registry import SweepStatus, sweep_status
from regmix_plugin.sweep.runner import SweepPlan, SweepResult, make_plan, plan_sweep, run_sweep

__all__ = [
    "Collected",
    "SweepConfig",
    "SweepPlan",
    "SweepResult",
    "SweepStatus",
    "collect",
    "collect_runs",
    "make_plan",
    "plan_sweep",
    "run_sweep",
    "sweep_status",
    "write_results",
]
