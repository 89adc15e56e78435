"""Matrix-multiply FLOPs of a traced program, loops counted as many times as they run.

XLA's cost analysis counts the body of a loop once, so a program whose layers run under
`nn.scan` (or PPO's minibatch updates under `lax.scan`, or sampling's token loop) would report a
fraction of its work. Here every `dot_general` of the jaxpr counts 2 * batch * M * N * K, a
scan's body `length` times, a while loop's body `while_trips` times (the caller knows it: the
tokens a sampler generates at most), a cond's costliest branch once; rematerialised forward
passes appear in the jaxpr where they are recomputed, so they count too. Elementwise work is
left out (a few percent of a transformer step).
"""

from __future__ import annotations

import math

from jax.extend import core as jax_core


def dot_flops(eqn) -> int:
  """2 * batch * M * N * K of one dot_general equation."""
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
  batch = math.prod(lhs[d] for d in lhs_batch)
  k = math.prod(lhs[d] for d in lhs_contract)
  return 2 * math.prod(lhs) * math.prod(rhs) // max(batch * k, 1)


def _sub_jaxprs(value):
  """The jaxprs held by an equation parameter (a jaxpr, a closed jaxpr, or a tuple of them)."""
  if isinstance(value, jax_core.ClosedJaxpr):
    return [value.jaxpr]
  if isinstance(value, jax_core.Jaxpr):
    return [value]
  if isinstance(value, (tuple, list)):
    return [j for v in value for j in _sub_jaxprs(v)]
  return []


def jaxpr_flops(jaxpr, while_trips: int = 1) -> int:
  """Matmul FLOPs of a (closed) jaxpr, as described in the module docstring."""
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += dot_flops(eqn)
    elif name == "scan":
      total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"], while_trips)
    elif name == "while":
      total += while_trips * jaxpr_flops(eqn.params["body_jaxpr"], while_trips)
    elif name == "cond":
      total += max(jaxpr_flops(b, while_trips) for b in eqn.params["branches"])
    else:
      total += sum(jaxpr_flops(j, while_trips) for v in eqn.params.values()
                   for j in _sub_jaxprs(v))
  return total
