"""The filtered Reddit TL;DR data set of summarize-from-feedback (`tldr_3_filtered`): posts with
their human-written TL;DR, for supervised fine-tuning and as the prompts of RL / best-of-N.

Source: https://github.com/openai/summarize-from-feedback ("Reddit TL;DR dataset"), a filtered
version of the TL;DR data set of Syed et al. 2018 (CC BY 4.0), files
`https://openaipublic.blob.core.windows.net/summarize-from-feedback/datasets/tldr_3_filtered/
{train,valid,test}.jsonl` (about 116.7k / 6.4k / 6.5k posts), JSON lines:

    {"id": "t3_1hxu8s", "subreddit": "relationships", "title": ..., "post": ..., "summary": ...}

Prompt records: `prompt` in the TL;DR format of `tldr_comparisons.format_prompt`, `response` =
the reference summary (stripped), `id` = "<split>.jsonl:<line>", extra `post_id` (the Reddit id)
and `subreddit`. Splits: train, valid, test.

Checksums: none published. Record them with a first build under
`tfds.download.DownloadConfig(register_checksums=True)` (writes `tldr_sft_checksums.tsv`).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from warm_jax.data import schema
from warm_jax.data.builders import base
from warm_jax.data.builders.tldr_comparisons import format_prompt

NAME = "tldr_sft"
BASE_URL = "https://openaipublic.blob.core.windows.net/summarize-from-feedback/datasets/tldr_3_filtered/"
SPLITS = ("train", "valid", "test")
URLS = {s: f"{BASE_URL}{s}.jsonl" for s in SPLITS}
SHA256: dict[str, str] = {}  # none published: see base.RealDataBuilder._checksums_path


class TldrSft(base.RealDataBuilder):
  """Filtered Reddit TL;DR posts and reference summaries as prompt records."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  KIND = schema.PROMPT

  def _info(self):
    return self._info_from(
        description=__doc__.split("\n\n")[0],
        features=base.text_features(self.KIND, response=tfds.features.Text(),
                                    post_id=tfds.features.Text(), subreddit=tfds.features.Text()),
        homepage="https://github.com/openai/summarize-from-feedback",
        citation="Stiennon et al. 2020 (arXiv:2009.01325); Syed et al. 2018, TL;DR data set")

  def _split_generators(self, dl_manager):
    paths = base.download(dl_manager, URLS, SHA256)
    return {split: self._generate_examples(paths[split], split) for split in SPLITS}

  def _generate_examples(self, path, split):
    for n, raw in schema.iter_json_lines(path):
      kw = dict(source=path, index=n)
      rid = f"{split}.jsonl:{n}"
      subreddit = schema.get(raw, "subreddit", str, **kw)
      record = {
          "id": rid,
          "post_id": schema.get(raw, "id", str, **kw),
          "prompt": format_prompt(subreddit, schema.get(raw, "title", str, **kw),
                                  schema.get(raw, "post", str, **kw)),
          "response": schema.get(raw, "summary", str, **kw).strip(),
          "subreddit": subreddit,
      }
      yield rid, self._validated(record, path, n)
