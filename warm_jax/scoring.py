"""Reward models as plain Python objects (notebooks, studies, the evaluation command): strings in,
numpy rewards out.

    rm = warm_jax.load_reward_model("runs/rm_a")                 # a run dir or a checkpoint dir
    rm.score(["tldr: ..."], ["a summary"])                         # -> np.ndarray [1] (float32)
    rm.score(prompts, responses, normalized=True)   # standardised by its stored statistics
    warm = warm_jax.load_averaged(["runs/rm_a", "runs/rm_b"], weights=[0.5, 0.5])   # WARM
    ens = warm_jax.load_ensemble(["runs/rm_a", "runs/rm_b"])       # ENS: M forward passes
    mean, var = ens.score(prompts, responses, return_variance=True)
    hf = warm_jax.load_reward_model("hf:Skywork-Reward-Llama-3.1-8B", max_len=1024)
    warm = warm_jax.load_averaged(["hf:rm_a_hf", "hf:rm_b_hf"])   # WARM of HF reward models

A Hugging Face *ForSequenceClassification directory (hf:DIR, or a directory with config.json and
safetensors weights) loads with its own tokenizer, in float32, rows padded to `max_len` (default
`HF_MAX_LEN`, at most its max_position_embeddings); `load_averaged` takes either only such
directories (of one architecture: `warm_jax.averaging.hf`) or only warm_jax checkpoints.

Each text pair is tokenised with the run's tokenizer (or the one passed in) as
[bos] prompt response [eos] (`pipeline.join_prompt_response`), padded to the run's
config.data.max_len with a mask of its real tokens (`encode` returns both; the reward is read at
the last real token, the eos, even where the pad id is the eos id), and scored in fixed-size
batches by one jitted function (the last batch is padded with copies of its last row), each batch
cut after the last column that holds a real token in any of its rows (to a multiple of 16
columns: one compilation per width).
Parameters are restored onto a mesh with the run's
axis names: one device by default, or `mesh_shape`/`devices` for a sharded model.

A model's stored reward statistics (`warm_jax.reward_norm`: mean and standard deviation on a
reference set, `reward_norm.json` next to the checkpoint) are read with it (`rm.norm`, None when
absent); `score(..., normalized=True)` uses them. A weight average (`load_averaged`) is a new
model and has none until they are computed on it.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from warm_jax import averaging, checkpoints, ensemble, errors
from warm_jax import sharding as shd
from warm_jax.data import pipeline
from warm_jax.errors import InputError
from warm_jax.models import RewardModel
from warm_jax.train.init import abstract_params

HF_MAX_LEN = 512  # rows of a Hugging Face reward model, unless max_len says otherwise


class RewardScorer:
  """A reward model (one parameter tree, e.g. a single run or a weight average) with its
  tokenizer: `score(prompts, responses) -> np.ndarray [N] float32`."""

  def __init__(self, model: nn.Module, params: Any, tokenizer, max_len: int, *,
               mesh: jax.sharding.Mesh, rules=(), batch_size: int = 32,
               config: ml_collections.ConfigDict | None = None, meta: dict | None = None):
    shd.check_batch_size(batch_size, mesh, rules, "batch_size")
    self.model, self.params, self.tokenizer = model, params, tokenizer
    self.max_len, self.mesh, self.rules, self.batch_size = max_len, mesh, tuple(rules), batch_size
    self.config, self.meta = config, meta or {}
    self.norm = None  # reward_norm.RewardNorm: the model's stored reward statistics, if any
    self._batch_sharding = shd.batch_sharding(mesh, self.rules)
    self._fn = self._compile()

  def _compile(self):
    model, rules = self.model, self.rules

    def rewards(params, tokens, mask):
      with nn.logical_axis_rules(rules):
        return model.apply({"params": params}, tokens, mask).astype(jnp.float32)
    return jax.jit(rewards, out_shardings=shd.replicated(self.mesh))

  def encode(self, prompts: Sequence[str] | str, responses: Sequence[str] | str
             ) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32 [N, max_len], mask bool [N, max_len]): the (prompt, response) pairs' rows
    and their real tokens."""
    prompts, responses = _as_list(prompts, "prompts"), _as_list(responses, "responses")
    if len(prompts) == 1 and len(responses) > 1:
      prompts = prompts * len(responses)  # one prompt, several responses
    if len(prompts) != len(responses):
      raise ValueError(f"got {len(prompts)} prompts and {len(responses)} responses; give one "
                       "prompt per response (or a single prompt)")
    tok = self.tokenizer
    rows = [pipeline.padded(pipeline.join_prompt_response(
        tok.encode(p), tok.encode(r), self.max_len, tok.bos_id, tok.eos_id), self.max_len,
        pipeline.pad_id_of(tok)) for p, r in zip(prompts, responses)]
    if not rows:
      return np.zeros((0, self.max_len), np.int32), np.zeros((0, self.max_len), bool)
    return np.stack([t for t, _ in rows]), np.stack([m for _, m in rows])

  def mask_of(self, tokens: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """`mask`, or when None the non-pad tokens of right-padded rows: refused where the pad id is
    also the eos id (the eos would be hidden: pass the mask `encode` returns)."""
    if mask is not None:
      mask = np.asarray(mask, bool)
      if mask.shape != np.shape(tokens):
        raise ValueError(f"mask {mask.shape} does not match tokens {np.shape(tokens)}")
      return mask
    pad = pipeline.pad_id_of(self.tokenizer)
    if pad == getattr(self.tokenizer, "eos_id", None):
      raise ValueError(f"the tokenizer's pad id {pad} is its eos id: pass the rows' mask "
                       "(`encode` returns it), padding cannot be told from the eos")
    return np.asarray(tokens) != pad

  def _batches(self, tokens: np.ndarray, mask: np.ndarray):
    """(real rows, (tokens, mask) on the mesh) per batch of `batch_size` rows, each batch without
    the trailing columns that are padding in all its rows (`pipeline.trim_padding`, width a
    multiple of 16: one compilation per width): no reward changes, as the model is causal."""
    n, b = tokens.shape[0], self.batch_size
    for start in range(0, n, b):
      chunk, chunk_mask = pipeline.trim_padding(tokens[start:start + b], mask[start:start + b])
      real = chunk.shape[0]
      if real < b:  # pad with copies of the last row: one compiled batch size
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - real, axis=0)])
        chunk_mask = np.concatenate([chunk_mask, np.repeat(chunk_mask[-1:], b - real, axis=0)])
      yield real, (jax.device_put(chunk, self._batch_sharding),
                   jax.device_put(chunk_mask, self._batch_sharding))

  def score_tokens(self, tokens: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Rewards [N] of token rows [N, T] with their mask (see `mask_of` for None)."""
    tokens = np.asarray(tokens, np.int32)
    out = []
    with jax.set_mesh(self.mesh):
      for real, batch in self._batches(tokens, self.mask_of(tokens, mask)):
        out.append(np.asarray(self._fn(self.params, *batch))[:real])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)

  def score(self, prompts: Sequence[str] | str, responses: Sequence[str] | str,
            normalized: bool = False) -> np.ndarray:
    """Rewards (float32 [N]) of N (prompt, response) pairs; with `normalized`, standardised by
    the model's stored statistics (`reward_norm.require`: an error when it has none or they are
    stale)."""
    norm = None
    if normalized:  # checked before any compute
      from warm_jax import reward_norm
      norm = reward_norm.require(self)
    rewards = self.score_tokens(*self.encode(prompts, responses))
    return rewards if norm is None else norm.apply(rewards)

  def with_params(self, params: Any, meta: dict | None = None) -> "RewardScorer":
    """The same model, tokenizer and compiled scoring function with other parameters of the same
    shapes (a member of an ensemble, a weight average, a point of an interpolation path)."""
    out = copy.copy(self)
    out.params, out.meta = params, meta or {}
    out.norm = None  # another model: its statistics are not this one's
    return out

  def __repr__(self) -> str:
    n = sum(x.size for x in jax.tree.leaves(self.params))
    src = self.meta.get("paths") or self.meta.get("path")
    return f"{type(self).__name__}({n:,} params, max_len={self.max_len}, from {src})"


class EnsembleScorer(RewardScorer):
  """ENS: the mean of M reward models' predictions (M forward passes per batch);
  `score(..., return_variance=True)` also returns the variance across members."""

  def __init__(self, model, members: Sequence[Any], tokenizer, max_len: int, **kwargs):
    ensemble.check_members(list(members))
    super().__init__(model, tuple(members), tokenizer, max_len, **kwargs)

  def _compile(self):
    rep = shd.replicated(self.mesh)
    return {v: ensemble.make_ensemble_fn(self.model, v, self.rules,
                                         out_shardings=(rep, rep) if v else rep)
            for v in (False, True)}

  def score_tokens(self, tokens: np.ndarray, mask: np.ndarray | None = None,
                   return_variance: bool = False):
    tokens = np.asarray(tokens, np.int32)
    means, variances = [], []
    with jax.set_mesh(self.mesh):
      for real, batch in self._batches(tokens, self.mask_of(tokens, mask)):
        if return_variance:
          m, v = self._fn[True](self.params, *batch)
          variances.append(np.asarray(v)[:real])
        else:
          m = self._fn[False](self.params, *batch)
        means.append(np.asarray(m)[:real])
    mean = np.concatenate(means) if means else np.zeros((0,), np.float32)
    if return_variance:
      return mean, (np.concatenate(variances) if variances else np.zeros((0,), np.float32))
    return mean

  def score(self, prompts, responses, return_variance: bool = False):
    return self.score_tokens(*self.encode(prompts, responses), return_variance=return_variance)

  def __len__(self) -> int:
    return len(self.params)


def _as_list(x, name: str) -> list[str]:
  if isinstance(x, str):
    return [x]
  x = list(x)
  if not all(isinstance(s, str) for s in x):
    raise TypeError(f"{name} must be strings")
  return x


def _config_of(meta: dict, path: str) -> ml_collections.ConfigDict:
  if not meta.get("config"):
    raise InputError(f"checkpoint {path} records no config; cannot rebuild its model")
  return ml_collections.ConfigDict(meta["config"])


def _mesh_for(config: ml_collections.ConfigDict, devices=None, mesh_shape=None) -> jax.sharding.Mesh:
  axes = tuple(config.mesh.axes)
  if mesh_shape is None:
    devices = list(devices) if devices is not None else jax.devices()[:1]
    mesh_shape = (-1,) + (1,) * (len(axes) - 1)
  return shd.make_mesh(axes, mesh_shape, devices, field="mesh_shape")


def _prepare(path: str, step, tokenizer, devices, mesh_shape):
  ckpt = checkpoints.resolve_checkpoint_dir(path)
  meta = checkpoints.read_meta(ckpt, step)
  config = _config_of(meta, path)
  model = RewardModel(config.model)
  mesh = _mesh_for(config, devices, mesh_shape)
  rules = tuple(tuple(r) for r in config.sharding.rules)
  if tokenizer is None:
    from warm_jax import data as data_lib
    tokenizer = data_lib.load_tokenizer(config.data)
  return ckpt, meta, config, model, mesh, rules, tokenizer


def _hf_scorer(load, directory: str, tokenizer, batch_size: int, devices, mesh_shape,
               max_len: int | None, meta: dict) -> RewardScorer:
  """A RewardScorer of a Hugging Face reward model: `load(mesh, rules)` returns its
  `pretrained.Pretrained` (one directory, or an average of several) on the mesh."""
  from warm_jax import pretrained
  from warm_jax.configs import DEFAULT_RULES, mesh_config
  spec = pretrained.read_spec(directory)
  if spec.kind != "rm":
    raise errors.InputError(f"{directory} holds a language model "
                            f"({spec.hf_config.get('architectures')}), not a reward model "
                            "(*ForSequenceClassification with one label)")
  config = ml_collections.ConfigDict({"mesh": mesh_config(), "sharding": {"rules": DEFAULT_RULES}})
  mesh, rules = _mesh_for(config, devices, mesh_shape), DEFAULT_RULES
  pre = load(mesh, rules)
  tokenizer = tokenizer or pretrained.load_tokenizer(directory,
                                                     model_vocab_size=pre.model_cfg.vocab_size)
  max_len = max_len or min(HF_MAX_LEN, pre.model_cfg.max_len)
  config.model = pre.model_cfg
  return RewardScorer(pre.model(), pre.params, tokenizer, max_len, mesh=mesh, rules=rules,
                      batch_size=batch_size, config=config, meta=meta)


def load_reward_model(path: str, step: int | None = None, *, tokenizer=None, batch_size: int = 32,
                      devices=None, mesh_shape=None, max_len: int | None = None) -> RewardScorer:
  """A trained (or averaged) reward model from a run directory or checkpoint directory, or a
  Hugging Face reward model (hf:DIR).

  `tokenizer`: defaults to the run's (`warm_jax.data.load_tokenizer(config.data)`), or the
  directory's. `devices`/`mesh_shape`: where to put the parameters (default: the first device).
  `max_len`: the rows' length (default: the run's config.data.max_len; `HF_MAX_LEN`)."""
  from warm_jax import pretrained
  directory = pretrained.hf_dir(path)
  if directory is not None:
    if step is not None:
      raise errors.InputError(f"{path} is a Hugging Face directory: it has no step {step}")
    return load_hf_reward_model(directory, max_len=max_len, tokenizer=tokenizer,
                                batch_size=batch_size, devices=devices, mesh_shape=mesh_shape)
  ckpt, meta, config, model, mesh, rules, tokenizer = _prepare(path, step, tokenizer, devices,
                                                               mesh_shape)
  params = checkpoints.restore_params(ckpt, meta.get("step", step),
                                      target=abstract_params(model, mesh, rules))
  rm = RewardScorer(model, params, tokenizer, max_len or config.data.max_len, mesh=mesh,
                    rules=rules, batch_size=batch_size, config=config, meta={"path": ckpt, **meta})
  return _with_stored_norm(rm)


def load_averaged(paths: Sequence[str], weights: Sequence[float] | None = None, *,
                  steps: Sequence[int | None] | None = None, normalize: bool = True,
                  tokenizer=None, batch_size: int = 32, devices=None,
                  mesh_shape=None, max_len: int | None = None, method: str = "linear",
                  base: str | None = None, **merge_params) -> RewardScorer:
  """WARM in memory: the weighted average of the checkpoints (streamed: ~2 models of memory),
  or of Hugging Face reward models (streamed tensor by tensor: `averaging.hf`; all of one
  architecture, no mix with checkpoints), as a `RewardScorer`; with `method` another merge of
  checkpoints (`averaging.merges.METHODS`, streamed by `averaging.merge_checkpoints`) with `base`
  (a checkpoint) and `merge_params` (density, drop, seed, scale, combine). Nothing is written."""
  from warm_jax.averaging import hf
  paths = list(paths)
  if not paths:
    raise ValueError("nothing to average: no checkpoint paths given")
  merged = method != "linear" or base is not None or bool(merge_params)
  if hf.input_format(paths) == "hf":
    if merged:
      raise errors.InputError(f"method {method!r}: the merges take warm_jax checkpoints; import "
                              "the Hugging Face models first")
    if steps is not None and any(s is not None for s in steps):
      raise errors.InputError(f"steps {list(steps)}: Hugging Face directories have no steps")
    from warm_jax import pretrained
    load = lambda mesh, rules: hf.load_averaged_hf(paths, weights, normalize=normalize,  # noqa: E731
                                                   mesh=mesh, rules=rules)
    meta = {"paths": [pretrained.hf_dir(p) for p in paths],
            "weights": [float(x) for x in averaging.check_weights(weights, len(paths), normalize)]}
    return _hf_scorer(load, pretrained.hf_dir(paths[0]), tokenizer, batch_size, devices,
                      mesh_shape, max_len, meta)
  first_step = None if steps is None else list(steps)[0]
  if merged:  # validated before anything is read
    averaging.plan_merge(method, paths, weights, steps=steps, base=base, **merge_params)
  _, _, config, model, mesh, rules, tokenizer = _prepare(paths[0], first_step, tokenizer, devices,
                                                         mesh_shape)
  if merged:
    params, meta = averaging.merge_checkpoints(method, paths, weights, steps=steps, base=base,
                                               target=abstract_params(model, mesh, rules),
                                               **merge_params)
  else:
    params, meta = averaging.average_checkpoints(paths, weights, steps=steps, normalize=normalize,
                                                 target=abstract_params(model, mesh, rules))
  return RewardScorer(model, params, tokenizer, max_len or config.data.max_len, mesh=mesh,
                      rules=rules, batch_size=batch_size, config=config, meta=meta)


def _load_members(paths, steps, tokenizer, devices, mesh_shape):
  """Checks that the checkpoints share one architecture and are complete (before reading any
  array), then restores each onto the mesh of the first one's config."""
  paths = list(paths)
  sources, _ = averaging.plan(paths, None, steps)
  _, _, config, model, mesh, rules, tokenizer = _prepare(paths[0], sources[0].step, tokenizer,
                                                         devices, mesh_shape)
  target = abstract_params(model, mesh, rules)
  members = [checkpoints.restore_params(s.path, s.step, target=target) for s in sources]
  return sources, members, dict(model=model, tokenizer=tokenizer, max_len=config.data.max_len,
                                mesh=mesh, rules=rules, config=config)


