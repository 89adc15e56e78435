"""The launchers' --dry-run commands, exactly, and their refusals of bad input."""

import os

import pytest


from conftest import script

gpu, tpu = script("launch/gpu.py"), script("launch/tpu.py")

TPU = ["--name=warm-v4", "--zone=us-central2-b", "--accelerator=v4-32", "--bucket=my-bucket",
       "--workdir=runs/rm", "--experiment=experiments/reward_model.py", "--spot"]


def test_tpu_dry_run_commands(capsys):
  assert tpu.main(TPU + ["--dry-run", "--", "--config.optim.lr=1e-5"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  z = "--zone=us-central2-b"
  assert lines[0] == f"# if `gcloud compute tpus tpu-vm describe warm-v4 {z}` fails:"
  assert lines[1] == ("gcloud compute tpus tpu-vm create warm-v4 --accelerator-type=v4-32 "
                      f"--version=tpu-ubuntu2204-base {z} --spot")
  assert lines[2] == "git archive --format=tar.gz --output=/tmp/warm_jax-HEAD.tar.gz HEAD"
  assert lines[3] == (f"gcloud compute tpus tpu-vm scp /tmp/warm_jax-HEAD.tar.gz "
                      f"'warm-v4:~/warm_jax.tar.gz' --worker=all {z}")
  assert lines[4].startswith("gcloud compute tpus tpu-vm ssh warm-v4 --worker=all '--command=")
  assert "gcsfuse --implicit-dirs my-bucket /mnt/my-bucket" in lines[4]
  assert "pip install --quiet -e . '\"'\"'jax[tpu]'\"'\"'" in lines[4]
  run = lines[5]
  assert run.startswith("gcloud compute tpus tpu-vm ssh warm-v4 --worker=all '--command=")
  assert ("python3 experiments/reward_model.py --config=experiments/reward_model.py:paper "
          "--workdir=/mnt/my-bucket/runs/rm --distributed --config.optim.lr=1e-5") in run
  assert "tee /mnt/my-bucket/runs/rm/logs/$(hostname).log" in run


def test_tpu_project_and_bad_input():
  args, _ = tpu.parse(TPU + ["--project=p1"])
  assert tpu.commands(args, [])["describe"][-1] == "--project=p1"
  for bad, match in (("--bucket=gs://my-bucket", "bucket's name"), ("--workdir=/abs", "relative"),
                     ("--workdir=../up", "relative")):
    with pytest.raises(SystemExit, match=match):
      tpu.parse([a for a in TPU if not a.startswith(bad.split("=")[0])] + [bad])


GPU = ["--experiment=experiments/rl.py", "--variant=paper", "--workdir=/shared/runs/rl"]


def test_gpu_single_host_and_ssh_hosts(capsys):
  assert gpu.main(GPU + ["--dry-run", "--", "--config.seed=1"]) == 0
  out = capsys.readouterr().out.strip()
  assert out.endswith("experiments/rl.py --config=experiments/rl.py:paper "
                      "--workdir=/shared/runs/rl --config.seed=1")
  assert gpu.main(GPU + ["--hosts=g0,g1", "--repo=/src/warm_jax", "--port=2222", "--dry-run"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  for i, h in enumerate(("g0", "g1")):
    assert lines[i] == (
        f"ssh {h} 'cd /src/warm_jax && mkdir -p /shared/runs/rl/logs && WARM_JAX_COORDINATOR=g0:2222 "
        f"WARM_JAX_NUM_PROCESSES=2 WARM_JAX_PROCESS_ID={i} python3 experiments/rl.py "
        "--config=experiments/rl.py:paper --workdir=/shared/runs/rl --distributed > "
        f"/shared/runs/rl/logs/{h}.log 2>&1'")


def test_gpu_slurm_script(capsys):
  assert gpu.main(GPU + ["--slurm", "--nodes=4", "--gpus-per-node=8", "--partition=a100",
                         "--repo=/src/warm_jax", "--dry-run"]) == 0
  out = capsys.readouterr().out
  for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
               "#SBATCH --partition=a100", "cd /src/warm_jax",
               "srun --output=/shared/runs/rl/logs/%N.log python3 experiments/rl.py "
               "--config=experiments/rl.py:paper --workdir=/shared/runs/rl --distributed",
               "# then: sbatch /shared/runs/rl/launch.sbatch"):
    assert line in out.splitlines(), line
  assert not os.path.exists("/shared/runs/rl")


@pytest.mark.parametrize("extra,match", [(["--hosts=a,b", "--slurm"], "choose one"),
                                         (["--hosts=a,a"], "a host twice"),
                                         (["--nodes=0", "--slurm"], "--nodes")])
def test_gpu_bad_input(extra, match):
  with pytest.raises(SystemExit, match=match):
    gpu.parse(GPU + extra)
