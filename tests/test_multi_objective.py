"""Per-criterion relabelling, the scalarised reward, Pareto fronts and hypervolume, on
hand-computed cases."""

import numpy as np
import pytest

from warm_jax import multi_objective as mo


def _recs(n):
  return [{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}", "id": i} for i in range(n)]


def test_relabel_orders_by_the_criterion_and_drops_ties():
  recs = _recs(3)
  # Pair 0: the criterion prefers the original chosen by far; pair 1: the rejected by far;
  # pair 2: a tie.
  out = mo.relabel(recs, [0.9, 0.0, 0.4], [0.1, 0.8, 0.4], temperature=0.05, seed=0)
  assert [r["id"] for r in out] == [0, 1]
  assert (out[0]["chosen"], out[0]["rejected"], out[0]["swapped"]) == ("a0", "b0", False)
  assert (out[1]["chosen"], out[1]["rejected"], out[1]["swapped"]) == ("b1", "a1", True)
  assert (out[1]["gold_chosen"], out[1]["gold_rejected"]) == (0.8, 0.0)


def test_relabel_follows_bradley_terry_and_each_record_has_its_own_stream():
  n, delta, t = 4000, 0.05, 0.05
  recs = _recs(n)
  out = mo.relabel(recs, np.full(n, 0.5 + delta), np.full(n, 0.5), temperature=t, seed=3)
  kept = np.mean([not r["swapped"] for r in out])
  p = 1 / (1 + np.exp(-delta / t))  # 0.731
  assert abs(kept - p) < 4 * np.sqrt(p * (1 - p) / n)
  # Record 7's label does not depend on the records around it, and the seed matters.
  alone = mo.relabel(recs[:8], np.full(8, 0.55), np.full(8, 0.5), temperature=t, seed=3)
  assert alone[7]["swapped"] == out[7]["swapped"]
  other = mo.relabel(recs, np.full(n, 0.55), np.full(n, 0.5), temperature=t, seed=4)
  assert [r["swapped"] for r in other] != [r["swapped"] for r in out]


def test_relabel_bad_input():
  with pytest.raises(ValueError, match="3 records but 2"):
    mo.relabel(_recs(3), [0, 1], [1, 0], 0.05, 0)
  with pytest.raises(ValueError, match="temperature"):
    mo.relabel(_recs(1), [0], [1], 0.0, 0)


class _Fixed:
  def __init__(self, values):
    self.values, self.calls = np.asarray(values, np.float32), 0

  def score(self, prompts, responses):
    self.calls += 1
    return self.values[:len(responses)]


class _Boom:
  def score(self, prompts, responses):
    raise AssertionError("a zero-weight scorer must not run")


def test_weighted_reward_standardises_and_sums():
  a, b = _Fixed([1.0, 3.0]), _Fixed([2.0, 10.0])
  r = mo.WeightedReward([a, b], [0.25, 0.75], offsets=[1.0, 2.0], scales=[2.0, 4.0])
  got = r.score(["x", "y"], ["u", "v"])
  want = [0.25 * 0 / 2 + 0.75 * 0 / 4, 0.25 * 2 / 2 + 0.75 * 8 / 4]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got.dtype == np.float32
  only_a = mo.WeightedReward([a, _Boom()], [1.0, 0.0])
  np.testing.assert_allclose(only_a.score(["x", "y"], ["u", "v"]), [1.0, 3.0])


@pytest.mark.parametrize("kw,match", [
    (dict(weights=[1.0]), "2 scorers, 1 weights"),
    (dict(weights=[1.0, -0.5]), "non-negative"),
    (dict(weights=[0.0, 0.0]), "not all zero"),
    (dict(weights=[0.5, 0.5], scales=[1.0, 0.0]), "scales"),
])
def test_weighted_reward_bad_input(kw, match):
  with pytest.raises(ValueError, match=match):
    mo.WeightedReward([_Fixed([0]), _Fixed([0])], **kw)


def test_standardisation():
  assert mo.standardisation([1.0, 3.0]) == (2.0, 1.0)
  with pytest.raises(ValueError, match="all equal"):
    mo.standardisation([2.0, 2.0])
  with pytest.raises(ValueError, match="at least 2"):
    mo.standardisation([1.0])


def test_pareto_mask():
  pts = np.array([[1, 3], [2, 2], [3, 1], [1, 1], [2, 2], [0.5, 3]])
  # (1, 1) and (0.5, 3) are dominated; the duplicate (2, 2) points are both kept.
  np.testing.assert_array_equal(mo.pareto_mask(pts), [True, True, True, False, True, False])


def test_hypervolume_2d():
  # The union of the rectangles [0, p]: 3 * 1 + 2 * 1 + 1 * 1.
  assert mo.hypervolume_2d([[1, 3], [2, 2], [3, 1]]) == pytest.approx(6.0)
  # A dominated point and a point below the reference add nothing; order does not matter.
  assert mo.hypervolume_2d([[3, 1], [1, 1], [2, 2], [1, 3], [-1, 5]]) == pytest.approx(6.0)
  assert mo.hypervolume_2d([[2, 2]], ref=(1, 1)) == pytest.approx(1.0)
  assert mo.hypervolume_2d(np.zeros((0, 2))) == 0.0
