"""The papers' studies as library code; `experiments/*.py` only configure them.

Each study is a module with `main(config, workdir) -> dict` (the JSON-able result it also writes
into `workdir`), so it runs alone from its experiment file (`cli.run(study.main)`) or as a stage
of a multi-stage job (`warm_jax.stages`):

    lm                  pre-training and SFT of the shared language model
    reward_model        Bradley-Terry reward model
    rl                  KL-regularised RL against the gold reward, a reward model or a weighted sum
    dpo                 DPO / IPO / MODPO against a frozen reference
    best_of_n           best-of-N against a reward model (or WARM / ENS of several)
    interpolate         one point of a WARM pair's interpolation path
    reward_hacking      off-distribution attacks on a trained reward model
    rl_curves           reward vs KL of RL runs, from their logs (also a command)
    warm/               the WARM main job: label noise, linear mode connectivity, best-of-N, RL
    rlp                 reward learning on policy (UML, SPG)
    rewarded_soups      rewarded soups against multi-objective RL
    modpo               multi-objective DPO against the soups' fronts
    active_queries      ensemble-disagreement queries against random ones
    model_written_evals a language model writes evals, a preference model filters them
"""

# What a study's config.init_from names when it starts from the shared SFT policy.
SFT_RUN = "the SFT run, e.g. --config.init_from=runs/warm/sft (made by launch/quickstart.sh)"
