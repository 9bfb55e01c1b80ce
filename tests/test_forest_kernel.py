"""The CPU forest kernel: labels with early exits equal the argmax of the probabilities of every tree."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from gpuseg import _cpu, _cpu_tree
from gpuseg.forest import Forest


def _labels_and_argmax(forest, X):
    arrays = forest.arrays(_cpu)
    Xt = np.ascontiguousarray(X.T, dtype=np.float32)
    labels = _cpu.forest_predict_labels(arrays, Xt)
    proba = _cpu.forest_predict_proba(arrays, Xt)
    return labels, proba


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("n_estimators", [1, 2, 3, 10, 51])
def test_labels_equal_argmax_of_every_tree(n_classes, n_estimators):
    rng = np.random.default_rng(n_classes * 100 + n_estimators)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.7, size=3000), np.linspace(-1, 1, n_classes - 1))
    clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=8, max_samples=0.3, random_state=0)
    forest = Forest.from_sklearn(clf.fit(X, y))
    test = rng.normal(size=(2999, 6)).astype(np.float32)  # not a multiple of the kernel's blocks or lanes
    labels, proba = _labels_and_argmax(forest, test)
    assert labels.dtype == np.int32 and labels.shape == (2999,)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    # Many samples are sure long before the last tree, many are not: both paths are taken.
    margin = np.sort(proba, axis=1)[:, -1] - np.sort(proba, axis=1)[:, -2]
    if n_estimators == 51:
        assert (margin > 0.5).mean() > 0.1 and (margin < 0.1).mean() > 0.03


def _stumps(votes, n_features=1):
    """Trees of one split on feature 0 at 0: ``votes[t]`` = (left leaf, right leaf) class fractions."""
    trees = []
    for left, right in votes:
        value = np.array([[1.0] * len(left), left, right])
        trees.append((np.array([1, -1, -1]), np.array([2, -1, -1]), np.array([0, 0, 0]),
                      np.array([0.0, 0, 0]), value))
    return Forest.from_trees(trees, n_features, len(votes[0][0]))


def test_ties_go_to_the_first_class_as_argmax_picks_it():
    forest = _stumps([([1, 0, 0], [0, 0, 1]), ([0, 1, 0], [0, 0, 1]), ([0, 0, 1], [0, 0, 1])] * 2)
    X = np.array([[-1.0], [1.0], [0.0]], np.float32)
    labels, proba = _labels_and_argmax(forest, X)
    np.testing.assert_array_equal(proba.argmax(axis=1), [0, 2, 0])  # a three-way tie, one sure, a tie again
    np.testing.assert_array_equal(labels, [0, 2, 0])


def test_a_late_majority_is_not_missed():
    """26 of 50 trees vote class 0 for x < 0 then 24 vote class 1: class 0 wins by 2, a lead the exit must wait for."""
    votes = [([1, 0], [0, 1])] * 26 + [([0, 1], [1, 0])] * 24
    forest = _stumps(votes)
    labels, proba = _labels_and_argmax(forest, np.array([[-1.0], [1.0]], np.float32))
    np.testing.assert_array_equal(labels, [0, 1])
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    forest = _stumps([([1, 0], [0, 1])] * 24 + [([0, 1], [1, 0])] * 26)  # the late trees win
    labels, _ = _labels_and_argmax(forest, np.array([[-1.0], [1.0]], np.float32))
    np.testing.assert_array_equal(labels, [1, 0])


def test_no_samples():
    forest = _stumps([([1, 0], [0, 1])] * 3)
    assert _cpu.forest_predict_labels(forest.arrays(_cpu), np.empty((1, 0), np.float32)).shape == (0,)


def test_forest_jobs_one_thread_for_small_trees_only():
    """scikit-learn draws ``max_samples`` rows per tree (a fraction of the rows, a count, or all of them)."""
    jobs = _cpu.forest_jobs
    assert jobs({"max_samples": 0.05}, 10_000) == 1 and jobs({"max_samples": 0.05}, 10_240) == -1  # 500, 512
    assert jobs({"max_samples": 511}, 10**6) == 1 and jobs({"max_samples": 512}, 10**6) == -1
    assert jobs({"max_samples": None}, 300) == 1 and jobs({"max_samples": None}, 5000) == -1
    assert jobs({"max_samples": 0.01, "bootstrap": False}, 5000) == -1  # every row, every tree


def test_one_thread_or_a_pool_grows_the_same_trees():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    params = {"n_estimators": 6, "max_depth": 6, "random_state": 3}
    small = _cpu.forest_fit(X, y, {**params, "max_samples": 100}, 2)  # one thread
    clf = RandomForestClassifier(n_jobs=-1, max_samples=100, **params).fit(X, y)
    for name in small.ARRAYS:
        np.testing.assert_array_equal(getattr(small, name), getattr(Forest.from_sklearn(clf), name))


@pytest.mark.parametrize("params", [
    {"max_samples": 0.3},
    {"max_samples": 40, "class_weight": "balanced"},  # 40 draws often miss the rare class
    {"max_samples": None, "class_weight": "balanced_subsample", "min_samples_leaf": 3},
    {"max_samples": 0.5, "class_weight": {0: 1.0, 1: 2.0, 2: 5.0}, "max_features": None},
    {"max_samples": 0.2, "min_samples_leaf": 0.05},  # a fraction: the stock trees
])
def test_trees_fitted_on_their_drawn_rows_are_scikit_learns(params, monkeypatch):
    """forest_fit hands each tree only the rows its bootstrap drew: the forest is the stock one, bit for bit,
    also when a tree's draws miss a class."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    y[rng.choice(3000, 2990, replace=False)] %= 2  # class 2 on about 10 rows
    base = {"n_estimators": 12, "max_depth": 7, "random_state": 5}
    rows, replayed, fit, replay = [], [], DecisionTreeClassifier._fit, _cpu_tree.fit
    monkeypatch.setattr(DecisionTreeClassifier, "_fit", lambda self, X, *a, **k: rows.append(len(X)) or fit(self, X, *a, **k))
    monkeypatch.setattr(_cpu_tree, "fit", lambda self, X, *a: replayed.append(len(X)) or replay(self, X, *a))
    ours = _cpu.forest_fit(X, y, {**base, **params}, 3)
    monkeypatch.undo()
    assert len(rows + replayed) == 12 and (max(rows + replayed) == 3000) == isinstance(params.get("min_samples_leaf"), float)
    # A tree's weights are its draw counts (scikit-learn 1.9 draws by class weight) but for "balanced_subsample":
    # with those and an integer leaf size, gpuseg's replica of the tree builder grows every tree.
    replica = params.get("class_weight") != "balanced_subsample" and isinstance(params.get("min_samples_leaf", 1), int)
    assert len(replayed) == (12 if replica else 0)
    stock = Forest.from_sklearn(RandomForestClassifier(n_jobs=-1, **base, **params).fit(X, y))
    for name in ours.ARRAYS + ours.OPTIONAL_ARRAYS:
        np.testing.assert_array_equal(getattr(ours, name), getattr(stock, name))
