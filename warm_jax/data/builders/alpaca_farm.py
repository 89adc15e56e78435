"""AlpacaFarm (Dubois et al. 2023, arXiv:2305.14387): human pairwise preferences on Alpaca
instructions and the instruction splits used for SFT / RLHF; the data of the RLP paper
(Lang et al. 2024: reward model on the human preferences, policy RL on the unlabelled split).

Source: https://huggingface.co/datasets/tatsu-lab/alpaca_farm (CC BY-NC 4.0), pinned revision.
Every file is one JSON array:

* `alpaca_human_preference.json`: {"instruction", "input", "output_1", "output_2",
  "preference": 1 | 2, ...} (about 9.7k pairs; `input` may be "").
* `alpaca_instructions/{sft,preference,unlabeled,val}.json`: {"instruction", "input", "output"}
  (10k / 20k / 20k / 2k; `output` is the Alpaca reference answer).
* `alpaca_farm_evaluation.json`: {"instruction", "input", "output", ...} (805 evaluation prompts;
  `output` is the reference model's answer).

Configs:
* `human_preference` (default): split `train` (the single split of the file), preference records:
  `prompt` = the instruction (and input) in the Alpaca prompt template, `chosen` = the preferred
  output, `rejected` = the other, `id` = "alpaca_human_preference.json:<index>".
* `instructions`: splits `sft`, `preference`, `unlabeled`, `val`, `evaluation`, prompt records with
  `response` = the file's `output`; `unlabeled` is RLP's policy-training prompt set.

Checksums: none published (the files are not LFS objects). Record them with a first build under
`tfds.download.DownloadConfig(register_checksums=True)` (writes `alpaca_farm_checksums.tsv`).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from warm_jax.data import schema
from warm_jax.data.builders import base

NAME = "alpaca_farm"
REVISION = "e576524ca841af3c36fd6912e68e5920430928c1"
BASE_URL = f"https://huggingface.co/datasets/tatsu-lab/alpaca_farm/resolve/{REVISION}/"
PREFERENCE_FILE = "alpaca_human_preference.json"
INSTRUCTION_FILES = {
    "sft": "alpaca_instructions/sft.json",
    "preference": "alpaca_instructions/preference.json",
    "unlabeled": "alpaca_instructions/unlabeled.json",
    "val": "alpaca_instructions/val.json",
    "evaluation": "alpaca_farm_evaluation.json",
}
SHA256: dict[str, str] = {}  # none published: see base.RealDataBuilder._checksums_path

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:")


def format_prompt(instruction: str, input_text: str = "") -> str:
  """The Alpaca prompt template (the one AlpacaFarm's models were trained with)."""
  if input_text.strip():
    return PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
  return PROMPT_NO_INPUT.format(instruction=instruction)


def _prompt(raw, *, source, index) -> str:
  instruction = schema.get(raw, "instruction", str, source=source, index=index)
  inp = raw.get("input") if isinstance(raw, dict) else None
  if inp is not None and not isinstance(inp, str):
    raise ValueError(f"{schema.where(source, index)}: field 'input' must be str, "
                     f"got {type(inp).__name__}")
  return format_prompt(instruction, inp or "")


@dataclasses.dataclass(eq=False)
class AlpacaFarmConfig(tfds.core.BuilderConfig):
  kind: str = schema.PREFERENCE


class AlpacaFarm(base.RealDataBuilder):
  """AlpacaFarm human preferences (preference records) and instruction splits (prompt records)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      AlpacaFarmConfig(name="human_preference", kind=schema.PREFERENCE,
                       description="alpaca_human_preference.json as preference pairs"),
      AlpacaFarmConfig(name="instructions", kind=schema.PROMPT,
                       description="the instruction splits (sft, preference, unlabeled, val, "
                                   "evaluation) as prompts with reference outputs"),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "human_preference"

  @property
  def KIND(self):  # noqa: N802  (read by RealDataBuilder._validated)
    return self.builder_config.kind

  def _info(self):
    extra = {} if self.KIND == schema.PREFERENCE else {"response": tfds.features.Text()}
    return self._info_from(
        description=__doc__.split("\n\n")[0],
        features=base.text_features(self.KIND, **extra),
        homepage="https://github.com/tatsu-lab/alpaca_farm",
        citation="Dubois et al. 2023, AlpacaFarm, arXiv:2305.14387")

  def _split_generators(self, dl_manager):
    if self.KIND == schema.PREFERENCE:
      paths = base.download(dl_manager, {"train": BASE_URL + PREFERENCE_FILE}, SHA256)
      return {"train": self._generate_examples(paths["train"], PREFERENCE_FILE)}
    urls = {split: BASE_URL + f for split, f in INSTRUCTION_FILES.items()}
    paths = base.download(dl_manager, urls, SHA256)
    return {split: self._generate_examples(paths[split], INSTRUCTION_FILES[split])
            for split in INSTRUCTION_FILES}

  def _generate_examples(self, path, fname):
    if self.KIND == schema.PREFERENCE:
      yield from self._pairs(path, fname)
    else:
      yield from self._prompts(path, fname)

  def _pairs(self, path, fname):
    for i, raw in schema.iter_json_array(path):
      kw = dict(source=path, index=i)
      pref = schema.choice(raw, "preference", (1, 2), **kw)
      outs = [schema.get(raw, f"output_{k}", str, **kw) for k in (1, 2)]
      rid = f"{fname}:{i}"
      record = {"id": rid, "prompt": _prompt(raw, **kw),
                "chosen": outs[pref - 1].strip(), "rejected": outs[2 - pref].strip()}
      yield rid, self._validated(record, path, i)

  def _prompts(self, path, fname):
    for i, raw in schema.iter_json_array(path):
      kw = dict(source=path, index=i)
      rid = f"{fname}:{i}"
      record = {"id": rid, "prompt": _prompt(raw, **kw),
                "response": schema.get(raw, "output", str, **kw).strip()}
      yield rid, self._validated(record, path, i)
