r"""Runs an experiment on local GPUs: one host with all its GPUs, several hosts over ssh, or a SLURM
allocation (one JAX process per host in the multi-host cases).

    python launch/gpu.py --experiment=experiments/reward_model.py --variant=paper --workdir=runs/rm
    python launch/gpu.py ... --hosts=gpu0,gpu1 --repo=~/warm_jax      # ssh; coordinator gpu0
    python launch/gpu.py ... --slurm --nodes=2 --gpus-per-node=8      # writes and submits sbatch
    python launch/gpu.py ... --dry-run                                 # prints, runs nothing

One host: the experiment as it is (JAX sees every local GPU; the config's mesh spans them).
--hosts: on each host over ssh, the experiment with --distributed and WARM_JAX_COORDINATOR=<first
host>:<port>, WARM_JAX_NUM_PROCESSES, WARM_JAX_PROCESS_ID set, its output in
<workdir>/logs/<host>.log; the workdir must be on a file system every host shares (orbax writes
each process's shards into one checkpoint). --slurm: an sbatch script whose `srun` starts one task
per node with --distributed (JAX reads SLURM's variables: coordinator, process count and id),
written to <workdir>/launch.sbatch and submitted. Arguments after `--` go to the experiment.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys


def experiment_cmd(args, extra: list[str], python: str = "python3") -> list[str]:
  return [python, args.experiment, f"--config={args.experiment}:{args.variant}",
          f"--workdir={args.workdir}", *extra]


def host_cmds(args, extra: list[str]) -> list[list[str]]:
  """One ssh command per host, process i on hosts[i]; hosts[0] coordinates."""
  hosts = args.hosts.split(",")
  out = []
  for i, h in enumerate(hosts):
    env = (f"WARM_JAX_COORDINATOR={hosts[0]}:{args.port} WARM_JAX_NUM_PROCESSES={len(hosts)} "
           f"WARM_JAX_PROCESS_ID={i}")
    exp = shlex.join(experiment_cmd(args, [*extra, "--distributed"]))
    log = shlex.quote(f"{args.workdir}/logs/{h}.log")
    out.append(["ssh", h, f"cd {args.repo} && mkdir -p {shlex.quote(args.workdir)}/logs && "
                f"{env} {exp} > {log} 2>&1"])
  return out


def sbatch_script(args, extra: list[str]) -> str:
  exp = shlex.join(experiment_cmd(args, [*extra, "--distributed"]))
  lines = ["#!/bin/bash", f"#SBATCH --job-name=warm_jax-{os.path.basename(args.experiment)[:-3]}",
           f"#SBATCH --nodes={args.nodes}", "#SBATCH --ntasks-per-node=1",
           f"#SBATCH --gpus-per-node={args.gpus_per_node}",
           f"#SBATCH --output={args.workdir}/logs/slurm-%j.out"]
  lines += [f"#SBATCH --partition={args.partition}"] if args.partition else []
  lines += [f"#SBATCH --time={args.time}"] if args.time else []
  lines += [f"cd {args.repo}",
            f"srun --output={args.workdir}/logs/%N.log {exp}"]
  return "\n".join(lines) + "\n"


def parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--experiment", required=True)
  p.add_argument("--variant", default="paper")
  p.add_argument("--workdir", required=True)
  p.add_argument("--hosts", default="", help="h0,h1,...: one process per host over ssh")
  p.add_argument("--port", type=int, default=12355, help="the coordinator's port on hosts[0]")
  p.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 help="this checkout's path on every host (--hosts, --slurm)")
  p.add_argument("--slurm", action="store_true")
  p.add_argument("--nodes", type=int, default=1)
  p.add_argument("--gpus-per-node", type=int, default=8)
  p.add_argument("--partition", default="")
  p.add_argument("--time", default="")
  p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
  argv = list(sys.argv[1:] if argv is None else argv)
  extra = argv[argv.index("--") + 1:] if "--" in argv else []
  args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
  if args.hosts and args.slurm:
    raise SystemExit("--hosts and --slurm: choose one (SLURM places the processes itself)")
  if args.hosts and len(set(args.hosts.split(","))) != len(args.hosts.split(",")):
    raise SystemExit(f"--hosts={args.hosts}: a host twice")
  if args.nodes < 1 or args.gpus_per_node < 1:
    raise SystemExit("--nodes and --gpus-per-node must be >= 1")
  return args, extra


def main(argv=None) -> int:
  args, extra = parse(argv)
  if args.slurm:
    script = sbatch_script(args, extra)
    path = os.path.join(args.workdir, "launch.sbatch")
    if args.dry_run:
      print(f"# {path}\n{script}# then: sbatch {path}")
      return 0
    os.makedirs(os.path.join(args.workdir, "logs"), exist_ok=True)
    with open(path, "w") as f:
      f.write(script)
    return subprocess.call(["sbatch", path])
  if args.hosts:
    cmds = host_cmds(args, extra)
    if args.dry_run:
      for c in cmds:
        print(shlex.join(c))
      return 0
    procs = [subprocess.Popen(c) for c in cmds]
    codes = [p.wait() for p in procs]
    failed = [h for h, rc in zip(args.hosts.split(","), codes) if rc]
    if failed:
      raise SystemExit(f"failed on {failed}: see {args.workdir}/logs/<host>.log")
    return 0
  cmd = experiment_cmd(args, extra, python=sys.executable)
  if args.dry_run:
    print(shlex.join(cmd))
    return 0
  return subprocess.call(cmd, cwd=args.repo)


if __name__ == "__main__":
  sys.exit(main())
