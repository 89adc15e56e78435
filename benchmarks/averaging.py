r"""Streaming weight averaging over orbax checkpoints: wall time, throughput vs raw disk read, peak RSS.

    python benchmarks/averaging.py --dir /tmp/warm_bench              # M = 2, 4, 8, 16; 100 MiB models
    python benchmarks/averaging.py --dir /tmp/warm_bench --mb 400 --ms 2,16
    python benchmarks/averaging.py --dir /tmp/warm_bench --group_mb 16   # smaller groups of reads
    python benchmarks/averaging.py --dir /tmp/warm_bench --reader tensorstore  # no direct reads
    python benchmarks/averaging.py --dir /tmp/warm_bench --reader orbax  # orbax restores instead
    python benchmarks/averaging.py --dir /tmp/warm_bench --mb 400 --flush_gb 8  # defeat a host cache
    python benchmarks/averaging.py --dir /tmp/warm_bench --method ties --density 0.2  # a merge
    python benchmarks/averaging.py --dir /tmp/warm_bench64 --leaves 64  # smaller arrays

Creates (once; reused on later runs) 16 params-only checkpoints of random float32 parameters of
`--mb` MiB each under --dir (checkpoint i: checkpoint 0 + a task vector of N(0, (0.01 i)^2)
entries), then for each M averages the first M of them with
`warm_jax.averaging.average_checkpoints` (the streaming path: one checkpoint at a time into a
float32 running sum, then written with checkpoints.save_params), each M in its own subprocess so
it gets its own peak RSS (VmHWM of /proc/self/status).

Throughput is the bytes of the checkpoint files read (their size on disk) divided by the time
from the start of `average_checkpoints` to the average being ready (validation, restores, sums,
compilation; the write of the output is timed separately). It is set next to the machine's own
sequential read speed of the same files, read with Python in 16 MiB chunks. Before each
measurement the files' pages are evicted from the page cache (fsync + posix_fadvise DONTNEED,
which needs no root); the table says whether that eviction worked (cold reads much slower than
warm ones) and also gives the warm-cache read speed. Prints a Markdown table.

`--method` (default linear) times `warm_jax.averaging.merge_checkpoints` instead: the first of the
M checkpoints is the base and the other M - 1 the models (the methods without a base, slerp of two
models and linear, take all M), so the same M files are read as for the average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


CHUNK = 16 << 20
N_LEAVES = 8  # default number of equal 2-D arrays (plus one small 'head' vector)
WIDTH = 2048
TASK_VECTORS = "gaussian"  # checkpoint i - checkpoint 0: N(0, (0.01 i)^2) entries


def _files(path: str) -> list[str]:
  out = []
  for d, _, names in os.walk(path):
    out += [os.path.join(d, n) for n in names]
  return sorted(out)


def _param_files(ckpt: str) -> list[str]:
  return [f for f in _files(ckpt) if f"{os.sep}params{os.sep}" in f]


def evict(files: list[str]) -> None:
  """Drops the files' clean pages from the page cache (no root needed)."""
  for f in files:
    fd = os.open(f, os.O_RDONLY)
    try:
      os.fsync(fd)
      os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
      os.close(fd)


def read_speed(files: list[str]) -> tuple[int, float]:
  """(bytes, seconds) of reading the files sequentially in 16 MiB chunks."""
  buf = bytearray(CHUNK)
  view = memoryview(buf)
  total = 0
  t0 = time.perf_counter()
  for f in files:
    with open(f, "rb", buffering=0) as fh:
      while True:
        n = fh.readinto(view)
        if not n:
          break
        total += n
  return total, time.perf_counter() - t0


