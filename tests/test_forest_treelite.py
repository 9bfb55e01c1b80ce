"""Treelite -> Forest, the way cuML's forests reach gpuseg, tested with the real Treelite on the CPU."""

import json

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from gpuseg import _cpu
from gpuseg.forest import Forest, below_float32, floor_float32

treelite = pytest.importorskip("treelite", reason="treelite is in the test extra: pip install '.[test]'")
import treelite.gtil  # noqa: E402
import treelite.model_builder as mb  # noqa: E402
import treelite.sklearn  # noqa: E402


def _data(n_classes, n=600, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y


def _proba(forest, X):
    return _cpu.forest_predict_proba(forest.arrays(_cpu), np.ascontiguousarray(X.T))


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("params", [
    dict(n_estimators=12, max_depth=6),
    dict(n_estimators=8, max_depth=None),
    dict(n_estimators=10, max_depth=8, class_weight="balanced", max_samples=0.5),
])
def test_sklearn_through_treelite_equals_sklearn(n_classes, params):
    X, y = _data(n_classes)
    clf = RandomForestClassifier(random_state=0, **params).fit(X, y)
    via_treelite = Forest.from_treelite(treelite.sklearn.import_model(clf))
    direct = Forest.from_sklearn(clf)
    for name in set(Forest.ARRAYS) - {"value"}:
        np.testing.assert_array_equal(getattr(via_treelite, name), getattr(direct, name), err_msg=name)
    leaves = np.isposinf(direct.threshold)  # Treelite keeps votes at leaves only
    np.testing.assert_array_equal(via_treelite.value[leaves], direct.value[leaves])
    test = _data(n_classes, n=2000, seed=1)[0]
    ours = _proba(via_treelite, test)
    theirs = clf.predict_proba(test)
    # gpuseg sums float32 votes, scikit-learn float64 ones: equal to float32 rounding, and the same labels.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-6)
    decided = np.sort(theirs, axis=1)[:, -1] - np.sort(theirs, axis=1)[:, -2] > 1e-5
    np.testing.assert_array_equal(ours.argmax(1)[decided], theirs.argmax(1)[decided])


def test_thresholds_floored_from_float64_not_rounded():
    """A float64 threshold just below a float32 value must not round up to it (one ulp would misroute x == t32)."""
    t32 = np.float32(0.3)
    t64 = np.nextafter(np.float64(t32), -np.inf)  # between the float32 below t32 and t32
    assert np.float32(t64) == t32  # rounding to nearest would give t32: x == t32 would go left, wrongly
    assert floor_float32(np.array([t64]))[0] == np.nextafter(t32, np.float32(-np.inf))
    model = _one_split_model(threshold=t64, op="<=", threshold_type="float64")
    forest = Forest.from_treelite(model)
    X = np.array([[t32], [np.nextafter(t32, np.float32(-np.inf))]], np.float32)
    np.testing.assert_array_equal(_proba(forest, X).argmax(1), treelite.gtil.predict(model, X)[:, 0].argmax(1))
    np.testing.assert_array_equal(_proba(forest, X).argmax(1), [1, 0])


def _builder(n_features=1, n_classes=2, n_trees=1, threshold_type="float32", task="kMultiClf",
             average=True, postprocessor="identity_multiclass", leaf_shape=None):
    """A Treelite model builder; the defaults are a random-forest classifier's header as cuML writes it."""
    binary = task == "kBinaryClf"
    return mb.ModelBuilder(
        threshold_type=threshold_type, leaf_output_type=threshold_type,
        metadata=mb.Metadata(num_feature=n_features, task_type=task, average_tree_output=average, num_target=1,
                             num_class=[1 if binary else n_classes], leaf_vector_shape=leaf_shape or (1, n_classes)),
        tree_annotation=mb.TreeAnnotation(num_tree=n_trees, target_id=[0] * n_trees,
                                          class_id=[0 if binary else -1] * n_trees),
        postprocessor=mb.PostProcessorFunc(name=postprocessor), base_scores=[0.0] * (1 if binary else n_classes))


def _one_split_model(threshold, op, threshold_type="float32", leaves=((1.0, 0.0), (0.0, 1.0))):
    builder = _builder(n_classes=len(leaves[0]), threshold_type=threshold_type)
    builder.start_tree()
    builder.start_node(0)
    builder.numerical_test(feature_id=0, threshold=threshold, default_left=True, opname=op,
                           left_child_key=1, right_child_key=2)
    builder.end_node()
    for key, leaf in ((1, leaves[0]), (2, leaves[1])):
        builder.start_node(key)
        builder.leaf(list(leaf))
        builder.end_node()
    builder.end_tree()
    return builder.commit()


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_every_comparison_operator_routes_as_treelite_does(op):
    t = np.float32(0.25)
    model = _one_split_model(threshold=float(t), op=op)
    X = np.array([[np.nextafter(t, np.float32(-1))], [t], [np.nextafter(t, np.float32(1))], [-5], [5]], np.float32)
    expected = treelite.gtil.predict(model, X)[:, 0]
    np.testing.assert_array_equal(_proba(Forest.from_treelite(model), X), expected.astype(np.float32))


def _cuml_like_model(rng, n_features=5, n_classes=3, n_trees=6, depth=5):
    """Trees the way cuML exports them: breadth-first ids, "<=" on float32 data values, probability leaves."""
    data = rng.normal(size=(400, n_features)).astype(np.float32)
    builder = _builder(n_features=n_features, n_classes=n_classes, n_trees=n_trees)
    for _ in range(n_trees):
        builder.start_tree()
        level, next_id = [0], 1
        for d in range(depth + 1):
            following = []
            for node in level:
                builder.start_node(node)
                if d < depth and rng.random() < 0.85:
                    f = int(rng.integers(n_features))
                    builder.numerical_test(feature_id=f, threshold=float(rng.choice(data[:, f])), default_left=True,
                                           opname="<=", left_child_key=next_id, right_child_key=next_id + 1)
                    following += [next_id, next_id + 1]
                    next_id += 2
                else:
                    votes = rng.random(n_classes) * (rng.random(n_classes) < 0.7)
                    builder.leaf(list(votes / votes.sum()) if votes.sum() else [0.0] * n_classes)  # all-zero leaves too
                builder.end_node()
            level = following
        builder.end_tree()
    return builder.commit(), data


def test_cuml_like_forest_gives_gtil_labels_on_its_own_thresholds():
    rng = np.random.default_rng(3)
    model, data = _cuml_like_model(rng)
    forest = Forest.from_treelite(model)
    X = np.concatenate([data, rng.normal(size=(1000, data.shape[1])).astype(np.float32)])
    expected = treelite.gtil.predict(model, X)[:, 0]
    ours = _proba(forest, X)
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    decided = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > 1e-5
    np.testing.assert_array_equal(ours.argmax(1)[decided], expected.argmax(1)[decided])


def test_binary_model_with_scalar_leaves():
    builder = _builder(threshold_type="float64", task="kBinaryClf", postprocessor="identity", leaf_shape=(1, 1))
    builder.start_tree()
    builder.start_node(0)
    builder.numerical_test(feature_id=0, threshold=0.0, default_left=True, opname="<=", left_child_key=1,
                           right_child_key=2)
    builder.end_node()
    for key, p in ((1, 0.2), (2, 0.9)):
        builder.start_node(key)
        builder.leaf(p)
        builder.end_node()
    builder.end_tree()
    forest = Forest.from_treelite(builder.commit())
    np.testing.assert_allclose(_proba(forest, np.array([[-1.0], [1.0]], np.float32)), [[0.8, 0.2], [0.1, 0.9]],
                               rtol=1e-6)


class _EmptyTree:
    def get_field(self, name):
        return np.array([0], np.int32) if name == "num_nodes" else np.array([])


class _WithEmptyTree:
    """A real Treelite model whose last tree has no nodes, as cuML leaves one it could not grow."""

    def __init__(self, model):
        self.model = model
        self.num_tree = model.num_tree + 1

    def get_header_accessor(self):
        return self.model.get_header_accessor()

    def get_tree_accessor(self, i):
        return _EmptyTree() if i == self.model.num_tree else self.model.get_tree_accessor(i)


def test_empty_tree_votes_zero_as_gtil_counts_it():
    model = _one_split_model(0.0, "<=")
    forest = Forest.from_treelite(_WithEmptyTree(model))
    assert forest.roots.size == 2
    X = np.array([[-1.0], [1.0]], np.float32)
    np.testing.assert_allclose(_proba(forest, X), treelite.gtil.predict(model, X)[:, 0] / 2)


def test_all_zero_leaf_kept_zero():
    forest = Forest.from_treelite(_one_split_model(0.0, "<=", leaves=((0.0, 0.0, 0.0), (0.2, 0.3, 0.5))))
    np.testing.assert_allclose(_proba(forest, np.array([[-1.0], [1.0]], np.float32)), [[0, 0, 0], [0.2, 0.3, 0.5]],
                               atol=1e-7)


def test_unknown_operator_refused():
    model = _one_split_model(0.0, "==")
    with pytest.raises(ValueError, match="operator code"):
        Forest.from_treelite(model)


def test_non_forest_models_refused():
    builder = _builder(threshold_type="float64", task="kBinaryClf", average=False, postprocessor="sigmoid",
                       leaf_shape=(1, 1))
    builder.start_tree()
    builder.start_node(0)
    builder.leaf(0.5)
    builder.end_node()
    builder.end_tree()
    with pytest.raises(ValueError, match="not a random-forest classifier"):
        Forest.from_treelite(builder.commit())


def test_header_enum_codes_are_treelites():
    """The numeric codes read from the header accessor mean what the JSON dump spells out."""
    model = _one_split_model(0.5, "<")
    header = model.get_header_accessor()
    dumped = json.loads(model.dump_as_json(pretty_print=False))
    assert dumped["task_type"] == "kMultiClf" and int(header.get_field("task_type")[0]) == 2
    assert dumped["trees"][0]["nodes"][0]["comparison_op"] == "<"
    assert int(model.get_tree_accessor(0).get_field("cmp")[0]) == 2


def test_below_float32_is_strictly_below():
    t = np.array([0.25, np.nextafter(0.25, 1.0), -3.0])
    b = below_float32(t)
    assert np.all(b.astype(np.float64) < t)
    assert np.all(np.nextafter(b, np.float32(np.inf)).astype(np.float64) >= t)
