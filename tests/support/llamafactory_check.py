"""Run LLaMA-Factory's own data path over exported datasets; prints one JSON report per dataset.

Usage: python -m tests.support.llamafactory_check JOBS.json, where JOBS.json lists
`{"dataset_dir": ..., "name": ..., "media_dir": ... or null}`.

Per dataset, what LLaMA-Factory does when a training run starts, through its own functions:
- `get_dataset_list` reads the `dataset_info.json` entry (parser);
- `_load_single_dataset` loads the data file with HF `datasets` and runs its ShareGPT converter, which
  resolves image paths against `media_dir`;
- for every converted record, the multimodal plugin's `_validate_messages` (images vs `<image>`
  tokens); a ValueError there is a rejected record (counted, first messages kept);
- `get_dataset` (stage `sft`): the whole preprocessing LLaMA-Factory runs before training — the
  `llava` template's plugin `process_messages` reads each image file through the image processor and
  expands its `<image>` token, then tokenisation with labels. It stops at the first bad record.

Runs in its own process (the test suite calls it with subprocess) because of two stand-ins, both for
things that cannot run on this machine, not for anything under test:
- `torchaudio`: LLaMA-Factory's plugin module imports it at the top but only audio models use it;
  PyPI's torchaudio wheels are built against another torch than the CPU wheel installed here and fail to
  load, so an empty module stands in for it;
- the model: no checkpoint can be downloaded offline, so the tokenizer is a word-level one built in
  memory (its few special tokens; every word is `<unk>`) and the processor is transformers' real
  `LlavaProcessor` around a real `CLIPImageProcessor` at LLaVA-1.5's 336 px / patch 14 settings.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
import tempfile
import types
from typing import Any

os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # LLaMA-Factory's switch: trl etc. are for training only
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")


def _stand_in_for_torchaudio() -> None:
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub


def tiny_tokenizer_and_processor() -> tuple[Any, Any]:
    """A word-level tokenizer (special tokens only) and transformers' LLaVA processor around it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

    special = ["<unk>", "</s>", "<pad>", "<image>"]
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(special)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>",
                                        pad_token="<pad>", additional_special_tokens=["<image>"])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>")
    return tokenizer, processor


def check(job: dict[str, Any], work: str) -> dict[str, Any]:
    """LLaMA-Factory's verdict on one exported dataset."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    tokenizer, processor = tiny_tokenizer_and_processor()
    data_args = DataArguments(dataset=job["name"], dataset_dir=job["dataset_dir"], media_dir=job.get("media_dir"),
                              template="llava", cutoff_len=4096)
    model_args = ModelArguments(model_name_or_path="tiny-in-memory")
    training_args = Seq2SeqTrainingArguments(output_dir=os.path.join(work, "trainer"), report_to=[])
    template = get_template_and_fix_tokenizer(tokenizer, data_args)

    (attr,) = get_dataset_list([job["name"]], job["dataset_dir"])
    aligned = _load_single_dataset(attr, model_args, data_args, training_args)
    report: dict[str, Any] = {"name": job["name"], "columns": {"messages": attr.messages, "images": attr.images},
                              "records": len(aligned), "accepted": 0, "errors": [], "images": []}
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    for rec in aligned:
        images = rec["_images"] or []
        try:  # the count check every multimodal plugin runs first (the image files are read below)
            template.mm_plugin._validate_messages(rec["_prompt"] + rec["_response"], images, [], [])
        except ValueError as e:
            if len(report["errors"]) < 3:
                report["errors"].append(str(e)[:300])
            continue
        report["accepted"] += 1
        report["images"].extend(images)
    try:
        module = get_dataset(template, model_args, data_args, training_args, stage="sft",
                             tokenizer=tokenizer, processor=processor)
        train = module["train_dataset"]
        report["tokenized"] = len(train)
        # the plugin read every image through the processor and expanded its one <image> to this many tokens
        report["tokenized_image_tokens"] = sorted({row["input_ids"].count(image_token) for row in train})
        report["trained_label_tokens"] = min(sum(1 for t in row["labels"] if t != -100) for row in train)
    except (ValueError, RuntimeError) as e:
        report["tokenized"] = 0
        report["get_dataset_error"] = str(e)[:300]
    return report


def main(argv: list[str]) -> int:
    _stand_in_for_torchaudio()
    with open(argv[1], encoding="utf-8") as f:
        jobs = json.load(f)
    with tempfile.TemporaryDirectory() as work:
        os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(work, "hf"))
        for job in jobs:
            print("LLAMAFACTORY_REPORT " + json.dumps(check(job, work)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
