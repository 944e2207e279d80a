"""Proxy models: small megatron-core GPTs trained on one mixture at its exact ratios.

``presets`` names the model shapes, ``config`` the ``proxy:`` YAML section, ``data`` builds the
training blend and the held-out evaluation sets from real ``.bin/.idx`` prefixes, ``model`` the
``GPTModel``, ``runtime`` the process group, device and seeds (with the CPU workarounds of
``cpu_compat``), and ``train`` the loop, the checkpoints and ``metrics.json``.

Nothing here imports torch or megatron-core at package import time.
"""
