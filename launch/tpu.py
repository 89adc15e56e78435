r"""Runs an experiment on every worker of a TPU VM slice (one JAX process per worker).

    python launch/tpu.py --name=warm-v4 --zone=us-central2-b --accelerator=v4-32 \
        --bucket=my-bucket --workdir=runs/warm_paper \
        --experiment=experiments/reward_model.py --variant=paper -- --config.optim.lr=1e-5
    python launch/tpu.py ... --dry-run          # prints every command, runs none

The steps, each a gcloud command:
  1. reuse the slice if `gcloud compute tpus tpu-vm describe` finds it, else create it
     (`--spot` for a pre-emptible one: training saves a checkpoint on SIGTERM and the same
     command resumes it);
  2. pack this checkout (`git archive` of HEAD, or of --rev) and copy it to every worker;
  3. on every worker (`ssh --worker=all`): unpack it, install the package with jax[tpu], and mount
     the bucket with gcsfuse at /mnt/<bucket> (the workdir must be shared by all workers: orbax
     writes each worker's shards into the same checkpoint; metrics, configs and plots come from
     worker 0 only);
  4. on every worker: the experiment with --distributed (JAX finds the pod's workers itself) and
     --workdir=/mnt/<bucket>/<workdir>, its output also written to
     <workdir>/logs/<worker hostname>.log in the bucket.
Arguments after `--` go to the experiment.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

DEFAULT_VERSION = "tpu-ubuntu2204-base"


def gcloud(args, *rest: str) -> list[str]:
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", *rest, f"--zone={args.zone}"]
  return cmd + ([f"--project={args.project}"] if args.project else [])


def archive_path(rev: str) -> str:
  return f"/tmp/warm_jax-{rev}.tar.gz"


def worker_setup(args) -> str:
  mnt = f"/mnt/{args.bucket}"
  return " && ".join([
      "mkdir -p ~/warm_jax", "tar -xzf ~/warm_jax.tar.gz -C ~/warm_jax", "cd ~/warm_jax",
      "python3 -m pip install --quiet -e . 'jax[tpu]'",
      f"(mountpoint -q {mnt} || (sudo mkdir -p {mnt} && sudo chown $USER {mnt} && "
      f"gcsfuse --implicit-dirs {shlex.quote(args.bucket)} {mnt}))"])


def worker_run(args, extra: list[str]) -> str:
  wd = f"/mnt/{args.bucket}/{args.workdir}"
  exp = shlex.join(["python3", args.experiment, f"--config={args.experiment}:{args.variant}",
                    f"--workdir={wd}", "--distributed", *extra])
  return (f"cd ~/warm_jax && mkdir -p {shlex.quote(wd)}/logs && {exp} 2>&1 | "
          f"tee {shlex.quote(wd)}/logs/$(hostname).log")


def commands(args, extra: list[str]) -> dict[str, list[str]]:
  """Every command of the launch, by step."""
  create = gcloud(args, "create", args.name, f"--accelerator-type={args.accelerator}",
                  f"--version={args.version}") + (["--spot"] if args.spot else [])
  return {
      "describe": gcloud(args, "describe", args.name),
      "create": create,
      "archive": ["git", "archive", "--format=tar.gz", f"--output={archive_path(args.rev)}", args.rev],
      "copy": gcloud(args, "scp", archive_path(args.rev), f"{args.name}:~/warm_jax.tar.gz",
                     "--worker=all"),
      "setup": gcloud(args, "ssh", args.name, "--worker=all", f"--command={worker_setup(args)}"),
      "run": gcloud(args, "ssh", args.name, "--worker=all", f"--command={worker_run(args, extra)}"),
  }


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--name", required=True, help="the TPU VM slice")
  p.add_argument("--zone", required=True)
  p.add_argument("--project", default="")
  p.add_argument("--accelerator", default="v4-8", help="e.g. v4-32, v5litepod-16")
  p.add_argument("--version", default=DEFAULT_VERSION, help="TPU VM software version")
  p.add_argument("--spot", action="store_true")
  p.add_argument("--bucket", required=True, help="GCS bucket name (no gs://) for the workdir")
  p.add_argument("--workdir", required=True, help="path inside the bucket")
  p.add_argument("--experiment", required=True, help="experiments/X.py")
  p.add_argument("--variant", default="paper")
  p.add_argument("--rev", default="HEAD", help="the git revision to ship")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
  if args.bucket.startswith("gs://") or "/" in args.bucket:
    raise SystemExit(f"--bucket={args.bucket}: the bucket's name only (the workdir goes in --workdir)")
  if args.workdir.startswith("/") or ".." in args.workdir.split("/"):
    raise SystemExit(f"--workdir={args.workdir}: a relative path inside the bucket")
  return args, extra


def main(argv=None) -> int:
  args, extra = parse(argv)
  cmds = commands(args, extra)
  if args.dry_run:
    print(f"# if `{shlex.join(cmds['describe'])}` fails:")
    for step in ("create", "archive", "copy", "setup", "run"):
      print(shlex.join(cmds[step]))
    return 0
  if subprocess.call(cmds["describe"], stdout=subprocess.DEVNULL) != 0:
    print(f"creating {args.name} ({args.accelerator})", flush=True)
    subprocess.check_call(cmds["create"])
  else:
    print(f"reusing {args.name}", flush=True)
  for step in ("archive", "copy", "setup", "run"):
    print(f"== {step}: {shlex.join(cmds[step])}", flush=True)
    subprocess.check_call(cmds[step])
  return 0


if __name__ == "__main__":
  sys.exit(main())
