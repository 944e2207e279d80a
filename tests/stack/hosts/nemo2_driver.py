"""Launch a NeMo 2 data step on 2 ranks through NeMo-Run's LocalExecutor (torchrun launcher).

    python nemo2_driver.py --module stock|regmix [--old-advice] --paths-json F --out DIR \\
        --cache DIR --workdir DIR

``--module stock`` uses NeMo's ``PreTrainingDataModule``, ``regmix`` the plugin's
``ExactRatioPreTrainingDataModule``. ``--old-advice`` calls ``use_exact_ratio_blending()`` here
in the driver before launching, as the old README said ("in the script that runs on every rank").
"""

import argparse
import json
import os

import nemo_run as run
from nemo.collections.common.tokenizers.null_tokenizer import NullTokenizer
from nemo.collections.llm.gpt.data.pre_training import PreTrainingDataModule
from nemo2_rank import build_in_rank


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--module", choices=("stock", "regmix"), required=True)
    parser.add_argument("--old-advice", action="store_true")
    parser.add_argument("--paths-json", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    if args.old_advice:
        from regmix_plugin.megatron import use_exact_ratio_blending

        use_exact_ratio_blending()
    if args.module == "regmix":
        from regmix_plugin.nemo2 import ExactRatioPreTrainingDataModule as cls
    else:
        cls = PreTrainingDataModule
    with open(args.paths_json) as f:
        blend = json.load(f)
    data = run.Config(
        cls,
        paths=blend["paths"],
        split=blend["split"],
        seq_length=8,
        micro_batch_size=12,
        global_batch_size=12,
        num_workers=0,
        tokenizer=run.Config(NullTokenizer, vocab_size=128),
        index_mapping_dir=args.cache,
    )
    task = run.Partial(build_in_rank, data=data, out=args.out)
    env = {
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "TORCH_CPP_LOG_LEVEL": "ERROR",
    }
    executor = run.LocalExecutor(ntasks_per_node=2, launcher="torchrun", env_vars=env)
    with run.Experiment(
        "regmix-nemo2", executor=executor, base_dir=args.workdir, log_level="WARN"
    ) as exp:
        exp.add(task, name="data")
        exp.run(detach=False)


if __name__ == "__main__":
    main()
