"""Pure loss functions: arrays in, arrays out. Per-example values; callers take the mean.

Bradley-Terry reward learning (Christiano et al. 2017): P(chosen > rejected) = sigmoid(r_c - r_r);
DPO / IPO / MODPO on log-ratios; the multi-view information bottleneck of RLP-UML; the
policy-gradient pieces of KL-regularised RL (REINFORCE and RLOO advantages, GAE, PPO's clipped
losses).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def bradley_terry_loss(r_chosen: Array, r_rejected: Array, label_smoothing: float = 0.0) -> Array:
  """-log P(chosen > rejected), with the label smoothed towards 1/2 by `label_smoothing`.

  With smoothing eps the target is (1 - eps) on "chosen wins" and eps on "rejected wins":
  loss = -(1 - eps) log sigmoid(d) - eps log sigmoid(-d), d = r_chosen - r_rejected.
  """
  d = (r_chosen - r_rejected).astype(jnp.float32)
  return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(d) - label_smoothing * jax.nn.log_sigmoid(-d)


def center_rewards_penalty(r_chosen: Array, r_rejected: Array) -> Array:
  """mean((r_chosen + r_rejected)^2): the auxiliary loss of TRL's RewardTrainer
  (`center_rewards_coefficient`, Eisenstein et al. 2023) that pulls the rewards towards mean 0
  without changing any preference."""
  return jnp.mean(jnp.square((r_chosen + r_rejected).astype(jnp.float32)))


def preference_accuracy(r_chosen: Array, r_rejected: Array) -> Array:
  """1 where the chosen response gets the strictly higher reward, else 0 (ties count as wrong)."""
  return (r_chosen > r_rejected).astype(jnp.float32)


def reward_margin(r_chosen: Array, r_rejected: Array) -> Array:
  return (r_chosen - r_rejected).astype(jnp.float32)


# ---------------------------------------------------------------- DPO / IPO
# Direct preference optimisation (Rafailov et al. 2023, arXiv 2305.18290) and IPO (Azar et al.
# 2023, arXiv 2310.12036) act on the policy's and a frozen reference policy's log-probabilities of
# the chosen and rejected responses (one scalar per example each; summed over response tokens, or
# averaged, as the caller decides). h = [log pi(y_c) - log pi_ref(y_c)] - [log pi(y_r) - log pi_ref(y_r)].


def _logratio_margin(policy_chosen_logp: Array, policy_rejected_logp: Array,
                     ref_chosen_logp: Array, ref_rejected_logp: Array) -> Array:
  c = policy_chosen_logp.astype(jnp.float32) - ref_chosen_logp.astype(jnp.float32)
  r = policy_rejected_logp.astype(jnp.float32) - ref_rejected_logp.astype(jnp.float32)
  return c - r


def dpo_loss(policy_chosen_logp: Array, policy_rejected_logp: Array, ref_chosen_logp: Array,
             ref_rejected_logp: Array, beta: float, label_smoothing: float = 0.0) -> Array:
  """DPO loss -log sigmoid(beta * h) per example; with `label_smoothing` eps > 0 the conservative
  DPO (cDPO) variant, which assumes a fraction eps of the labels is flipped:
  -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h). Equals log 2 when policy == reference."""
  h = _logratio_margin(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp)
  return bradley_terry_loss(beta * h, jnp.zeros_like(h), label_smoothing)


def ipo_loss(policy_chosen_logp: Array, policy_rejected_logp: Array, ref_chosen_logp: Array,
             ref_rejected_logp: Array, beta: float) -> Array:
  """IPO loss (h - 1 / (2 beta))^2 per example: regresses the log-ratio margin h onto 1 / (2 beta)
  (beta plays the role of the paper's tau) instead of pushing it to infinity as DPO can."""
  h = _logratio_margin(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp)
  return (h - 1.0 / (2.0 * beta)) ** 2


def modpo_loss(policy_chosen_logp: Array, policy_rejected_logp: Array, ref_chosen_logp: Array,
               ref_rejected_logp: Array, beta: float, weight: float, margin: Array) -> Array:
  """MODPO loss (Zhou et al. 2023, arXiv 2310.03708) per example:
  -log sigmoid((beta * h - margin) / weight), where `weight` is w_k, the objective weight of the
  criterion that labelled the pair, and `margin` = w_{-k} . (r_{-k}(x, y_c) - r_{-k}(x, y_r)), the
  other objectives' weighted reward differences from fixed reward models. weight 1 and margin 0:
  the DPO loss. When the objectives are combined on a standardised scale (MORL's: each reward
  divided by its standard deviation s_i), the target is sum_i w_i r_i / s_i: pass the margin of the
  standardised other rewards and weight = w_k / s_k (the data objective's preferences come in its
  own reward's units)."""
  h = _logratio_margin(policy_chosen_logp, policy_rejected_logp, ref_chosen_logp, ref_rejected_logp)
  return -jax.nn.log_sigmoid((beta * h - margin.astype(jnp.float32)) / weight)


def implicit_rewards(policy_logp: Array, ref_logp: Array, beta: float) -> Array:
  """DPO's implicit reward beta * (log pi(y|x) - log pi_ref(y|x)) (up to a per-prompt constant)."""
  return beta * (policy_logp.astype(jnp.float32) - ref_logp.astype(jnp.float32))


# ---------------------------------------------------------------- multi-view information bottleneck
# RLP-UML (Lang et al. 2024, arXiv 2403.19279) trains the reward model jointly with the multi-view
# information bottleneck (MIB) of Federici et al. 2020 (arXiv 2002.07017). Two views v1, v2 of one
# prompt (two policy responses to it) are encoded stochastically, p(z | v) = N(mu(v), diag(sigma(v)^2)),
#   L_MIB = -I(z1; z2) + beta * D_SKL(p(z | v1) || p(z | v2)),
# keeping in z what the views share and dropping what only one of them holds. I(z1; z2) is the
# Jensen-Shannon lower bound (Hjelm et al. 2018) with a critic T scored on matched (positive) and
# mismatched (negative) pairs of codes: I_JSD = E_pos[-softplus(-T)] - E_neg[softplus(T)].


def gaussian_kl(mu_p: Array, sigma_p: Array, mu_q: Array, sigma_q: Array) -> Array:
  """KL(N(mu_p, diag sigma_p^2) || N(mu_q, diag sigma_q^2)) in closed form, summed over the last
  axis: [..., D] -> [...]."""
  mu_p, sigma_p, mu_q, sigma_q = (x.astype(jnp.float32) for x in (mu_p, sigma_p, mu_q, sigma_q))
  var_p, var_q = jnp.square(sigma_p), jnp.square(sigma_q)
  per_dim = jnp.log(sigma_q / sigma_p) + (var_p + jnp.square(mu_p - mu_q)) / (2.0 * var_q) - 0.5
  return jnp.sum(per_dim, axis=-1)


def symmetric_gaussian_kl(mu_1: Array, sigma_1: Array, mu_2: Array, sigma_2: Array) -> Array:
  """D_SKL = (KL(p1 || p2) + KL(p2 || p1)) / 2 of two diagonal Gaussians: [..., D] -> [...]."""
  return 0.5 * (gaussian_kl(mu_1, sigma_1, mu_2, sigma_2) + gaussian_kl(mu_2, sigma_2, mu_1, sigma_1))


def jsd_mutual_information(t_pos: Array, t_neg: Array) -> Array:
  """Per-example Jensen-Shannon MI lower bound -softplus(-T_pos) - softplus(T_neg): the critic's
  score of a matched pair of codes and of a mismatched one. Its mean is the estimate of I(z1; z2)
  (up to constants); it is highest when the critic tells matched from mismatched pairs."""
  return -jax.nn.softplus(-t_pos.astype(jnp.float32)) - jax.nn.softplus(t_neg.astype(jnp.float32))


def annealed_beta(step, start: float, end: float, steps: int, hold: int = 0):
  """Federici et al.'s beta schedule: `start` for the first `hold` steps, then exponentially to
  `end` over the next `steps` (constant after; `end` throughout when start == end or steps <= 0).
  Traceable in `step`."""
  if steps <= 0 or start == end:
    return jnp.asarray(end, jnp.float32)
  frac = jnp.clip((jnp.asarray(step, jnp.float32) - hold) / steps, 0.0, 1.0)
  return jnp.asarray(start, jnp.float32) * (end / start) ** frac


def mib_loss(t_pos: Array, t_neg: Array, mu_1: Array, sigma_1: Array, mu_2: Array, sigma_2: Array,
             beta: float = 1.0) -> Array:
  """Per-example multi-view information bottleneck loss -I_JSD + beta * D_SKL (RLP's Eq. for L_M
  has beta = 1; Federici et al. anneal it)."""
  return (-jsd_mutual_information(t_pos, t_neg)
          + beta * symmetric_gaussian_kl(mu_1, sigma_1, mu_2, sigma_2))


# ---------------------------------------------------------------- policy gradients
# KL-regularised RL (`warm_jax.train.policy`): REINFORCE with a batch-mean baseline, RLOO, PPO
# with GAE and clipping, GRPO. Arrays are [B] per sequence or [B, N] per response token, with
# `mask` marking the real tokens.

def sequence_kl(sample_logp: Array, ref_logp: Array, mask: Array) -> Array:
  """Per-sequence KL estimate sum_t [log pi(y_t) - log pi_ref(y_t)] over real tokens: [B]."""
  return jnp.sum((sample_logp - ref_logp) * mask, axis=-1)


def reinforce_advantages(returns: Array) -> Array:
  """REINFORCE with the batch-mean baseline."""
  return returns - jnp.mean(returns)


def rloo_advantages(returns: Array, k: int) -> Array:
  """Leave-one-out baseline: rows are grouped k per prompt (prompt-major); each row's baseline
  is the mean of the other k - 1 rows of its group."""
  g = returns.reshape(-1, k)
  baseline = (jnp.sum(g, axis=1, keepdims=True) - g) / (k - 1)
  return (g - baseline).reshape(-1)


def gae(rewards: Array, values: Array, mask: Array, gamma: float, lam: float):
  """Generalised advantage estimation over [B, N] token rewards/values (mask: real tokens,
  a prefix of each row). Returns (advantages, returns), zero on padding."""
  n = rewards.shape[1]
  next_values = jnp.concatenate([values[:, 1:] * mask[:, 1:], jnp.zeros_like(values[:, :1])], 1)
  deltas = (rewards + gamma * next_values - values) * mask

  def back(carry, t):
    adv = deltas[:, t] + gamma * lam * carry * mask[:, t]
    return adv, adv

  _, advs = jax.lax.scan(back, jnp.zeros_like(rewards[:, 0]), jnp.arange(n - 1, -1, -1))
  advantages = advs[::-1].T * mask
  return advantages, (advantages + values) * mask


def masked_whiten(x: Array, mask: Array, eps: float = 1e-8) -> Array:
  n = jnp.maximum(jnp.sum(mask), 1.0)
  mean = jnp.sum(x * mask) / n
  var = jnp.sum(jnp.square(x - mean) * mask) / n
  return (x - mean) * jax.lax.rsqrt(var + eps) * mask


def ppo_losses(logp: Array, old_logp: Array, advantages: Array, values: Array, old_values: Array,
               returns: Array, mask: Array, clip_eps: float, value_clip: float):
  """Clipped surrogate policy loss and clipped value loss, token means over real tokens."""
  n = jnp.maximum(jnp.sum(mask), 1.0)
  ratio = jnp.exp(logp - old_logp)
  pg = jnp.maximum(-advantages * ratio, -advantages * jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps))
  v_clipped = old_values + jnp.clip(values - old_values, -value_clip, value_clip)
  vf = 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(v_clipped - returns))
  clip_frac = jnp.sum((jnp.abs(ratio - 1) > clip_eps) * mask) / n
  return jnp.sum(pg * mask) / n, jnp.sum(vf * mask) / n, clip_frac


