"""Reward learning on policy (RLP, Lang et al. 2024, arXiv 2403.19279): refining a reward model on
samples of the policy it trained, so that it stays accurate where the policy now writes.

RLP-UML (unsupervised multi-view learning): the reward model is trained on its preference pairs
with Bradley-Terry plus `uml.weight` (the paper's lambda = 0.5) times the multi-view information
bottleneck loss on *views*: two policy responses to one unlabelled prompt, read at the reward
model's final layer and encoded by `models.MultiViewBottleneck` (`losses.mib_loss`). The bottleneck
modules live under params['mib'] during training only; `reward_model_params` drops them, so a
UML-refined reward model has the architecture of any other (it scores, loads and averages alike).

    step(state, batch) -> (state, metrics)
    batch = {'chosen', 'rejected', 'view_1', 'view_2': int32[B, T], and their masks
             'chosen_mask', ...: bool[B, T]}

RLP-SPG (synthetic preference generation): for each unlabelled prompt, n policy samples are
grouped by meaning (`cluster`; the paper uses bi-directional entailment); the prompt is kept if
its largest group holds at least a fraction `gamma` of the samples (the paper's confidence,
gamma = 0.5); the chosen response is the largest group's sample the reward model scores highest,
the rejected one a random sample of another group (`select_pair`, `synthetic_pairs`). The reward
model is then trained with Bradley-Terry on the union of the preference pairs and these.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from warm_jax import configs, losses
from warm_jax.data import pipeline
from warm_jax.models import MultiViewBottleneck, RewardModel
from warm_jax.train import loop
from warm_jax.train import reward_model as rm_lib
from warm_jax.train import state as state_lib

MIB = "mib"  # the params key of the bottleneck modules (training only)
HOLD = 1 / 3  # the share of the run beta stays at beta_start (Federici et al.: 50k, then 100k)


# ---------------------------------------------------------------- UML

def default_uml_config() -> ml_collections.ConfigDict:
  """config.uml: the MIB loss's weight (lambda, 0.5 in the paper) and beta (1 in the paper's L_M),
  the code size z_dim and the MLP width (neither given by the paper; Federici et al. use z 64).
  As Federici et al. train it: beta held at beta_start for the first hold_fraction of the run
  (their beta_start_iteration), then annealed exponentially up to beta over anneal_steps (0: the
  rest of the run), the features standardised over the batch before the encoder
  (`bottleneck.standardized`), and the bottleneck (encoder and critic) optimised at lr_multiplier
  times the reward model's learning rate. beta_start = beta, standardize False and lr_multiplier 1:
  the paper's loss as written (beta 1 from the first step)."""
  return ml_collections.ConfigDict(dict(weight=0.5, beta=1.0, beta_start=1e-3, hold_fraction=HOLD,
                                        anneal_steps=0, standardize=True, lr_multiplier=10.0, z_dim=64,
                                        hidden=256))


def reward_model_params(params: dict) -> dict:
  """The reward model's own params (what is saved, scored and averaged): without the bottleneck."""
  return {k: v for k, v in params.items() if k != MIB}


def bottleneck(uml: ml_collections.ConfigDict) -> MultiViewBottleneck:
  return MultiViewBottleneck(z_dim=uml.z_dim, hidden=uml.hidden,
                             standardize=uml.get("standardize", False))


def uml_beta(uml: ml_collections.ConfigDict, num_steps: int):
  """The MIB loss's beta at a step of a num_steps run: `losses.annealed_beta`, uml.beta_start for
  the first uml.hold_fraction of the run, then up to uml.beta over uml.anneal_steps (0: the rest
  of the run); constant beta for configs without beta_start, no hold for those without
  hold_fraction."""
  start = uml.get("beta_start", uml.beta)
  hold = int(round(uml.get("hold_fraction", 0.0) * num_steps))
  steps = uml.get("anneal_steps", 0) or max(num_steps - hold, 1)
  return lambda step: losses.annealed_beta(step, start, uml.beta, steps, hold)


