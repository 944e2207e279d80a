"""A real-text corpus from Debian packages, for studies on text nobody planted.

Ten training domains of clearly different kinds (program sources, C headers, kernel docs, man
pages, an English dictionary, computing glossaries, the King James Bible, English and
international fortunes, WordNet records) and a target set (the Python documentation), tokenised
with a byte-level BPE tokenizer trained here and written as Megatron ``.bin/.idx`` prefixes.

    regmix realtext build runs/realtext-data          # the full corpus
    regmix realtext build runs/realtext-small --preset small

See ``docs/realtext.md`` and :mod:`regmix_plugin.realtext.build`.
"""

from regmix_plugin.realtext.build import (
    DEFAULT_DOMAINS,
    DEFAULT_TARGET,
    PRESETS,
    DomainSpec,
    RealTextConfig,
    build_corpus,
    load_manifest,
    small_config,
)

__all__ = [
    "DEFAULT_DOMAINS",
    "DEFAULT_TARGET",
    "PRESETS",
    "DomainSpec",
    "RealTextConfig",
    "build_corpus",
    "load_manifest",
    "small_config",
]
