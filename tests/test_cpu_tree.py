"""gpuseg's Numba replica of scikit-learn's tree builder grows scikit-learn's trees, node for node."""

import numpy as np
import pytest
from sklearn.tree import DecisionTreeClassifier

from gpuseg import _cpu_tree

FIELDS = ("children_left", "children_right", "feature", "threshold", "impurity", "n_node_samples",
          "weighted_n_node_samples", "value")


def assert_same_tree(ours, stock):
    a, b = ours.tree_, stock.tree_
    assert (a.node_count, a.max_depth) == (b.node_count, b.max_depth)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    inner = a.children_left >= 0  # a leaf's flag is whatever scikit-learn's memory held
    np.testing.assert_array_equal(a.missing_go_to_left[inner], b.missing_go_to_left[inner])
    for name in ("n_features_in_", "n_outputs_", "n_classes_", "max_features_"):
        assert getattr(ours, name) == getattr(stock, name), name
    np.testing.assert_array_equal(ours.classes_, stock.classes_)


def problem(rng, n, n_features, n_classes, ties=False, constant=False, zeros=False):
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    if ties:
        X = np.round(X * 2) / 2  # few distinct values: ties, and features constant in small nodes
    if constant:
        X[:, 0] = 1.0
    if zeros:  # many zeros, some of them -0.0 (equal to 0.0, sorted before it by their bits)
        X[rng.random(X.shape) < 0.3] = 0.0
        X[rng.random(X.shape) < 0.1] *= -0.0
    y = (rng.integers(0, n_classes, n) + (X[:, -1] > 0)) % n_classes
    w = rng.integers(0, 4, n).astype(np.float64)  # bootstrap-like counts, zeros included
    w[np.unique(y, return_index=True)[1]] = 1.0  # every class weighs something
    return X, y, w


@pytest.mark.parametrize("trial", range(30))
def test_random_problems_grow_scikit_learns_tree(trial):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(2, 12)) if trial % 10 == 9 else int(rng.integers(20, 2500))
    X, y, w = problem(rng, n, int(rng.integers(1, 10)), int(rng.integers(2, 5)),
                      ties=trial % 3 == 0, constant=trial % 4 == 0, zeros=trial % 5 == 2)
    params = dict(max_depth=(None, 3, 10)[trial % 3], max_features=("sqrt", None, 2, 0.5, "log2")[trial % 5],
                  min_samples_leaf=(1, 1, 3)[trial % 3], min_samples_split=(2, 5)[trial % 2],
                  min_impurity_decrease=(0.0, 0.0, 0.01)[trial % 3], random_state=int(rng.integers(0, 2**31 - 1)))
    stock = DecisionTreeClassifier(**params).fit(X, y, sample_weight=w)
    tree = DecisionTreeClassifier(**params)
    assert _cpu_tree.replays(tree, X, y.astype(np.float64)[:, None], w, {"check_input": False})
    assert_same_tree(_cpu_tree.fit(tree, X, y.astype(np.float64)[:, None], w), stock)
    np.testing.assert_array_equal(tree.predict_proba(X), stock.predict_proba(X))


def test_large_nodes_sort_by_radix_and_grow_the_same_tree():
    rng = np.random.default_rng(7)
    X, y, w = problem(rng, 20000, 24, 3)
    params = dict(max_depth=10, max_features="sqrt", random_state=11)
    stock = DecisionTreeClassifier(**params).fit(X, y, sample_weight=w)
    assert_same_tree(_cpu_tree.fit(DecisionTreeClassifier(**params), X, y.astype(np.float64)[:, None], w), stock)


@pytest.mark.parametrize("change", [
    {"criterion": "entropy"}, {"splitter": "random"}, {"max_leaf_nodes": 8}, {"ccp_alpha": 0.01},
    {"min_weight_fraction_leaf": 0.1}, {"class_weight": "balanced"}, {"min_samples_leaf": 0.1},
    {"monotonic_cst": [1, 0]}, {"random_state": None},
])
def test_other_settings_are_left_to_scikit_learn(change):
    rng = np.random.default_rng(0)
    X, y, w = problem(rng, 200, 2, 2)
    tree = DecisionTreeClassifier(**{"random_state": 0, **change})
    assert not _cpu_tree.replays(tree, X, y.astype(np.float64)[:, None], w, {"check_input": False})


def test_fractional_weights_and_checked_input_are_left_to_scikit_learn():
    rng = np.random.default_rng(0)
    X, y, w = problem(rng, 200, 2, 2)
    tree, y2 = DecisionTreeClassifier(random_state=0), y.astype(np.float64)[:, None]
    assert _cpu_tree.replays(tree, X, y2, w, {"check_input": False})
    assert not _cpu_tree.replays(tree, X, y2, w * 0.5, {"check_input": False})  # sums in samples' order
    assert not _cpu_tree.replays(tree, X, y2, w, {})
    assert not _cpu_tree.replays(tree, X, y2, None, {"check_input": False})
    assert not _cpu_tree.replays(tree, X.astype(np.float64), y2, w, {"check_input": False})