def make_uml_train_step(model: RewardModel, mib: MultiViewBottleneck,
                        tx: optax.GradientTransformation, schedule: optax.Schedule,
                        uml: ml_collections.ConfigDict, label_smoothing: float,
                        dropout_seed: int, num_steps: int) -> Callable:
  """Bradley-Terry on (chosen, rejected) + uml.weight * MIB(view_1, view_2), one forward pass of
  the reward model over the 4B rows, beta annealed over `num_steps` (`uml_beta`). Keys derive
  from (dropout_seed, step): resumable exactly."""
  base_rng = jax.random.key(dropout_seed)
  beta_at = uml_beta(uml, num_steps)

  def step(state: state_lib.TrainState, batch: dict):
    rng_drop, rng_z = jax.random.split(jax.random.fold_in(base_rng, state.step))
    b = batch["chosen"].shape[0]
    beta = beta_at(state.step)

    def loss_fn(params):
      tokens, mask = pipeline.stack_rows(batch, ("chosen", "rejected", "view_1", "view_2"))
      r, h = model.apply({"params": reward_model_params(params)}, tokens, mask,
                         deterministic=False, return_features=True, rngs={"dropout": rng_drop})
      rc, rr = r[:b], r[b:2 * b]
      pieces = mib.apply({"params": params[MIB]}, h[2 * b:3 * b], h[3 * b:], rng_z)
      bt = jnp.mean(losses.bradley_terry_loss(rc, rr, label_smoothing))
      mi = jnp.mean(losses.jsd_mutual_information(pieces["t_pos"], pieces["t_neg"]))
      skl = jnp.mean(losses.symmetric_gaussian_kl(pieces["mu_1"], pieces["sigma_1"],
                                                  pieces["mu_2"], pieces["sigma_2"]))
      mib_loss = jnp.mean(losses.mib_loss(**pieces, beta=beta))
      return bt + uml.weight * mib_loss, (rc, rr, bt, mib_loss, mi, skl)

    (loss, (rc, rr, bt, mib_loss, mi, skl)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {"loss": loss, "bt_loss": bt, "mib_loss": mib_loss, "mi_jsd": mi, "skl": skl,
           "beta": beta,
           "accuracy": jnp.mean(losses.preference_accuracy(rc, rr)),
           "margin": jnp.mean(losses.reward_margin(rc, rr)),
           "grad_norm": optax.tree.norm(grads), "lr": schedule(state.step)}
    return state_lib.TrainState(step=state.step + 1, params=params, opt_state=opt_state), out

  return step


UML_RULES = (
    configs.number("uml.weight", 0.0, must="a finite number >= 0 (the paper's lambda: 0.5)"),
    configs.number("uml.beta", 0.0), configs.integer("uml.z_dim"), configs.integer("uml.hidden"),
    configs.number("uml.beta_start", 0.0, lo_open=True, optional=True,
                   must="positive and finite (the annealing is exponential)"),
    configs.number("uml.hold_fraction", 0.0, 1.0, hi_open=True, optional=True,
                   must="in [0, 1) (the share of the run beta stays at beta_start)"),
    configs.integer("uml.anneal_steps", lo=0, optional=True),
    configs.boolean("uml.standardize", optional=True),
    configs.number("uml.lr_multiplier", 0.0, lo_open=True, optional=True),
    configs.Rule("uml.beta", lambda v, c: v > 0 or c.uml.get("beta_start", v) == v,
                 "positive when annealed from beta_start (or equal to it)",
                 reads=("uml.beta_start",)),
)
# A UML run: the reward model's fields and config.uml.
RULES = (*rm_lib.RULES, *UML_RULES, configs.Rule(
    "data.batch_size", lambda v, c: v >= 2,
    "at least 2 (the MI critic's mismatched pairs come from other rows of a batch)"))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """A UML run's config (`RULES`); raises InputError naming the field."""
  configs.check(config, RULES)


def build_uml(config: ml_collections.ConfigDict, devices=None) -> loop.Setup:
  """The reward model's setup with the bottleneck modules added to its params (under 'mib')."""
  validate_config(config)
  model, mib = RewardModel(config.model), bottleneck(config.uml)
  setup = loop.build_setup(config, model, devices)
  dummy = jnp.ones((1, config.data.max_len), jnp.int32)
  feats = jnp.ones((2, config.model.d_model), jnp.float32)

  def init_params(rng):
    r1, r2 = jax.random.split(rng)
    return {**model.init(r1, dummy)["params"], MIB: mib.init(r2, feats, feats, r2)["params"]}

  setup.init_params = init_params
  mult = config.uml.get("lr_multiplier", 1.0)
  if mult != 1.0:  # the bottleneck at its own learning rate: a separate optimiser for 'mib'
    fast = ml_collections.ConfigDict(config.optim.to_dict())
    fast.lr = config.optim.lr * mult
    setup.tx = optax.multi_transform(
        {"model": setup.tx, MIB: state_lib.make_optimizer(fast, config.train.num_steps)},
        lambda params: {k: jax.tree.map(lambda _: MIB if k == MIB else "model", v)
                        for k, v in params.items()})
  setup.shardings = state_lib.state_shardings(init_params, setup.tx, setup.mesh, setup.rules)
  return setup


def with_bottleneck(setup: loop.Setup, rm_params: dict, seed: int = 0) -> dict:
  """Reward-model params (e.g. from an SFT run or a trained RM) plus fresh bottleneck modules."""
  fresh = jax.jit(lambda rng: nn.unbox(setup.init_params(rng)),
                  out_shardings=setup.shardings.params)(jax.random.key(seed))
  return {**rm_params, MIB: fresh[MIB]}


class ViewPairs:
  """A random-access source joining preference records with view records: record i is
  pairs[i % len(pairs)] plus views[i % len(views)] (as 'view_prompt', 'view_1', 'view_2'), over
  max(len(pairs), len(views)) records, so every pair and every view is visited each epoch."""

  def __init__(self, pairs, views: Sequence[dict]):
    if len(pairs) == 0 or len(views) == 0:
      raise ValueError(f"ViewPairs: {len(pairs)} pairs and {len(views)} views; both must be non-empty")
    self.pairs, self.views = pairs, views

  def __len__(self) -> int:
    return max(len(self.pairs), len(self.views))

  def __getitem__(self, i: int) -> dict:
    v = self.views[i % len(self.views)]
    return {**self.pairs[i % len(self.pairs)], "view_prompt": v["prompt"], "view_1": v["view_1"],
            "view_2": v["view_2"]}


class ViewPairEncoder:
  """Encodes a ViewPairs record: chosen/rejected rows and the two views' rows (prompt + response,
  as the reward model reads any response), each with its mask. A plain preference record (an
  evaluation split) gets its chosen/rejected rows only."""

  def __init__(self, tokenizer, max_len: int):
    self.pair = pipeline.PairEncoder(tokenizer, max_len)

  def __call__(self, record: dict) -> dict[str, np.ndarray]:
    out = self.pair(record)
    if "view_1" in record:
      views = self.pair({"prompt": record["view_prompt"], "chosen": record["view_1"],
                         "rejected": record["view_2"]})
      out.update(view_1=views["chosen"], view_2=views["rejected"],
                 view_1_mask=views["chosen_mask"], view_2_mask=views["rejected_mask"])
    return out


def train_uml(config: ml_collections.ConfigDict, workdir: str, sources: dict,
              views: Sequence[dict], tokenizer, init_params: Any, devices=None) -> dict:
  """Trains (or resumes) a reward model with RLP-UML. `sources`: 'train' preference pairs and the
  eval splits (scored as usual); `views`: records {'prompt', 'view_1', 'view_2'} of policy
  samples; `init_params`: reward-model params to start from (the bottleneck is added fresh).
  Returns the final evaluation metrics and the state (params include 'mib': see
  `reward_model_params`)."""
  setup = build_uml(config, devices)
  eval_step = rm_lib.make_eval_step(setup.model, config.train.label_smoothing)
  return loop.fit(
      config, workdir, setup, {**sources, "train": ViewPairs(sources["train"], views)},
      ViewPairEncoder(tokenizer, config.data.max_len),
      make_uml_train_step(setup.model, bottleneck(config.uml), setup.tx, setup.schedule, config.uml,
                          config.train.label_smoothing, config.seed + 1, config.train.num_steps),
      lambda params, batch: eval_step(reward_model_params(params), batch),
      init_params=with_bottleneck(setup, init_params, config.seed),
      desc="reward model (RLP-UML)", show=("bt_loss", "mi_jsd", "beta", "accuracy"))


def views_from_samples(prompts: Sequence[str], samples: Sequence[Sequence[str]]) -> list[dict]:
  """RLP-UML's views: for each prompt, its first two policy samples (the samples are i.i.d., so
  any two are a random pair)."""
  out = []
  for p, ys in zip(prompts, samples):
    if len(ys) < 2:
      raise ValueError(f"UML needs >= 2 samples per prompt, got {len(ys)} for prompt {p[:60]!r}")
    out.append({"prompt": p, "view_1": ys[0], "view_2": ys[1]})
  return out


# ---------------------------------------------------------------- SPG

def cluster(responses: Sequence[str], meaning: Callable[[str], Hashable]) -> np.ndarray:
  """Cluster ids [n] of responses grouped by equal `meaning(response)`, numbered in order of
  first appearance."""
  ids: dict[Hashable, int] = {}
  return np.asarray([ids.setdefault(meaning(r), len(ids)) for r in responses], np.int64)


def select_pair(clusters: np.ndarray, scores: np.ndarray, gamma: float,
                rng: np.random.Generator) -> tuple[int, int, float] | None:
  """RLP-SPG's rule for one prompt's n samples: (chosen index, rejected index, confidence), or
  None when the prompt is not kept.

  confidence = size of the largest cluster / n (ties: the cluster seen first). Kept when
  confidence >= gamma and some sample lies outside that cluster. chosen: the largest cluster's
  sample with the highest score (first on ties); rejected: a uniformly random sample of the others.
  """
  clusters, scores = np.asarray(clusters), np.asarray(scores, np.float64)
  if clusters.shape != scores.shape or clusters.ndim != 1 or clusters.size == 0:
    raise ValueError(f"select_pair: clusters {clusters.shape} and scores {scores.shape} must be "
                     "one non-empty [n] shape")
  counts = np.bincount(clusters)
  top = int(np.argmax(counts))
  confidence = float(counts[top] / clusters.size)
  inside = np.flatnonzero(clusters == top)
  outside = np.flatnonzero(clusters != top)
  if confidence < gamma or outside.size == 0:
    return None
  chosen = int(inside[np.argmax(scores[inside])])
  rejected = int(outside[rng.integers(outside.size)])
  return chosen, rejected, confidence


def synthetic_pairs(prompts: Sequence[str], samples: Sequence[Sequence[str]], scores: np.ndarray,
                    meaning: Callable[[str], Hashable], gamma: float, seed: int = 0
                    ) -> tuple[list[dict], dict]:
  """RLP-SPG over prompts (samples: [prompts][n] texts, scores: [prompts, n] from the reward model
  being refined): the synthetic preference records and statistics (kept prompts, confidences)."""
  scores = np.asarray(scores)
  if scores.shape != (len(prompts), len(samples[0]) if samples else 0):
    raise ValueError(f"scores {scores.shape} do not match {len(prompts)} prompts x n samples")
  rng = np.random.default_rng([seed, 0x5E6])
  pairs, confidences, single_meaning = [], [], 0
  for i, (p, ys) in enumerate(zip(prompts, samples)):
    c = cluster(ys, meaning)
    confidences.append(float(np.bincount(c).max() / len(ys)))
    single_meaning += int(c.max() == 0)
    picked = select_pair(c, scores[i], gamma, rng)
    if picked is not None:
      chosen, rejected, conf = picked
      pairs.append({"prompt": p, "chosen": ys[chosen], "rejected": ys[rejected],
                    "confidence": conf, "synthetic": True})
  stats = {"prompts": len(prompts), "kept": len(pairs),
           "kept_fraction": len(pairs) / max(len(prompts), 1),
           "one_meaning": single_meaning, "mean_confidence": float(np.mean(confidences)),
           "confidence_histogram": np.histogram(confidences, bins=10, range=(0, 1))[0].tolist()}
  return pairs, stats
