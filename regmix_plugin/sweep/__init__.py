"""Proxy sweeps: one proxy run per mixture through a launcher (local, NeMo-Run, Slurm).

* :mod:`~regmix_plugin.sweep.runner` plans, launches and waits (``regmix sweep``);
* :mod:`~regmix_plugin.sweep.registry` reads done / running / failed / pending from the run
  folders (``regmix status``);
* :mod:`~regmix_plugin.sweep.collect` gathers the results table (``regmix collect``), also from
  runs launched with a team's own Megatron-LM or NeMo scripts;
* :mod:`~regmix_plugin.sweep.worker` is the process every launcher starts for a run.

Nothing is imported here: the worker, started once per proxy run, must not pay for numpy, yaml
or the sweep driver (``python -X importtime -m regmix_plugin.sweep.worker``).
"""