def group_advantages(rewards: Array, k: int, normalize_std: bool = True,
                     eps: float = 1e-4) -> Array:
  """GRPO's outcome advantages (DeepSeekMath, arXiv 2402.03300, Sec. 4.1.2): rows grouped k per
  prompt (prompt-major); each row's reward minus its group's mean, divided by the group's
  standard deviation when `normalize_std` (the sample standard deviation, n - 1, plus `eps`: as
  TRL's GRPOTrainer). [B] -> [B]."""
  g = rewards.astype(jnp.float32).reshape(-1, k)
  adv = g - jnp.mean(g, axis=1, keepdims=True)
  if normalize_std:
    adv = adv / (jnp.std(g, axis=1, keepdims=True, ddof=1) + eps)
  return adv.reshape(-1)


def k3_kl(logp: Array, ref_logp: Array) -> Array:
  """GRPO's per-token KL estimator (Schulman's k3): pi_ref / pi - log(pi_ref / pi) - 1, >= 0 and
  an unbiased estimate of KL(pi || pi_ref) on tokens sampled from pi. [B, N] -> [B, N]."""
  d = ref_logp - logp
  return jnp.exp(d) - d - 1.0


def grpo_loss(logp: Array, old_logp: Array, ref_logp: Array, advantages: Array, mask: Array,
              clip_eps: float, beta: float):
  """DeepSeekMath's GRPO objective, negated (their Eq. 3): per response, the mean over its real
  tokens of -min(r A, clip(r, 1 - eps, 1 + eps) A) + beta * k3_kl, with r = pi / pi_old and A
  the response's advantage [B]; then the mean over responses. Returns (loss, (policy term, KL
  term, clip fraction)), the terms as token means."""
  n = jnp.maximum(jnp.sum(mask, axis=1), 1.0)
  ratio = jnp.exp(logp - old_logp)
  a = advantages[:, None]
  pg = jnp.maximum(-a * ratio, -a * jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps))
  kl = k3_kl(logp, ref_logp)
  per_seq = lambda x: jnp.sum(x * mask, axis=1) / n  # noqa: E731
  loss = jnp.mean(per_seq(pg + beta * kl))
  clip_frac = jnp.sum((jnp.abs(ratio - 1) > clip_eps) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return loss, (jnp.mean(per_seq(pg)), jnp.mean(per_seq(kl)), clip_frac)


def sequence_reward_tokens(reward: Array, mask: Array) -> Array:
  """Places each sequence's reward on its last real token: [B] -> [B, N]."""
  last = jnp.maximum(jnp.sum(mask, axis=1).astype(jnp.int32) - 1, 0)
  return jax.nn.one_hot(last, mask.shape[1]) * reward[:, None] * (jnp.sum(mask, 1) > 0)[:, None]
