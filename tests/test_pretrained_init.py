"""Starting experiments from a Hugging Face model (init_from=hf:DIR): the rule of the field, the
config taken from the directory, the params each trainer starts from, the WARM job's stages."""

import jax
import numpy as np
import pytest
from conftest import experiment

from warm_jax import configs, errors, pretrained
from warm_jax.data import load_tokenizer
from warm_jax.studies import reward_model as rm_study
from warm_jax.studies.warm import job
from warm_jax.train import init, policy
from warm_jax.train import reward_model as rm


@pytest.mark.parametrize("value,ok", [
    ("", True), ("runs/sft", True), ("hf:/models/gemma-2-2b", True), ("hf:", False),
    ("hf: ", False), (" runs/sft", False), (None, False), (3, False), (["hf:x"], False)])
def test_init_from_rule_accepts_a_path_or_hf_dir(value, ok):
  rule = configs.init_source("init_from")
  assert rule.accepts(value, None) is ok


def test_config_takes_architecture_and_tokenizer_from_the_directory(tiny_hf, capsys):
  c = experiment("reward_model").get_config("tiny")
  c.model.dropout_rate = 0.05
  c.init_from = "hf:" + tiny_hf["lm"]
  out = init.pretrained_config(c)
  spec = pretrained.read_spec(tiny_hf["lm"], max_len=c.model.max_len)
  for k, v in spec.model_cfg.items():
    if k not in init.RUN_MODEL_FIELDS:
      assert out.model[k] == v, k
  for k in init.RUN_MODEL_FIELDS:  # those the config holds (the others keep their defaults)
    if k in c.model:
      assert out.model[k] == c.model[k], k
  assert out.model.vocab_size == 320 and out.model.reward_head_bias is False
  assert out.data.tokenizer == "hf:" + tiny_hf["lm"] and c.data.tokenizer == ""  # a copy
  tok = load_tokenizer(out.data)
  assert (tok.pad_id, tok.eos_id, tok.vocab_size) == (2, 2, 303)
  printed = capsys.readouterr().out
  assert "replaced" in printed and "vocab_size" in printed and "dropout_rate" not in printed.split(
      "replaced")[0]
  # A run or an empty init_from leaves the config alone.
  c.init_from = "runs/sft"
  assert init.pretrained_config(c) is c


def test_a_tokenizer_beyond_the_model_vocabulary_is_refused(tmp_path):
  from conftest import write_tiny_hf
  d = write_tiny_hf(tmp_path / "small", vocab_size=256)  # the tokenizer has 303 ids
  c = experiment("reward_model").get_config("tiny")
  c.init_from = "hf:" + d
  with pytest.raises(errors.InputError, match="303 ids but the model's vocab_size is 256"):
    init.pretrained_config(c)
  c.init_from = "hf:" + str(tmp_path / "absent")
  with pytest.raises(errors.MissingInput, match="absent is not a directory"):
    init.pretrained_config(c)


def _rm_setup(directory):
  c = experiment("reward_model").get_config("tiny")
  c.init_from = "hf:" + directory
  c.mesh.shape = (2, 2, 2)
  c = init.pretrained_config(c, verbose=False)
  return c, rm.build(c)


def test_reward_model_starts_from_a_causal_lm_or_a_sequence_classifier(tiny_hf):
  c, setup = _rm_setup(tiny_hf["lm"])
  params = rm_study.initial_params(c, setup)
  lm = pretrained.load_hf(tiny_hf["lm"])
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
               params["decoder"], lm.params["decoder"])
  assert set(params["reward_head"]) == {"kernel"} and not np.asarray(
      params["reward_head"]["kernel"]).any()  # a fresh (zero) head, no bias
  q = params["decoder"]["block_0"]["attn"]["query"]
  assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)  # on the mesh
  c, setup = _rm_setup(tiny_hf["rm"])
  params = rm_study.initial_params(c, setup)
  score = pretrained.load_hf(tiny_hf["rm"]).params["reward_head"]["kernel"]
  np.testing.assert_array_equal(np.asarray(params["reward_head"]["kernel"]), np.asarray(score))
  c.init_step = 3
  with pytest.raises(errors.InputError, match="no checkpoint step 3"):
    rm_study.initial_params(c, setup)


def test_policy_starts_from_a_causal_lm_and_refuses_a_reward_model(tiny_hf):
  c = experiment("rl").get_config("tiny")
  c.init_from = "hf:" + tiny_hf["lm"]
  c = init.pretrained_config(c, verbose=False)
  setup = policy.build(c)
  params = init.load_lm_params(c.init_from, c.model, setup.mesh, setup.rules)
  assert set(params) == {"decoder"}  # tied embeddings: no lm_head
  with pytest.raises(pretrained.CheckpointError, match="holds a reward model"):
    init.load_lm_params("hf:" + tiny_hf["rm"], c.model, setup.mesh, setup.rules)
  other = experiment("rl").get_config("tiny").model  # not derived from the directory
  with pytest.raises(errors.InputError, match="does not fit config.model"):
    init.load_lm_params(c.init_from, other, setup.mesh, setup.rules)


def test_warm_job_from_a_pretrained_model_skips_pretraining(tiny_hf):
  c = experiment("warm").get_config("tiny")
  assert [s.name for s in job.job_stages(c)] == list(job.NAMES)
  assert job.pretrained_job_config(c) is c
  c.init_from = "hf:" + tiny_hf["lm"]
  job.validate(c)
  out = job.pretrained_job_config(c)
  stages = job.job_stages(out)
  assert [s.name for s in stages] == [n for n in job.NAMES if n != "pretrain"]
  assert stages[0].upstream == () and out.sft.init_from == c.init_from
  hf_model = init.pretrained_model_config(c.sft.model, tiny_hf["lm"])
  for section, before in ((out.sft, c.sft), (out.warm_label_noise.rm, c.warm_label_noise.rm),
                          (out.warm_bon, c.warm_bon), (out.warm_rl, c.warm_rl)):
    assert section.data.tokenizer == c.init_from
    assert section.model.d_model == hf_model.d_model and section.model.vocab_size == 320
    assert section.model.max_len == before.model.max_len  # each stage keeps its own length
  c.init_from = "hf:"
  with pytest.raises(errors.InputError, match="config.init_from='hf:'"):
    job.validate(c)
