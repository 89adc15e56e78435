import numpy as np
import pytest

from warm_jax.data import pipeline


def _src(n):
  return [{"prompt": f"p{i}", "chosen": "c", "rejected": "r", "id": i} for i in range(n)]


def _ids(batches, k):
  return [list(b["id"]) for b in (next(batches) for _ in range(k))]


def _enc(rec):
  return {"id": np.int32(rec["id"])}


def test_order_is_deterministic_and_epochs_are_permutations():
  a = pipeline.Batches(_src(10), _enc, 5, seed=3)
  b = pipeline.Batches(_src(10), _enc, 5, seed=3)
  first = _ids(a, 4)
  assert first == _ids(b, 4)
  assert sorted(first[0] + first[1]) == list(range(10))  # epoch 0 covers every record once
  assert sorted(first[2] + first[3]) == list(range(10))
  assert first[:2] != first[2:]  # a new permutation each epoch
  assert _ids(pipeline.Batches(_src(10), _enc, 5, seed=4), 2) != first[:2]


def test_resume_continues_at_the_same_example():
  a = pipeline.Batches(_src(13), _enc, 4, seed=0)
  _ids(a, 3)
  state = a.get_state()
  rest = _ids(a, 5)
  b = pipeline.Batches(_src(13), _enc, 4, seed=0)
  b.set_state(state)
  assert _ids(b, 5) == rest
  with pytest.raises(ValueError, match="seed"):
    pipeline.Batches(_src(13), _enc, 4, seed=1).set_state(state)


def test_processes_take_disjoint_slices_of_each_global_batch():
  whole = _ids(pipeline.Batches(_src(16), _enc, 8, seed=0), 3)
  parts = [_ids(pipeline.Batches(_src(16), _enc, 8, seed=0, process_index=p, process_count=2), 3)
           for p in range(2)]
  for k in range(3):
    assert parts[0][k] + parts[1][k] == whole[k]


def test_join_keeps_response_and_cuts_prompt_from_the_left():
  out = pipeline.join_prompt_response([10, 11, 12, 13], [20, 21], max_len=6, bos_id=1, eos_id=2)
  assert out == [1, 12, 13, 20, 21, 2]
  padded = pipeline.pad_to(out, 8)
  assert padded.tolist() == [1, 12, 13, 20, 21, 2, 0, 0] and padded.dtype == np.int32


def test_eval_batches_cover_each_record_once_with_weights():
  batches = list(pipeline.epoch_batches(_src(10), _enc, 4))
  ids = [i for b in batches for i, w in zip(b["id"], b["weight"]) if w > 0]
  assert ids == list(range(10))
  assert [float(b["weight"].sum()) for b in batches] == [4.0, 4.0, 2.0]


def test_empty_source_is_an_error():
  with pytest.raises(ValueError, match="empty"):
    pipeline.Batches([], _enc, 4, seed=0)


class _Tok:
  bos_id, eos_id = 1, 2

  def encode(self, text):
    return [ord(c) - 90 for c in text]


def test_lm_encoder_weights_response_only_for_sft():
  rec = {"prompt": "abc", "response": "de"}
  sft = pipeline.LMEncoder(_Tok(), 8, response_only=True)(rec)
  assert sft["tokens"].tolist() == [1, 7, 8, 9, 10, 11, 2, 0]
  assert sft["weights"].tolist() == [0, 0, 0, 0, 1, 1, 1, 0]  # d, e, eos are targets
  pre = pipeline.LMEncoder(_Tok(), 8, response_only=False)(rec)
  assert pre["weights"].tolist() == [0, 1, 1, 1, 1, 1, 1, 0]  # every real token after bos


def test_head_takes_the_first_records():
  src = _src(10)
  h = pipeline.Head(src, 4)
  assert len(h) == 4 and [h[i]["id"] for i in range(4)] == [0, 1, 2, 3] and h[-1]["id"] == 3
  assert len(pipeline.Head(src, 0)) == 10 and len(pipeline.Head(src, 99)) == 10
  with pytest.raises(IndexError):
    h[4]
  with pytest.raises(ValueError, match="n=-1"):
    pipeline.Head(src, -1)


def test_flip_labels_swaps_an_exact_seeded_fraction():
  src = [{"prompt": "p", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]
  f = pipeline.FlipLabels(src, 0.25, seed=1)
  flipped = [i for i in range(40) if f[i]["flipped"]]
  assert flipped == list(f.indices) and len(flipped) == 10
  for i in range(40):
    want = ("r", "c") if i in flipped else ("c", "r")
    assert (f[i]["chosen"][0], f[i]["rejected"][0]) == want
  assert list(pipeline.FlipLabels(src, 0.25, seed=1).indices) == flipped
  assert list(pipeline.FlipLabels(src, 0.25, seed=2).indices) != flipped
  assert src[flipped[0]]["chosen"].startswith("c")  # the source itself is untouched
  with pytest.raises(ValueError, match="fraction"):
    pipeline.FlipLabels(src, 1.5)


def test_trim_padding_drops_only_all_padding_columns():
  t = np.full((3, 40), 2, np.int32)  # pad id 2 = eos: only the mask tells padding apart
  m = np.zeros((3, 40), bool)
  m[0, :5] = True
  m[1, :19] = True
  assert pipeline.trim_padding(t, m, multiple=8)[0].shape == (3, 24)
  tokens, mask = pipeline.trim_padding(t, m, multiple=1)
  assert tokens.shape == mask.shape == (3, 19) and mask[1].all() and not mask[2].any()
  assert pipeline.trim_padding(t, m, multiple=64)[0].shape == (3, 40)
  assert pipeline.trim_padding(t[:2, :8], m[1:, :8] & False, multiple=1)[0].shape == (2, 1)
  with pytest.raises(ValueError, match="shape"):
    pipeline.trim_padding(t, m[:, :8])


def test_concat_reads_sources_in_order():
  c = pipeline.Concat([1, 2], [], [3, 4, 5])
  assert len(c) == 5 and [c[i] for i in range(5)] == [1, 2, 3, 4, 5] and c[-1] == 5
  with pytest.raises(IndexError):
    c[5]
  assert len(pipeline.Concat()) == 0