def load_reward_models(paths: Sequence[str], *, steps: Sequence[int | None] | None = None,
                       tokenizer=None, batch_size: int = 32, devices=None,
                       mesh_shape=None) -> list[RewardScorer]:
  """Several reward models of one architecture (e.g. the M members of WARM), each a
  `RewardScorer`; they share one tokenizer and one compiled scoring function (`with_params`)."""
  sources, members, kw = _load_members(paths, steps, tokenizer, devices, mesh_shape)
  first = RewardScorer(kw.pop("model"), members[0], kw.pop("tokenizer"), kw.pop("max_len"),
                       batch_size=batch_size, **kw)
  return [_with_stored_norm(first.with_params(p, {"path": s.path, **s.meta}))
          for p, s in zip(members, sources)]


def load_ensemble(paths: Sequence[str], *, steps: Sequence[int | None] | None = None,
                  tokenizer=None, batch_size: int = 32, devices=None,
                  mesh_shape=None) -> EnsembleScorer:
  """ENS: every checkpoint loaded (M models in memory), predictions averaged at scoring time."""
  sources, members, kw = _load_members(paths, steps, tokenizer, devices, mesh_shape)
  meta = {"paths": [s.path for s in sources], "steps": [s.step for s in sources],
          "config": kw["config"].to_dict()}
  return EnsembleScorer(kw.pop("model"), members, kw.pop("tokenizer"), kw.pop("max_len"),
                        batch_size=batch_size, meta=meta, **kw)