def flush_file(directory: str, gb: float) -> str | None:
  """A file of `gb` GiB of random bytes (made once), read before each timed read so that a cache
  below this machine's page cache (a virtual machine's host, a disk controller) cannot still
  hold the checkpoints; the guest cannot evict such a cache itself."""
  if gb <= 0:
    return None
  path = os.path.join(directory, f"flush_{gb:g}g.bin")
  size = int(gb * (1 << 30))
  if not (os.path.exists(path) and os.path.getsize(path) == size):
    with open(path + ".tmp", "wb") as fh:
      for _ in range(size // CHUNK):
        fh.write(os.urandom(CHUNK))
    os.replace(path + ".tmp", path)
  return path


def flush(path: str | None) -> None:
  if path:
    read_speed([path])
    evict([path])


def make_checkpoints(directory: str, mb: float, count: int, leaves: int = N_LEAVES) -> list[str]:
  import numpy as np

  from warm_jax import checkpoints
  rows = max(1, int(mb * (1 << 20) / 4 / WIDTH / leaves))
  paths = []
  base = None
  for i in range(count):
    path = os.path.join(directory, f"ckpt_{i:02d}")
    paths.append(path)
    try:
      meta = checkpoints.read_meta(path)
      if (meta.get("bench_rows") == rows and meta.get("bench_task_vectors") == TASK_VECTORS
          and meta.get("config", {}).get("model", {}).get("n_leaves", N_LEAVES) == leaves):
        continue
      raise SystemExit(f"{path} holds a checkpoint of another size or kind; use another --dir")
    except FileNotFoundError:
      pass
    if base is None:
      base = np.random.default_rng(0).standard_normal((leaves, rows, WIDTH), dtype=np.float32)
    # checkpoint i = checkpoint 0 + a task vector of N(0, (0.01 i)^2) entries: the merges'
    # statistics (TIES's k-th magnitudes) see a spread of values, as real task vectors have.
    noise = np.random.default_rng(i).standard_normal(base.shape, dtype=np.float32)
    params = {"layers": {f"w{j}": base[j] + np.float32(0.01 * i) * noise[j]
                         for j in range(leaves)},
              "head": {"b": np.full((WIDTH,), 0.01 * i, np.float32)}}
    del noise
    config = {"model": {"kind": "benchmark", "rows": rows, "width": WIDTH, "n_leaves": leaves}}
    t0 = time.time()
    checkpoints.save_params(path, params, {"config": config, "bench_rows": rows,
                                           "bench_task_vectors": TASK_VECTORS})
    print(f"wrote {path} ({rows * WIDTH * leaves * 4 / 2**20:.0f} MiB, {leaves} arrays) in "
          f"{time.time() - t0:.1f}s",
          file=sys.stderr)
  return paths


def _status_kb(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  return -1


def merge_kwargs(args) -> dict:
  """The merges' parameters given on the command line (each method takes its own)."""
  return {k: getattr(args, k) for k in ("density", "drop", "seed", "combine")
          if getattr(args, k) is not None}


def worker(paths: list[str], out: str, group_bytes: int | None, reader: str, method: str = "linear",
           merge_params: dict | None = None) -> dict:
  """Runs in a fresh process: one streaming average (or merge); reports times and memory."""
  import jax
  import numpy as np

  from warm_jax import averaging, checkpoints
  from warm_jax.averaging import array_reader, merges
  if reader == "orbax":  # the orbax restore path (what other checkpoint layouts use)
    array_reader.ArrayReader.supports = staticmethod(lambda item_dir: False)
  if reader == "tensorstore":  # every array through tensorstore (the reader's fallback)
    init = array_reader.ArrayReader.__init__
    array_reader.ArrayReader.__init__ = lambda self, **kw: init(self, direct=False, **kw)
  jax.devices()
  jax.numpy.zeros(1).block_until_ready()  # backend up: part of the baseline, not of averaging
  baseline_kb = _status_kb("VmRSS")
  reads = []
  on_read = lambda i, src, s: reads.append(round(s, 3))  # noqa: E731
  t0 = time.perf_counter()
  if method == "linear":
    params, meta = averaging.average_checkpoints(paths, on_read=on_read,
                                                 group_bytes=group_bytes or (32 << 20))
  else:
    base = None if method == "slerp" and len(paths) == 2 else paths[0]
    kw = {k: v for k, v in (merge_params or {}).items() if k in merges.PARAMETERS[method]}
    params, meta = averaging.merge_checkpoints(method, paths if base is None else paths[1:],
                                               base=base, on_read=on_read,
                                               group_bytes=group_bytes, **kw)
  jax.block_until_ready(params)
  t_avg = time.perf_counter() - t0
  model_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  if method == "linear":  # check the result: the head of checkpoint i is 0.01 i, its mean
    head = np.asarray(params["head"]["b"])  # over i < M 0.01 (M - 1) / 2
    assert np.allclose(head, 0.01 * (len(paths) - 1) / 2), head[:4]
  peak_avg_kb = _status_kb("VmHWM")
  t1 = time.perf_counter()
  checkpoints.save_params(out, params, meta)
  t_save = time.perf_counter() - t1
  return {"m": len(paths), "t_avg": t_avg, "t_save": t_save, "reads": reads,
          "model_bytes": model_bytes, "baseline_kb": baseline_kb, "peak_avg_kb": peak_avg_kb,
          "peak_kb": _status_kb("VmHWM")}


def _average_once(args, paths: list[str], method: str = "linear") -> dict:
  """One streaming average (or merge) of `paths` in its own process (its own peak RSS); the
  output removed."""
  out = os.path.join(args.dir, f"avg_{len(paths):02d}_{time.time_ns()}")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.setdefault("JAX_PLATFORMS", "cpu")
  extra = [f"--{k}={v}" for k, v in merge_kwargs(args).items()]
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--dir", args.dir,
                         *(["--group_mb", str(args.group_mb)] if args.group_mb else []),
                         "--reader", args.reader,
                         "--method", method, *extra, "--worker", *paths, out],
                        capture_output=True, text=True, env=env)
  line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
  if proc.returncode or not line:
    sys.stderr.write(proc.stderr[-4000:])
    raise SystemExit(f"worker for M={len(paths)} failed")
  for f in _files(out):
    os.remove(f)
  return json.loads(line[0][len("RESULT "):])


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--dir", required=True, help="scratch directory for the checkpoints")
  ap.add_argument("--mb", type=float, default=100.0, help="size of one model in MiB")
  ap.add_argument("--ms", default="2,4,8,16", help="numbers of checkpoints to average")
  ap.add_argument("--leaves", type=int, default=N_LEAVES,
                  help="equal arrays a model is made of (the largest array sets the merges' "
                       "per-group memory; a decoder's largest, its embedding, is 2-20%% of it)")
  ap.add_argument("--group_mb", type=float, default=None,
                  help="group_bytes=... of average_checkpoints / merge_checkpoints: MiB read per "
                       "group (default: theirs, 32 for the average, 8 for the group-major merges)")
  ap.add_argument("--reader", choices=("direct", "tensorstore", "orbax"), default="direct",
                  help="direct: array_reader.ArrayReader (the default path); tensorstore: the "
                       "same reader with every array read by tensorstore; orbax: restores")
  ap.add_argument("--repeats", type=int, default=3,
                  help="alternating (cold raw read, average) pairs per M; medians are reported")
  ap.add_argument("--flush_gb", type=float, default=0.0,
                  help="read this many GiB of another file before every cold read and average "
                       "(0: off), so that caches outside this machine's page cache lose the "
                       "checkpoints too")
  ap.add_argument("--method", default="linear",
                  help="linear (average_checkpoints) or a merge of warm_jax.averaging.METHODS "
                       "(merge_checkpoints; the first checkpoint is the base); several, comma-"
                       "separated, run in alternating rounds and are compared with the first")
  ap.add_argument("--density", type=float, default=None, help="ties")
  ap.add_argument("--drop", type=float, default=None, help="dare")
  ap.add_argument("--seed", type=int, default=None, help="dare")
  ap.add_argument("--combine", default=None, help="dare: sum or ties")
  ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.worker:
    *paths, out = args.worker
    group = int(args.group_mb * (1 << 20)) if args.group_mb else None
    print("RESULT " + json.dumps(worker(paths, out, group, args.reader,
                                        args.method, merge_kwargs(args))))
    return

  ms = [int(m) for m in args.ms.split(",")]
  methods = args.method.split(",")
  os.makedirs(args.dir, exist_ok=True)
  paths = make_checkpoints(args.dir, args.mb, max(ms), args.leaves)
  flusher = flush_file(args.dir, args.flush_gb)
  rows = []
  for m in ms:
    files = [f for p in paths[:m] for f in _param_files(p)]
    runs, colds = {k: [] for k in methods}, []
    for i in range(args.repeats):  # alternating, so a slow spell of the disk hits all
      evict(files)
      flush(flusher)
      nbytes, t_cold = read_speed(files)
      colds.append(t_cold)
      if i == 0:
        _, t_warm = read_speed(files)  # now cached
      for method in methods:
        evict(files)
        flush(flusher)
        runs[method].append(_average_once(args, paths[:m], method))
    for method in methods:
      t_avgs = [x["t_avg"] for x in runs[method]]
      t_avg = statistics.median(t_avgs)
      r = min(runs[method], key=lambda x: abs(x["t_avg"] - t_avg))  # the median run's fields
      first = [x["t_avg"] for x in runs[methods[0]]]
      r = dict(r, method=method, nbytes=nbytes, t_warm=t_warm, t_cold=statistics.median(colds),
               t_avg=t_avg, t_save=statistics.median(x["t_save"] for x in runs[method]),
               peak_avg_kb=max(x["peak_avg_kb"] for x in runs[method]),
               peak_kb=max(x["peak_kb"] for x in runs[method]),
               ratios=[c / a for c, a in zip(colds, t_avgs)],
               vs_first=[a / f for a, f in zip(t_avgs, first)],
               cold_range=(nbytes / max(colds), nbytes / min(colds)),
               avg_range=(nbytes / max(t_avgs), nbytes / min(t_avgs)))
      rows.append(r)
      print(json.dumps(r), file=sys.stderr)

  mib = 1 << 20
  model = rows[0]["model_bytes"]
  print(f"\nOne model: {model / mib:.1f} MiB of float32 parameters ({args.leaves + 1} arrays); "
        f"checkpoints under {args.dir}; {os.cpu_count()} CPUs; jax on CPU (1 device); "
        f"{f'{args.group_mb:g} MiB' if args.group_mb else 'default'} groups of reads; reader: "
        f"{args.reader}; methods: {args.method} "
        f"{merge_kwargs(args) or ''}; "
        f"{args.flush_gb:g} GiB read from another file before each cold read and average.\n")
  print(f"Medians of {args.repeats} alternating rounds (a cold raw read, then each method) per M; "
        "ranges in brackets; throughput / raw cold is the median of the rounds' ratios; time / "
        f"{methods[0]}'s: the median of the rounds' ratios of times.\n")
  print("| method | M | bytes read | average (s) | save (s) | avg throughput (MiB/s) | raw read cold "
        "(MiB/s) | raw read warm (MiB/s) | throughput / raw cold | time / first method's | peak RSS "
        "(MiB) | baseline RSS (MiB) | peak / model | (peak - baseline) / model |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for r in rows:
    thr = r["nbytes"] / r["t_avg"] / mib
    cold = r["nbytes"] / r["t_cold"] / mib
    warm = r["nbytes"] / r["t_warm"] / mib
    span = lambda lo_hi: f"[{lo_hi[0] / mib:.0f}-{lo_hi[1] / mib:.0f}]"
    ratios = r["ratios"]
    peak, base = r["peak_avg_kb"] * 1024, r["baseline_kb"] * 1024
    vs = r["vs_first"]
    print(f"| {r['method']} | {r['m']} | {r['nbytes'] / mib:.0f} MiB | {r['t_avg']:.2f} | "
          f"{r['t_save']:.2f} | "
          f"{thr:.0f} {span(r['avg_range'])} | {cold:.0f} {span(r['cold_range'])} | {warm:.0f} | "
          f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] | "
          f"{statistics.median(vs):.2f} [{min(vs):.2f}-{max(vs):.2f}] | "
          f"{peak / mib:.0f} | {base / mib:.0f} | {peak / model:.2f} | {(peak - base) / model:.2f} |")
  print("\nPeak RSS is VmHWM after averaging, before the output is written (writing adds "
        f"{max(r['peak_kb'] - r['peak_avg_kb'] for r in rows) / 1024:.0f} MiB at most). Raw reads: "
        "Python, 16 MiB chunks, page cache evicted with posix_fadvise(DONTNEED) before the cold "
        "read and before each averaging run.")


if __name__ == "__main__":
  main()
