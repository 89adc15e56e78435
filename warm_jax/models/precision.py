"""Mixed precision: every matmul of the model in the compute dtype with float32 accumulation.

config.model.dtype is the compute dtype of activations and matmul operands; parameters, optimizer
state, norms, softmaxes, logits and losses stay float32 whatever it is (the master weights are cast
per use). With 'bfloat16' each matmul takes bfloat16 operands and accumulates in float32
(`preferred_element_type`), the form the matrix units run at full rate (TPU MXU, GPU tensor cores,
CPU AMX through oneDNN), in the forward pass and, through `einsum`'s own VJP, in both backward
matmuls; its result is rounded to the compute dtype unless the caller keeps it in float32
(attention logits, LM logits). A bfloat16 matmul with a bfloat16 result is avoided: on XLA:CPU it
runs at a fraction of the float32 rate, and its accumulation loses precision on every backend.

With 'float32' the forward pass is the plain einsum. Its backward is the same pair of einsums
(`_mixed_bwd`), not jax's transpose of the forward: that rule gives a weight gradient as a dot
followed by a transpose, which XLA:CPU folds into one dot with a transposed operand that its
matmul library does not take (a plain dot plus a transposed copy of the output gradient). Written
as one einsum per operand, each gradient is a single matmul in the layout it is used in. The
gradients are the same sums, rounded in another order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str):
  """config.model.dtype -> the jnp dtype."""
  return DTYPES[name]


def _operand_specs(spec: str) -> tuple[str, str, str]:
  ins, out = spec.replace(" ", "").split("->")
  a, b = ins.split(",")
  return a, b, out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _mixed(spec: str, a: Array, b: Array, out_dtype) -> Array:
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32).astype(out_dtype)


def _mixed_fwd(spec, a, b, out_dtype):
  return _mixed(spec, a, b, out_dtype), (a, b)


def _mixed_bwd(spec, out_dtype, res, g):
  a, b = res
  sa, sb, so = _operand_specs(spec)
  g = g.astype(a.dtype)  # the cotangent in the compute dtype: the backward matmuls run as fast
  da = jnp.einsum(f"{so},{sb}->{sa}", g, b, preferred_element_type=jnp.float32)
  db = jnp.einsum(f"{sa},{so}->{sb}", a, g, preferred_element_type=jnp.float32)
  return da.astype(a.dtype), db.astype(b.dtype)


_mixed.defvjp(_mixed_fwd, _mixed_bwd)


def einsum(spec: str, a: Array, b: Array, out_dtype=None) -> Array:
  """`jnp.einsum(spec, a, b)` of two operands of one compute dtype, accumulated in float32 and
  returned in `out_dtype` (default: the operands' dtype). Each index of an operand must appear in
  the other operand or in the output (true of every projection and attention product), so each
  backward matmul is again one einsum (float32 operands may break this rule: they then take jax's
  own gradient)."""
  if a.dtype != b.dtype:
    raise ValueError(f"precision.einsum({spec!r}): operands of different dtypes "
                     f"{a.dtype} and {b.dtype}; cast both to the compute dtype")
  if not _each_index_shared(spec):
    if a.dtype == jnp.float32:  # jax's own gradient rule; no reduced-precision operand to guard
      out = jnp.einsum(spec, a, b)
      return out if out_dtype is None else out.astype(out_dtype)
    raise ValueError(f"precision.einsum({spec!r}): an operand index is summed away alone")
  return _mixed(spec, a, b, jnp.dtype(out_dtype or a.dtype))


def _each_index_shared(spec: str) -> bool:
  """Whether every index of each operand appears in the other operand or in the output, so each
  operand's gradient is one einsum of the other operand and the output's cotangent."""
  if "." in spec:
    return False
  sa, sb, so = _operand_specs(spec)
  return not (set(sa) - set(sb) - set(so) or set(sb) - set(sa) - set(so))


def dot_general(out_dtype=None):
  """A `dot_general` for flax's nn.Dense (its `dot_general=` field): the contraction of the input's
  last axis with the kernel's first through `einsum` above, so Dense layers (whose `dtype` casts
  input and kernel to the compute dtype) accumulate in float32 too."""
  def dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    del precision, preferred_element_type
    (lc, rc), (lb, rb) = dimension_numbers
    if tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or lb or rb or rhs.ndim != 2:
      raise ValueError(f"precision.dot_general: only Dense's x @ kernel, got {dimension_numbers}")
    batch = "abcdefghijkl"[:lhs.ndim - 1]
    return einsum(f"{batch}y,yz->{batch}z", lhs, rhs, out_dtype)
  return dot
