"""RewardBench (Lambert et al. 2024, arXiv:2403.13787) and RewardBench 2 (Malik et al. 2025,
arXiv:2506.01937): reward-model evaluation sets, scored by `warm_jax.rm_eval` through
`python -m warm_jax.evaluate --bench rewardbench_v1|rewardbench_v2`.

Source: the Hugging Face data sets allenai/reward-bench (split `filtered`) and
allenai/reward-bench-2 (split `test`), published as Parquet files (ODC-BY):

    reward-bench   data/filtered-00000-of-00001.parquet
        prompt (str), chosen (str), chosen_model (str), rejected (str), rejected_model (str),
        subset (str), id (int)
    reward-bench-2 data/test-00000-of-00001.parquet
        id (str), prompt (str), chosen (list of str), rejected (list of str), num_correct (int),
        num_incorrect (int), total_completions (int), models (list of str), subset (str),
        additional_metadata (struct)

Parquet is read with pyarrow (`schema.iter_parquet`), which TFDS itself requires: no new
dependency. The files are read from the `main` revision with no published checksum (record one
with `tfds.download.DownloadConfig(register_checksums=True)`: writes `<name>_checksums.tsv`).

Records:
* `reward_bench` (v1): preference records, `id` = the published id as a str, `prompt`, `chosen`,
  `rejected` (the user turn and the two answers, unformatted: a chat template is applied when
  scoring), extra `subset`, `chosen_model`, `rejected_model` (str).
* `reward_bench_2` (v2): ranking records (`schema.RANKING`): `id` (e.g. "ref:12" in the Ties
  subset), `prompt`, `chosen` (the correct answers, at least one), `rejected` (the incorrect ones,
  at least one), extra `subset`. The published `num_correct`, `num_incorrect` and
  `total_completions` must agree with the lists (len(chosen), len(rejected), their sum); they are
  checked here and not stored.

A record whose `subset` is not one RewardBench's scoring knows (`rm_eval.V1_SUBSETS`,
`rm_eval.V2_SUBSETS`), a missing field, a field of the wrong type or an empty list of answers
stops the build with an error naming the file, the record (row, from 0) and the field.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from warm_jax import rm_eval
from warm_jax.data import schema
from warm_jax.data.builders import base

V1_URL = ("https://huggingface.co/datasets/allenai/reward-bench/resolve/main/data/"
          "filtered-00000-of-00001.parquet")
V2_URL = ("https://huggingface.co/datasets/allenai/reward-bench-2/resolve/main/data/"
          "test-00000-of-00001.parquet")
SHA256: dict[str, str] = {}  # none published: see base.RealDataBuilder._checksums_path


def _subset(raw, known, *, source, index) -> str:
  s = schema.get(raw, "subset", str, source=source, index=index)
  if s not in known:
    raise ValueError(f"{schema.where(source, index)}: field 'subset'={s!r} is not one RewardBench "
                     f"scores ({', '.join(known)})")
  return s


def v1_record(raw, *, source, index) -> dict:
  """A reward-bench row as a preference record (+ subset, chosen_model, rejected_model)."""
  kw = dict(source=source, index=index)
  rid = schema.get(raw, "id", int, **kw)
  return {"id": str(rid), "prompt": schema.get(raw, "prompt", str, **kw),
          "chosen": schema.get(raw, "chosen", str, **kw),
          "rejected": schema.get(raw, "rejected", str, **kw),
          "subset": _subset(raw, rm_eval.V1_SUBSETS, **kw),
          "chosen_model": schema.get(raw, "chosen_model", str, allow_empty=True, **kw),
          "rejected_model": schema.get(raw, "rejected_model", str, allow_empty=True, **kw)}


def _count(raw, field: str, expected: int, what: str, *, source, index) -> None:
  n = schema.get(raw, field, int, source=source, index=index)
  if n != expected:
    raise ValueError(f"{schema.where(source, index)}: field {field!r}={n} but {what} is {expected}")


def v2_record(raw, *, source, index) -> dict:
  """A reward-bench-2 row as a ranking record (+ subset), its counts checked against its lists."""
  kw = dict(source=source, index=index)
  chosen = schema.get(raw, "chosen", list, **kw)
  rejected = schema.get(raw, "rejected", list, **kw)
  record = {"id": schema.get(raw, "id", str, **kw), "prompt": schema.get(raw, "prompt", str, **kw),
            "chosen": chosen, "rejected": rejected,
            "subset": _subset(raw, rm_eval.V2_SUBSETS, **kw)}
  schema.validate_record(record, kind=schema.RANKING, **kw)  # lists first: clearer errors
  _count(raw, "num_correct", len(chosen), "len(chosen)", **kw)
  _count(raw, "num_incorrect", len(rejected), "len(rejected)", **kw)
  _count(raw, "total_completions", len(chosen) + len(rejected), "len(chosen) + len(rejected)", **kw)
  return record


class _RewardBenchBase(base.RealDataBuilder):
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  URL = SPLIT = HOMEPAGE = CITATION = ""

  def _extra_features(self) -> dict:
    raise NotImplementedError

  def _info(self):
    return self._info_from(description=__doc__.split("\n\n")[0],
                           features=base.text_features(self.KIND, **self._extra_features()),
                           homepage=self.HOMEPAGE, citation=self.CITATION)

  def _split_generators(self, dl_manager):
    paths = base.download(dl_manager, {self.SPLIT: self.URL}, SHA256)
    return {self.SPLIT: self._generate_examples(paths[self.SPLIT])}

  def _generate_examples(self, path):
    for n, raw in schema.iter_parquet(path):
      yield n, self._validated(self.to_record(raw, source=path, index=n), path, n)


class RewardBench(_RewardBenchBase):
  """RewardBench v1 (split 'filtered'): preference pairs with their subset."""

  KIND = schema.PREFERENCE
  URL, SPLIT = V1_URL, "filtered"
  HOMEPAGE = "https://huggingface.co/datasets/allenai/reward-bench"
  CITATION = "Lambert et al. 2024, RewardBench, arXiv:2403.13787"
  to_record = staticmethod(v1_record)

  def _extra_features(self) -> dict:
    text = tfds.features.Text()
    return {"subset": text, "chosen_model": text, "rejected_model": text}


class RewardBench2(_RewardBenchBase):
  """RewardBench 2 (split 'test'): ranking records (correct and incorrect answers) with their
  subset."""

  name = "reward_bench_2"  # TFDS would derive 'reward_bench2' from the class name
  KIND = schema.RANKING
  URL, SPLIT = V2_URL, "test"
  HOMEPAGE = "https://huggingface.co/datasets/allenai/reward-bench-2"
  CITATION = "Malik et al. 2025, RewardBench 2, arXiv:2506.01937"
  to_record = staticmethod(v2_record)

  def _extra_features(self) -> dict:
    text = tfds.features.Text()
    return {"chosen": tfds.features.Sequence(text), "rejected": tfds.features.Sequence(text),
            "subset": text}
