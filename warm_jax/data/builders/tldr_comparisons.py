"""OpenAI summarize-from-feedback: human comparisons of two TL;DR summaries of a Reddit post
(Stiennon et al. 2020), the preference data of WARM (Ramé et al. 2024).

Source: https://github.com/openai/summarize-from-feedback ("Human feedback data"), files
`https://openaipublic.blob.core.windows.net/summarize-from-feedback/dataset/comparisons/<batch>.json`,
each JSON lines, one comparison a line:

    {"info": {"id": "t3_2vwp1w", "post": ..., "title": ..., "subreddit": ...},
     "summaries": [{"text": " ...", "policy": ..., "note": ...}, {"text": ..., ...}],
     "choice": 1, "worker": ..., "batch": "batch9", "split": "train", "extra": {"confidence": 8}}

`split` is one of train / valid1 / valid2 (valid1 was used for model selection in the paper, so
report final numbers on valid2); the TFDS splits are those three. Only the Reddit TL;DR batches are
read (`TLDR_BATCHES`); the CNN/DM batches (`batch0_cnndm`, `cnndm0`, `cnndm2`, with
`info.article` instead of `info.post`) are left out.

Record: `prompt` = "SUBREDDIT: r/<subreddit>\\n\\nTITLE: <title>\\n\\nPOST: <post>\\n\\nTL;DR:"
(the TL;DR format of the paper), `chosen` = summaries[choice].text, `rejected` = the other, both
with the leading space stripped; `id` = "<batch file>:<line>"; extra `batch` (str) and
`confidence` (int, -1 when the comparison has none).

Checksums: none published. Record them with a first build under
`tfds.download.DownloadConfig(register_checksums=True)` (writes `tldr_comparisons_checksums.tsv`
next to this module; TFDS then checks every later download).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from warm_jax.data import schema
from warm_jax.data.builders import base

NAME = "tldr_comparisons"
BASE_URL = "https://openaipublic.blob.core.windows.net/summarize-from-feedback/dataset/comparisons/"
# batch3..batch10 were the training data of the paper's reward models; later ones mostly
# evaluation. There is no batch21. `edit_b2_eval_test` holds Reddit posts too.
TLDR_BATCHES = tuple(f"batch{i}" for i in range(3, 21)) + ("batch22", "edit_b2_eval_test")
CNNDM_BATCHES = ("batch0_cnndm", "cnndm0", "cnndm2")
URLS = {b: f"{BASE_URL}{b}.json" for b in TLDR_BATCHES}
SHA256: dict[str, str] = {}  # none published: see base.RealDataBuilder._checksums_path
SPLITS = ("train", "valid1", "valid2")

PROMPT_TEMPLATE = "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"


def format_prompt(subreddit: str, title: str, post: str) -> str:
  return PROMPT_TEMPLATE.format(subreddit=subreddit, title=title, post=post)


class TldrComparisons(base.RealDataBuilder):
  """Summarize-from-feedback TL;DR comparisons in the common preference schema."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  KIND = schema.PREFERENCE

  def _info(self):
    return self._info_from(
        description=__doc__.split("\n\n")[0],
        features=base.text_features(self.KIND, batch=tfds.features.Text(), confidence=np.int64),
        homepage="https://github.com/openai/summarize-from-feedback",
        citation="Stiennon et al. 2020, Learning to summarize from human feedback, "
                 "arXiv:2009.01325")

  def _split_generators(self, dl_manager):
    paths = base.download(dl_manager, URLS, SHA256)
    files = [(b, paths[b]) for b in URLS]
    return {split: self._generate_examples(files, split) for split in SPLITS}

  def _generate_examples(self, files, split):
    for batch, path in files:
      for n, raw in schema.iter_json_lines(path):
        kw = dict(source=path, index=n)
        if not isinstance(raw, dict):
          raise ValueError(f"{schema.where(path, n)}: expected a JSON object")
        s = schema.get(raw, "split", str, **kw)
        if s not in SPLITS:
          raise ValueError(f"{schema.where(path, n)}: field 'split' must be one of {SPLITS}, "
                           f"got {s!r}")
        if s != split:
          continue
        c = schema.choice(raw, "choice", (0, 1), **kw)
        texts = [schema.get(raw, f"summaries/{i}/text", str, **kw).strip() for i in (0, 1)]
        extra = raw.get("extra") or {}
        conf = extra.get("confidence") if isinstance(extra, dict) else None
        record = {
            "id": f"{batch}.json:{n}",
            "prompt": format_prompt(schema.get(raw, "info/subreddit", str, **kw),
                                    schema.get(raw, "info/title", str, **kw),
                                    schema.get(raw, "info/post", str, **kw)),
            "chosen": texts[c],
            "rejected": texts[1 - c],
            "batch": schema.get(raw, "batch", str, **kw),
            "confidence": int(conf) if isinstance(conf, int) and not isinstance(conf, bool) else -1,
        }
        yield record["id"], self._validated(record, path, n)