def load_hf_reward_model(path: str, *, max_len: int | None = None, dtype: str | None = None,
                         tokenizer=None, batch_size: int = 32, devices=None,
                         mesh_shape=None) -> RewardScorer:
  """A Hugging Face `*ForSequenceClassification` directory (`pretrained.load_hf` in `dtype`,
  default the stored one; its tokenizer by `pretrained.load_tokenizer`) as a `RewardScorer`
  padding each text to `max_len` tokens (default `HF_MAX_LEN` or the model's context), on one
  device by default (or `mesh_shape` over `devices`, with configs.DEFAULT_RULES)."""
  from warm_jax import pretrained
  directory = pretrained.hf_dir(path) or path
  load = lambda mesh, rules: pretrained.load_hf(directory, mesh=mesh, rules=rules,  # noqa: E731
                                                **({"dtype": dtype} if dtype else {}))
  return _with_stored_norm(_hf_scorer(load, directory, tokenizer, batch_size, devices, mesh_shape,
                                      max_len, {"path": directory}))


def _with_stored_norm(rm: RewardScorer) -> RewardScorer:
  """The scorer with the reward statistics stored in its checkpoint directory, if any."""
  from warm_jax import reward_norm
  rm.norm = reward_norm.read(rm.meta["path"])
  return rm


__all__ = ["RewardScorer", "EnsembleScorer", "load_reward_model", "load_reward_models",
           "load_averaged", "load_ensemble", "load_hf_reward_model"]
