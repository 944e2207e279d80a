"""Run in the NeMo environment (.venv-nemo): build NeMo 2's data module from emitted configs.

Usage: ``python check_pretraining_data.py BLEND_DIR``. Constructs ``llm.PreTrainingDataModule``
from ``nemo2_data.yaml`` (as a NeMo-Run ``run.Config`` built with fiddle, and directly) and from
the ``nemo2_data.py`` snippet (its ``data_config()`` and ``data_module()``), and prints one JSON
object: for each way, the blend (prefixes, weights) and split that the module hands to
megatron-core. It imports nothing from regmix_plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import yaml


def _blend(dm) -> dict:
    kw = dm.build_kwargs
    prefixes, weights = kw["blend"]
    return {
        "prefixes": list(prefixes),
        "weights": None if weights is None else [float(w) for w in weights],
        "split": kw.get("split"),
        "class": f"{type(dm).__module__}.{type(dm).__qualname__}",
    }


def main(blend_dir: str) -> int:
    import fiddle as fdl
    import nemo_run as run
    from nemo.collections.common.tokenizers.null_tokenizer import NullTokenizer

    tokenizer = NullTokenizer(vocab_size=256)
    common = {"seq_length": 16, "micro_batch_size": 1, "global_batch_size": 1}
    folder = Path(blend_dir)
    out: dict[str, dict] = {}

    doc = yaml.safe_load((folder / "nemo2_data.yaml").read_text(encoding="utf-8"))
    target = doc.pop("_target_")
    module_name, cls_name = target.rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)

    cfg = run.Config(cls, **doc, **common)
    cfg.tokenizer = tokenizer
    out["yaml_run_config"] = _blend(fdl.build(cfg))
    out["yaml_direct"] = _blend(cls(**doc, **common, tokenizer=tokenizer))

    spec = importlib.util.spec_from_file_location("nemo2_data", folder / "nemo2_data.py")
    assert spec is not None and spec.loader is not None
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    snippet_cfg = snippet.data_config(**common)
    snippet_cfg.tokenizer = tokenizer
    out["snippet_config"] = _blend(fdl.build(snippet_cfg))
    out["snippet_module"] = _blend(snippet.data_module(tokenizer=tokenizer, **common))
    print("REGMIX_RESULT " + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
