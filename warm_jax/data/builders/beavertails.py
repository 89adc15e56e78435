"""BeaverTails / PKU-SafeRLHF (Ji et al. 2023, arXiv:2307.04657): two answers to a possibly harmful
question, labelled separately for helpfulness ('better') and harmlessness ('safer'); the data of
MODPO (Zhou et al. 2023), which uses PKU-SafeRLHF-10K.

Source: Hugging Face datasets of PKU-Alignment (CC BY-NC 4.0), JSON lines, one pair a line:

    {"prompt": ..., "response_0": ..., "response_1": ...,
     "is_response_0_safe": true, "is_response_1_safe": false,
     "better_response_id": 0, "safer_response_id": 1, ...}

(newer releases add source / harm-category / severity fields, which are ignored).

Record: `chosen` = the response preferred under the config's primary objective, `rejected` = the
other, `labels` = {"better": 0|1, "safer": 0|1}: the index in (chosen, rejected) of the response
preferred under each objective (so labels[primary] == 0); extra `is_chosen_safe`,
`is_rejected_safe` (bool); `id` = "<file>:<line>". `prompt` is the raw question: wrap it in a chat
template (MODPO: "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:") in the input pipeline.

Configs (primary objective 'better' unless the name ends in '_safer'):
* `safe_rlhf_10k`, `safe_rlhf_10k_safer`: PKU-SafeRLHF-10K `round0/train.jsonl.xz` (split `train`),
  pinned revision; SHA-256 from its Hugging Face LFS page.
* `safe_rlhf_alpaca7b`, `safe_rlhf_alpaca7b_safer`: PKU-SafeRLHF `data/Alpaca-7B/{train,test}.jsonl`
  (splits `train`, `test`), main revision, no checksum (record with `DownloadConfig(register_checksums=True)`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from warm_jax.data import schema
from warm_jax.data.builders import base

NAME = "beavertails"
OBJECTIVES = ("better", "safer")
REVISION_10K = "c8ee87634695ae44c5fa9bcdc5f1a5e7c5ae8e47"
URLS_10K = {"train": "https://huggingface.co/datasets/PKU-Alignment/PKU-SafeRLHF-10K/resolve/"
                     f"{REVISION_10K}/round0/train.jsonl.xz"}
URLS_ALPACA7B = {s: "https://huggingface.co/datasets/PKU-Alignment/PKU-SafeRLHF/resolve/main/"
                    f"data/Alpaca-7B/{s}.jsonl" for s in ("train", "test")}
SHA256 = {
    URLS_10K["train"]: "f5f42f6f08a1fadbc3fd7c36e627f651782ce0f2f8178361483defa62b79ca06",
}


def to_record(raw, *, primary: str, rid: str, source, index) -> dict:
  kw = dict(source=source, index=index)
  responses = [schema.get(raw, f"response_{k}", str, **kw) for k in (0, 1)]
  safe = [schema.get(raw, f"is_response_{k}_safe", bool, **kw) for k in (0, 1)]
  ids = {o: schema.choice(raw, f"{o}_response_id", (0, 1), **kw) for o in OBJECTIVES}
  c = ids[primary]
  return {
      "id": rid,
      "prompt": schema.get(raw, "prompt", str, **kw),
      "chosen": responses[c].strip(),
      "rejected": responses[1 - c].strip(),
      "labels": {o: 0 if ids[o] == c else 1 for o in OBJECTIVES},
      "is_chosen_safe": safe[c],
      "is_rejected_safe": safe[1 - c],
  }


@dataclasses.dataclass(eq=False)
class BeaverTailsConfig(tfds.core.BuilderConfig):
  urls: tuple = ()  # ((split, url), ...)
  primary: str = "better"


def _configs():
  out = []
  for data, urls in (("safe_rlhf_10k", URLS_10K), ("safe_rlhf_alpaca7b", URLS_ALPACA7B)):
    for primary in OBJECTIVES:
      name = data if primary == "better" else f"{data}_{primary}"
      out.append(BeaverTailsConfig(name=name, urls=tuple(urls.items()), primary=primary,
                                   description=f"{data}, pairs ordered by '{primary}'"))
  return out


class Beavertails(base.RealDataBuilder):
  """PKU-SafeRLHF pairs in the common preference schema with per-objective labels."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  KIND = schema.PREFERENCE
  BUILDER_CONFIGS = _configs()
  DEFAULT_BUILDER_CONFIG_NAME = "safe_rlhf_10k"

  def _info(self):
    return self._info_from(
        description=__doc__.split("\n\n")[0],
        features=base.text_features(self.KIND, labels=base.labels_feature(OBJECTIVES),
                                    is_chosen_safe=np.bool_, is_rejected_safe=np.bool_),
        homepage="https://github.com/PKU-Alignment/beavertails",
        citation="Ji et al. 2023, BeaverTails, arXiv:2307.04657")

  def _split_generators(self, dl_manager):
    urls = dict(self.builder_config.urls)
    paths = base.download(dl_manager, urls, SHA256)
    return {split: self._generate_examples(paths[split], urls[split]) for split in urls}

  def _generate_examples(self, path, url):
    fname = "/".join(url.split("/")[-2:])
    for n, raw in schema.iter_json_lines(path):
      rid = f"{fname}:{n}"
      record = to_record(raw, primary=self.builder_config.primary, rid=rid, source=path, index=n)
      yield rid, self._validated(record, path, n)
