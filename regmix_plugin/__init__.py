"""regmix-plugin: RegMix data-mixture search for the Megatron/NeMo stack.

The pipeline, stage by stage::

    domains -> sample mixtures -> proxy runs (sweep) -> collect -> fit -> optimize -> emit -> report

Importing the package has no side effects and does not import torch or megatron-core.
"""

__version__ = "0.1.0"
