"""Run under openMind's Python: the token ids openMind 1.0.0 builds for a recipe, through its own code path.

    python tests/openmind_dump_tokens.py RECIPE.yaml OUT.json [cutoff_len ...]

Run from the directory the recipe's paths are relative to, with Baichuan-M1 registered
(``m1-ascend openmind-register``). The steps are those of ``flow/trainer/sft_trainer.py``
``run_sft``: arguments, tokenizer, config (which sets the model group from ``model_type``),
template, dataset, and the collator it builds. One entry per ``cutoff_len`` (default: the
recipe's). ``tests/test_openmind_tokens.py`` compares ``m1-ascend finetune``'s data with this,
live in the slow test and against a recording (``tests/data/openmind_tokens.json``) otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import openmind
import transformers
from openmind.flow.arguments import get_all_args
from openmind.flow.datasets.loader import get_dataset
from openmind.flow.datasets.template import TEMPLATES
from openmind.flow.model.loader import get_config, get_tokenizer
from openmind.flow.model.model_registry import get_template_type
from openmind.utils.constants import IGNORE_INDEX
from transformers import DataCollatorForSeq2Seq


def dump(recipe: str, cutoffs: list[int]) -> dict:
    dataset_args, model_args, training_args, finetune_args = get_all_args(recipe)
    tokenizer = get_tokenizer(model_args)
    get_config(model_args)  # as get_model does: model_group = config.model_type
    template_name = get_template_type(model_args)
    template = TEMPLATES[template_name]
    collator = DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True, pad_to_multiple_of=8,
                                      label_pad_token_id=IGNORE_INDEX)
    vocab = Path(tokenizer.vocab_file).read_bytes()
    info = {}
    for path in dataset_args.custom_dataset_info.split(","):
        info.update(json.loads(Path(path.strip()).read_text(encoding="utf-8")))
    data = {}
    for name in dataset_args.dataset.split(","):
        entry = info[name.strip()]
        path = Path(entry["local_path"]) / entry["file_name"]
        data[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    runs = []
    for cutoff in cutoffs or [dataset_args.cutoff_len]:
        dataset_args.cutoff_len = cutoff
        dataset = get_dataset(dataset_args, training_args, finetune_args, tokenizer, template)
        examples = [{k: list(dataset[i][k]) for k in ("input_ids", "labels", "attention_mask")}
                    for i in range(len(dataset))]
        batch = collator([examples[0], examples[-1]])
        runs.append({"cutoff_len": cutoff, "examples": examples,
                     "collated_first_and_last": {k: v.tolist() for k, v in batch.items()}})
    return {"openmind": openmind.__version__, "transformers": transformers.__version__,
            "model_group": model_args.model_group, "template": template_name,
            "template_fields": {k: getattr(template, k) for k in ("system_template", "user_template",
                                                                 "assistant_template", "separator_template",
                                                                 "default_system")},
            "tokenizer_class": type(tokenizer).__name__, "tokenizer_model_sha256": hashlib.sha256(vocab).hexdigest(),
            "dataset": dataset_args.dataset, "custom_dataset_info": dataset_args.custom_dataset_info,
            "data_sha256": data, "runs": runs}


if __name__ == "__main__":
    result = dump(sys.argv[1], [int(c) for c in sys.argv[3:]])
    Path(sys.argv[2]).write_text(json.dumps(result) + "\n", encoding="utf-8")
