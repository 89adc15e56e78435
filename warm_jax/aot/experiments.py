"""Which models an experiment trains, with which trainer and which config.

    trained("rlp", config)  ->  [reward model, RLP-UML, PPO]: each a `Trained` whose `config` is
                                the trainer config the study itself builds (`rlp.rm_config`, ...)

Every stage of a multi-stage experiment that trains a model is listed, through the same
functions its study calls to derive that stage's config from the experiment's; the WARM job
(`experiments/warm.py`) lists its stages' (each its section of the same name). `section` is where
the stage's settings live in the experiment's config, so a fix can be written as overrides
(`--config.warm_label_noise.rm.mesh.shape=...`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from warm_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Trained:
  label: str
  kind: str  # a key of programs.TRAINERS
  section: str  # dotted path of its settings in the experiment's config ('' : the top)
  derive: Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict]

  def config(self, experiment: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The trainer's config (a copy: changing it leaves the experiment's alone)."""
    return ml_collections.ConfigDict(self.derive(experiment).to_dict())


def _own(label: str, kind: str) -> list[Trained]:
  return [Trained(label, kind, "", lambda c: c)]


def _label_noise(c):
  from warm_jax.studies.warm import label_noise
  return label_noise.member_configs(c)[0]


def _warm_rl(c):
  from warm_jax.studies.warm import rl
  return rl.run_config(c, reward_path="")


def _rlp(name: str):
  def derive(c):
    from warm_jax.studies import rlp
    return {"rm": rlp.rm_config, "uml": rlp.uml_config,
            "ppo": lambda c: rlp.ppo_config(c, reward_path="")}[name](c)
  return derive


def _soups(name: str):
  def derive(c):
    from warm_jax.studies import rewarded_soups
    if name == "rm":
      return rewarded_soups.rm_config(c)
    return rewarded_soups.rl_config(c, (1.0, 0.0), ("", ""), (0.0, 0.0), (1.0, 1.0))
  return derive


def _active(c):
  from warm_jax.studies import active_queries
  return active_queries.member_config(c, c.schedule[-1], 0)


def _modpo(c):
  from warm_jax.studies import modpo
  return modpo.run_config(c, c.lambdas[0])


TRAINS: dict[str, list[Trained]] = {
    "reward_model": _own("reward model", "reward_model"),
    "pretrain": _own("pretrain", "lm"),
    "sft": _own("SFT", "lm"),
    "dpo": _own("DPO", "dpo"),
    "rl": _own("RL", "policy"),
    "warm_label_noise": [Trained("reward models", "reward_model", "rm", _label_noise)],
    "warm_rl": [Trained("RL", "policy", "", _warm_rl)],
    "rlp": [Trained("reward model", "reward_model", "rm", _rlp("rm")),
            Trained("RLP-UML", "rlp_uml", "rm", _rlp("uml")),
            Trained("PPO", "policy", "", _rlp("ppo"))],
    "rewarded_soups": [Trained("reward models", "reward_model", "rm", _soups("rm")),
                       Trained("RL", "policy", "", _soups("rl"))],
    "active_queries": [Trained("reward models", "reward_model", "", _active)],
    "modpo": [Trained("MODPO", "dpo", "", _modpo)],
}


def _job_stages() -> tuple[str, ...]:
  from warm_jax.studies.warm import job
  return job.NAMES


def trained(name: str, config: ml_collections.ConfigDict) -> list[Trained]:
  """What experiment `name` (experiments/<name>.py) trains; InputError if it trains nothing."""
  if name == "warm":
    out = []
    for stage in _job_stages():
      for t in TRAINS.get(stage, []):
        out.append(Trained(f"{stage}: {t.label}", t.kind, ".".join(filter(None, (stage, t.section))),
                           lambda c, t=t, stage=stage: t.derive(c[stage])))
    return out
  if name not in TRAINS:
    raise InputError(f"experiments/{name}.py trains no model here: nothing to compile; the "
                     f"experiments that do: {', '.join(sorted([*TRAINS, 'warm']))}")
  return TRAINS[name]
