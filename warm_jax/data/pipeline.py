"""Input pipeline: records -> padded token batches, deterministic and resumable, sharded per host.

Every encoder emits, with each token row, its mask (True at the real tokens): 'chosen_mask' for
'chosen', 'mask' for an LM row's 'tokens', 'prompt_mask' for a left-padded 'prompt'
(`mask_key`). Padding is written with the tokenizer's pad id (`pad_id_of`), but only the masks
say which slots are padding: with Hugging Face tokenizers the pad id may be a real token (Llama 3
pads with eos), and `tokens != pad_id` would hide the eos the reward is read at. The embedded task
pads with 0, never a real token, so its masks are exactly `tokens != 0`, what the models infer
when no mask is passed.

A `Batches` iterator draws from any random-access source (`len(src)`, `src[i]`: a TFDS data source,
a list of dicts) in an order that depends only on (seed, epoch): epoch e visits a permutation of
the records drawn from seed and e, and global batch k takes positions [k*B, (k+1)*B) of the
concatenated epochs. Its whole state is therefore {"seed", "next_batch"}: saved with every
checkpoint, it makes a resumed run see exactly the examples the interrupted one would have.
Each process takes its own contiguous slice of every global batch (rows in process order), which
`warm_jax.sharding.to_global` assembles into one global array.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

PAD_ID = 0


def pad_id_of(tokenizer) -> int:
  """The id padding slots are written with: the tokenizer's pad id, or 0 when it has none (-1).
  Which slots are padding is said by the masks, never by this id."""
  pad = getattr(tokenizer, "pad_id", PAD_ID)
  return PAD_ID if pad is None or pad < 0 else int(pad)


def mask_key(field: str) -> str:
  """The batch key of the mask of token field `field`: 'mask' for 'tokens', else '<field>_mask'."""
  return "mask" if field == "tokens" else f"{field}_mask"


def pad_to(ids: Sequence[int], length: int, pad_id: int = PAD_ID) -> np.ndarray:
  out = np.full((length,), pad_id, dtype=np.int32)
  ids = list(ids)[:length]
  out[:len(ids)] = ids
  return out


def padded(ids: Sequence[int], length: int, pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32 [length], mask bool [length]): `ids` right-padded with pad_id (cut beyond
  `length`), the mask True at the ids."""
  mask = np.zeros((length,), bool)
  mask[:min(len(ids), length)] = True
  return pad_to(ids, length, pad_id), mask


def left_padded(ids: Sequence[int], length: int, pad_id: int = PAD_ID
                ) -> tuple[np.ndarray, np.ndarray]:
  """(tokens int32 [length], mask bool [length]): the last `length` ids right-aligned after
  pad_id slots (prompts end at the same slot, so generated tokens start together)."""
  ids = list(ids)[-length:] if length else []
  tokens = np.full((length,), pad_id, np.int32)
  mask = np.zeros((length,), bool)
  if ids:
    tokens[length - len(ids):] = ids
    mask[length - len(ids):] = True
  return tokens, mask


def with_bos(ids: Sequence[int], bos_id: int | None) -> list[int]:
  """[bos] ids, or ids alone when the tokenizer has no bos (-1: Qwen's, for instance)."""
  return ([bos_id] if bos_id is not None and bos_id >= 0 else []) + list(ids)


def join_prompt_response(prompt_ids: Sequence[int], response_ids: Sequence[int], max_len: int,
                         bos_id: int, eos_id: int) -> list[int]:
  """[bos] prompt response [eos], cutting the prompt from the left so the response fits ([bos]
  left out when bos_id < 0: a tokenizer without one).

  A response longer than max_len - 2 is cut at the right (its end is what the reward head reads,
  so this is rare by construction of the configs' max_len and is counted by callers if needed).
  """
  response = list(response_ids)[:max_len - 2] + [eos_id]
  head = with_bos([], bos_id)
  room = max_len - len(head) - len(response)
  prompt = list(prompt_ids)[-room:] if room > 0 else []
  return head + prompt + response


def stack_rows(batch: dict, fields: Sequence[str]):
  """(tokens, mask): the token rows of `fields` of a batch concatenated along the rows, and their
  masks likewise; mask is None when the batch carries no masks (a hand-made batch of the embedded
  task: the model then infers them from pad id 0). Works on numpy and jax arrays (and tracers)."""
  import jax.numpy as jnp
  tokens = jnp.concatenate([batch[f] for f in fields], axis=0)
  masks = [batch.get(mask_key(f)) for f in fields]
  if all(m is None for m in masks):
    return tokens, None
  if any(m is None for m in masks):
    raise ValueError(f"the batch has masks for some of {list(fields)} only: "
                     f"{[mask_key(f) for f, m in zip(fields, masks) if m is not None]}")
  return tokens, jnp.concatenate(masks, axis=0)


