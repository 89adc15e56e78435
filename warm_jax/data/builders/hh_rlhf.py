"""Anthropic HH-RLHF: human preferences between two assistant replies to the same dialogue
(Bai et al. 2022, arXiv:2204.05862), the preference data of DPO's dialogue experiments.

Source: https://huggingface.co/datasets/Anthropic/hh-rlhf (also github.com/anthropics/hh-rlhf,
but there the files are Git LFS objects and raw.githubusercontent.com serves only the pointer).
Each subset has `train.jsonl.gz` and `test.jsonl.gz`, gzipped JSON lines:

    {"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: <reply A>",
     "rejected": "\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: <reply B>"}

Both texts are the full dialogue; they share everything up to the final "\\n\\nAssistant:". Record:
`prompt` = that shared dialogue including the final "Assistant:" (leading blank lines removed),
`chosen` / `rejected` = the final replies (stripped), `id` = "<subset>/<file>:<line>". A pair
whose two dialogues differ before the final assistant turn, or without an assistant turn, is an
error naming the file and line (never skipped). The red-team transcripts are not preference data
and are not included.

Configs: `helpful_base` (default), `harmless_base`, `helpful_online`, `helpful_rejection_sampled`
and `all` (the four concatenated, as Hugging Face's default). Splits: train, test. Each has a
`<config>_filtered` twin that drops malformed pairs instead of stopping, for the real files, which
are known to hold a few pairs with empty turns or dialogues that differ before the last turn; every
dropped pair is logged and listed (file, line, reason) in the build's metadata.json['skipped'].
URLs are pinned to the revision that added the .jsonl.gz files; SHA-256 values below come from the
Hugging Face LFS pages of byte-identical duplicates of that repository (helpful-rejection-sampled:
unknown; a build with `DownloadConfig(register_checksums=True)` records sizes and SHA-256 of all
in `hh_rlhf_checksums.tsv`).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from warm_jax.data import schema
from warm_jax.data.builders import base

NAME = "hh_rlhf"
REVISION = "d8d97fe9e96fcd19cc8fc31bd04ee393422abfbb"
BASE_URL = f"https://huggingface.co/datasets/Anthropic/hh-rlhf/resolve/{REVISION}/"
SUBSETS = ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled")
SPLITS = ("train", "test")
ASSISTANT = "\n\nAssistant:"


def url(subset: str, split: str) -> str:
  return f"{BASE_URL}{subset}/{split}.jsonl.gz"


SHA256 = {
    url("helpful-base", "train"): "518a5bf288456fc9f3b7c980c54116fba0c52f274d3f4d344675d83e4058f6f4",
    url("helpful-base", "test"): "8be3fc1a13b27901631696f2be6f184c799f1baeaf145f53ac5db24960adc37b",
    url("harmless-base", "train"): "bf3e1ecd3db61bf21d190f69351d26670c67aababa0fd282fa008c17a7202217",
    url("harmless-base", "test"): "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
    url("helpful-online", "train"): "0994d18b82083f5c084ce04071b683958a724df8c7215ab1d851986642d36a2a",
    url("helpful-online", "test"): "39a475cc7e0df972902f8e3a0972726fce826ac65369bda8c671de4330c60a10",
}


def split_dialogue(text: str, field: str, *, source, index) -> tuple[str, str]:
  """(prompt up to and including the last '\\n\\nAssistant:', the final reply)."""
  i = text.rfind(ASSISTANT)
  if i < 0:
    raise ValueError(f"{schema.where(source, index)}: field {field!r} has no "
                     f"{ASSISTANT.strip()!r} turn")
  return text[:i + len(ASSISTANT)].lstrip(), text[i + len(ASSISTANT):].strip()


def to_record(raw, *, rid: str, source, index) -> dict:
  chosen = schema.get(raw, "chosen", str, source=source, index=index)
  rejected = schema.get(raw, "rejected", str, source=source, index=index)
  p_c, r_c = split_dialogue(chosen, "chosen", source=source, index=index)
  p_r, r_r = split_dialogue(rejected, "rejected", source=source, index=index)
  if p_c != p_r:
    raise ValueError(f"{schema.where(source, index)}: field 'rejected' does not share the dialogue "
                     "of field 'chosen' before the final assistant turn")
  return {"id": rid, "prompt": p_c, "chosen": r_c, "rejected": r_r}


@dataclasses.dataclass(eq=False)
class HhRlhfConfig(tfds.core.BuilderConfig):
  subsets: tuple = ()
  skip_invalid: bool = False


def _configs():
  out = []
  for name, subsets, what in [(s.replace("-", "_"), (s,), f"the {s} subset") for s in SUBSETS] + [
      ("all", SUBSETS, "all four subsets")]:
    out.append(HhRlhfConfig(name=name, subsets=subsets, description=what))
    out.append(HhRlhfConfig(
        name=f"{name}_filtered", subsets=subsets, skip_invalid=True,
        description=f"{what}, malformed pairs dropped and listed in metadata.json['skipped']"))
  return out


class HhRlhf(base.RealDataBuilder):
  """Anthropic HH-RLHF preference pairs in the common preference schema."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  KIND = schema.PREFERENCE
  BUILDER_CONFIGS = _configs()
  DEFAULT_BUILDER_CONFIG_NAME = "helpful_base"

  def _info(self):
    return self._info_from(
        description=__doc__.split("\n\n")[0],
        features=base.text_features(self.KIND),
        homepage="https://github.com/anthropics/hh-rlhf",
        citation="Bai et al. 2022, Training a Helpful and Harmless Assistant with RLHF, "
                 "arXiv:2204.05862")

  def _split_generators(self, dl_manager):
    urls = {f"{sub}/{split}": url(sub, split)
            for sub in self.builder_config.subsets for split in SPLITS}
    paths = base.download(dl_manager, urls, SHA256)
    return {split: self._generate_examples([(k, paths[k]) for k in urls if k.endswith("/" + split)])
            for split in SPLITS}

  def _generate_examples(self, files):
    for key, path in files:
      for n, raw in schema.iter_json_lines(path):
        rid = f"{key}.jsonl.gz:{n}"
        record = self._record_or_skip(
            lambda: to_record(raw, rid=rid, source=path, index=n), path, n)  # noqa: B023
        if record is not None:
          yield rid, record