class PairEncoder:
  """Turns a preference record {'prompt','chosen','rejected'} into two padded [max_len] rows
  ('chosen', 'rejected') and their masks ('chosen_mask', 'rejected_mask')."""

  def __init__(self, tokenizer, max_len: int):
    self.tok, self.max_len, self.pad_id = tokenizer, max_len, pad_id_of(tokenizer)

  def __call__(self, record: dict) -> dict[str, np.ndarray]:
    prompt = self.tok.encode(record["prompt"])
    out = {}
    for side in ("chosen", "rejected"):
      ids = join_prompt_response(prompt, self.tok.encode(record[side]), self.max_len,
                                 self.tok.bos_id, self.tok.eos_id)
      out[side], out[mask_key(side)] = padded(ids, self.max_len, self.pad_id)
    return out


class Batches:
  """Deterministic, resumable iterator of host-local batches from a random-access source."""

  def __init__(self, source, encode: Callable[[Any], dict[str, np.ndarray]], global_batch: int,
               seed: int, shuffle: bool = True, process_index: int = 0, process_count: int = 1):
    if len(source) == 0:
      raise ValueError("the data source is empty")
    if global_batch % process_count:
      raise ValueError(f"global batch {global_batch} is not divisible by {process_count} processes")
    self.source, self.encode = source, encode
    self.global_batch, self.seed, self.shuffle = global_batch, seed, shuffle
    self.local = global_batch // process_count
    self.offset = process_index * self.local
    self.next_batch = 0
    self._perm_epoch, self._perm = -1, None

  def _order(self, epoch: int) -> np.ndarray:
    if epoch != self._perm_epoch:
      n = len(self.source)
      self._perm = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                    else np.arange(n))
      self._perm_epoch = epoch
    return self._perm

  def indices(self, batch: int) -> list[int]:
    """Record indices of this process's rows of global batch `batch`."""
    n = len(self.source)
    out = []
    for pos in range(batch * self.global_batch + self.offset,
                     batch * self.global_batch + self.offset + self.local):
      out.append(int(self._order(pos // n)[pos % n]))
    return out

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    rows = [self.encode(self.source[i]) for i in self.indices(self.next_batch)]
    self.next_batch += 1
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

  def get_state(self) -> dict:
    return {"seed": self.seed, "next_batch": self.next_batch}

  def set_state(self, state: dict) -> None:
    if state.get("seed", self.seed) != self.seed:
      raise ValueError(f"data state was saved with seed {state['seed']}, this iterator has seed "
                       f"{self.seed}")
    self.next_batch = int(state["next_batch"])


def epoch_batches(source, encode, global_batch: int, limit: int | None = None,
                  process_index: int = 0, process_count: int = 1):
  """Every record once, in order, in global batches (the last one padded by repeating the final
  record) with a 'weight' row marking the real ones: for evaluation. Yields this process's rows."""
  n = len(source) if limit is None else min(limit, len(source))
  local = global_batch // process_count
  for start in range(0, n, global_batch):
    idx = list(range(start, min(start + global_batch, n)))
    weight = np.array([1.0] * len(idx) + [0.0] * (global_batch - len(idx)), np.float32)
    idx += [idx[-1]] * (global_batch - len(idx))
    mine = slice(process_index * local, (process_index + 1) * local)
    rows = [encode(source[i]) for i in idx[mine]]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    batch["weight"] = weight[mine]
    yield batch


class LMEncoder:
  """Turns a record {'prompt', 'response'} into a [max_len] token row ('tokens'), its mask
  ('mask') and per-token loss weights ('weights').

  weights[t] = 1 where token t is a training target (predicted from tokens < t): every real
  token after [bos] for pre-training (`response_only=False`), only the response and [eos] for SFT.
  """

  def __init__(self, tokenizer, max_len: int, response_only: bool):
    self.tok, self.max_len, self.response_only = tokenizer, max_len, response_only
    self.pad_id = pad_id_of(tokenizer)

  def __call__(self, record: dict) -> dict[str, np.ndarray]:
    prompt = self.tok.encode(record["prompt"])
    response = self.tok.encode(record["response"])
    ids = join_prompt_response(prompt, response, self.max_len, self.tok.bos_id, self.tok.eos_id)
    n_response = min(len(response), self.max_len - 2) + 1  # + eos
    weights = np.zeros((self.max_len,), np.float32)
    first = len(ids) - n_response if self.response_only else 1
    weights[first:len(ids)] = 1.0
    tokens, mask = padded(ids, self.max_len, self.pad_id)
    return {"tokens": tokens, "mask": mask, "weights": weights}


class PromptEncoder:
  """A record's prompt as a left-padded row [bos] prompt of `prompt_len` tokens (cut from the
  left), so generated tokens of every row start at the same slot: 'prompt' and 'prompt_mask'."""

  def __init__(self, tokenizer, prompt_len: int):
    self.tok, self.prompt_len, self.pad_id = tokenizer, prompt_len, pad_id_of(tokenizer)

  def __call__(self, record: dict) -> dict[str, np.ndarray]:
    ids = with_bos(self.tok.encode(record["prompt"]), self.tok.bos_id)
    tokens, mask = left_padded(ids, self.prompt_len, self.pad_id)
    return {"prompt": tokens, "prompt_mask": mask}


class PreferenceLMEncoder:
  """Turns a preference record {'prompt', 'chosen', 'rejected'} into two LM rows for DPO:
  'chosen' / 'rejected' ([max_len] int32 tokens, laid out by `LMEncoder` with response_only=True),
  their masks 'chosen_mask' / 'rejected_mask', and 'chosen_weights' / 'rejected_weights'
  ([max_len] float32, 1 on the response tokens and [eos], the tokens whose log-probabilities DPO
  sums). A record's 'margin' (MODPO's reward difference of the other objectives) is carried as a
  float32 scalar."""

  def __init__(self, tokenizer, max_len: int):
    self.lm = LMEncoder(tokenizer, max_len, response_only=True)

  def __call__(self, record: dict) -> dict[str, np.ndarray]:
    out = {}
    for side in ("chosen", "rejected"):
      row = self.lm({"prompt": record["prompt"], "response": record[side]})
      out[side], out[mask_key(side)], out[f"{side}_weights"] = (row["tokens"], row["mask"],
                                                                 row["weights"])
    if "margin" in record:
      out["margin"] = np.float32(record["margin"])
    return out


class Head:
  """The first `n` records of a random-access source (all of them if n is 0 or exceeds its size),
  itself a random-access source: e.g. a smaller training set drawn from a fixed split."""

  def __init__(self, source, n: int = 0):
    if n < 0:
      raise ValueError(f"Head: n={n} must be >= 0 (0 = every record)")
    self.source, self.n = source, (min(n, len(source)) if n else len(source))

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, i: int):
    if not -self.n <= i < self.n:
      raise IndexError(f"record {i} of a {self.n}-record head")
    return self.source[i % self.n]


class Concat:
  """Random-access sources one after another, itself a random-access source: e.g. the preference
  pairs plus synthetic ones (RLP-SPG)."""

  def __init__(self, *sources):
    self.sources = sources
    self.ends = np.cumsum([len(s) for s in sources])

  def __len__(self) -> int:
    return int(self.ends[-1]) if len(self.ends) else 0

  def __getitem__(self, i: int):
    n = len(self)
    if not -n <= i < n:
      raise IndexError(f"record {i} of {n}")
    i %= n
    k = int(np.searchsorted(self.ends, i, side="right"))
    return self.sources[k][i - (int(self.ends[k - 1]) if k else 0)]


class FlipLabels:
  """A preference source with the labels of a seeded `fraction` of its records swapped
  (chosen <-> rejected, 'flipped' set True): WARM's corrupted-label setting on any data set.
  Exactly round(fraction * len) records are flipped; `indices` holds them (sorted)."""

  def __init__(self, source, fraction: float, seed: int = 0):
    if not 0.0 <= fraction <= 1.0:
      raise ValueError(f"FlipLabels: fraction={fraction} must be in [0, 1]")
    self.source = source
    n = len(source)
    k = int(round(fraction * n))
    self.indices = np.sort(np.random.default_rng([seed, 0xF11F]).choice(n, size=k, replace=False))
    self._flipped = set(int(i) for i in self.indices)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i: int) -> dict:
    rec = dict(self.source[i])
    if int(i) % len(self) in self._flipped:
      rec["chosen"], rec["rejected"] = rec["rejected"], rec["chosen"]
      rec["flipped"] = not rec.get("flipped", False)
    else:
      rec.setdefault("flipped", False)
    return rec


def trim_padding(tokens: np.ndarray, mask: np.ndarray, multiple: int = 16
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded token rows [N, T] and their masks without the trailing columns that are
  padding (mask False) in every row (kept width rounded up to a multiple of `multiple`, so few
  distinct shapes get compiled). Under causal attention, with the reward or log-probabilities
  read at real tokens, this changes no result: it only saves the compute spent on padding."""
  tokens, mask = np.asarray(tokens), np.asarray(mask, bool)
  if tokens.shape != mask.shape:
    raise ValueError(f"tokens {tokens.shape} and mask {mask.shape} differ in shape")
  if tokens.size == 0:
    return tokens, mask
  real = np.nonzero(np.any(mask, axis=0))[0]
  used = int(real[-1]) + 1 if real.size else 1
  width = min(tokens.shape[1], -(-used // multiple) * multiple)
  return tokens[:, :width], mask[:, :width]
