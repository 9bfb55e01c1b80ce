"""A random forest as plain arrays: what model files store and both backends predict with.

Trees from scikit-learn (CPU) or cuML (GPU) are converted to one flat layout
(see :mod:`gpuseg._forest_kernels`); nothing of the training library's objects
is kept, so a model trained on one backend predicts on the other with the
same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_DEPTH = 256

# Treelite's ``Operator`` enum (kNone, kEQ, kLT, kLE, kGT, kGE): the comparisons a split may use.
_TL_LT, _TL_LE, _TL_GT, _TL_GE = 2, 3, 4, 5
_TL_OPERATORS = {_TL_LT: "<", _TL_LE: "<=", _TL_GT: ">", _TL_GE: ">="}
# Treelite's ``TaskType`` enum values of the classifiers it can hold.
_TL_BINARY, _TL_MULTICLASS = 0, 2
_TL_TEST_NODE, _TL_CATEGORICAL = 1, 2


def floor_float32(t: np.ndarray) -> np.ndarray:
    """Largest float32 <= each float64 threshold, so ``x > t32`` equals ``x > t64`` for float32 ``x``."""
    t = np.asarray(t, np.float64)
    t32 = t.astype(np.float32)
    over = t32.astype(np.float64) > t
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def below_float32(t: np.ndarray) -> np.ndarray:
    """Largest float32 < each float64 threshold, so ``x <= t32`` equals ``x < t64`` for float32 ``x``."""
    t = np.asarray(t, np.float64)
    t32 = floor_float32(t)
    exact = t32.astype(np.float64) == t
    t32[exact] = np.nextafter(t32[exact], np.float32(-np.inf))
    return t32


@dataclass
class Forest:
    """Flat arrays of an ensemble of binary decision trees.

    Attributes
    ----------
    child : int32 (n_nodes,)
        Index of the left child; the right child is ``child + 1``; a leaf points to itself.
    feature : int32 (n_nodes,)
        Feature tested at the node (0 at leaves).
    threshold : float32 (n_nodes,)
        Go right when ``x[feature] > threshold``; +inf at leaves.
    value : float32 (n_nodes, n_classes)
        Class probabilities of the node (used at leaves), each row summing to 1.
    roots : int32 (n_trees,)
        Root node of each tree.
    depth : int32 (n_trees,)
        Steps from the root to the deepest leaf of each tree.
    n_features : int
        Length of the feature vector the trees read.
    impurity_decrease : float64 (n_nodes,) or None
        Weighted impurity decrease of the split at each node: the node's weighted
        samples times its impurity, less its children's (0 at leaves). What
        :meth:`feature_importances` sums; ``None`` for a forest converted without
        it (a model file written before gpuseg stored it, or a cuML forest).
    """

    child: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depth: np.ndarray
    n_features: int
    impurity_decrease: np.ndarray | None = None

    ARRAYS = ("child", "feature", "threshold", "value", "roots", "depth")
    OPTIONAL_ARRAYS = ("impurity_decrease",)

    @property
    def n_classes(self) -> int:
        return self.value.shape[1]

    @classmethod
    def from_trees(cls, trees, n_features: int, n_classes: int) -> "Forest":
        """Build from per-tree ``(left, right, feature, threshold64, value[, impurity_decrease])`` arrays.

        ``left``/``right`` are child indices within the tree (-1 at leaves), the
        comparison is ``x <= threshold`` goes left, and ``value`` (n_nodes, n_classes)
        holds class counts or fractions. ``impurity_decrease`` (n_nodes,), when every
        tree has it, becomes the forest's (see the class attributes).
        """
        parts = {name: [] for name in cls.ARRAYS}
        decreases = []
        offset = 0
        for left, right, feat, thr, val, *decrease in trees:
            left = np.asarray(left, np.int64)
            right = np.asarray(right, np.int64)
            n = left.size
            internal = np.flatnonzero(left >= 0)
            # New ids: root 0, then the children of internal nodes in pairs.
            new_id = np.zeros(n, np.int64)
            new_id[left[internal]] = 1 + 2 * np.arange(internal.size)
            new_id[right[internal]] = 2 + 2 * np.arange(internal.size)
            child = np.empty(n, np.int64)
            child[new_id] = new_id  # leaves point to themselves
            child[new_id[internal]] = new_id[left[internal]]
            feature = np.zeros(n, np.int32)
            feature[new_id[internal]] = np.asarray(feat)[internal]
            threshold = np.full(n, np.inf, np.float32)
            threshold[new_id[internal]] = floor_float32(np.asarray(thr, np.float64)[internal])
            value = np.zeros((n, n_classes), np.float32)
            v = np.asarray(val, np.float64).reshape(n, n_classes)
            sums = v.sum(axis=1, keepdims=True)
            value[new_id] = (v / np.where(sums > 0, sums, 1)).astype(np.float32)
            if decrease:
                decreases.append(np.empty(n, np.float64))
                decreases[-1][new_id] = np.asarray(decrease[0], np.float64)
            parts["child"].append(child + offset)
            parts["feature"].append(feature)
            parts["threshold"].append(threshold)
            parts["value"].append(value)
            parts["roots"].append([offset])
            parts["depth"].append([_tree_depth(left, right)])
            offset += n
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        every_tree = decreases and len(decreases) == len(parts["roots"])
        forest = cls(
            child=arrays["child"].astype(np.int32),
            feature=arrays["feature"].astype(np.int32),
            threshold=arrays["threshold"].astype(np.float32),
            value=arrays["value"].astype(np.float32),
            roots=arrays["roots"].astype(np.int32),
            depth=arrays["depth"].astype(np.int32),
            n_features=int(n_features),
            impurity_decrease=np.concatenate(decreases) if every_tree else None,
        )
        forest.validate()
        return forest

    @classmethod
    def from_sklearn(cls, clf) -> "Forest":
        """Convert a fitted ``sklearn.ensemble.RandomForestClassifier``."""
        trees = [
            (t.children_left, t.children_right, t.feature, t.threshold, t.value[:, 0, :], _sklearn_decrease(t))
            for t in (e.tree_ for e in clf.estimators_)
        ]
        return cls.from_trees(trees, clf.n_features_in_, len(clf.classes_))

    def feature_importances(self) -> np.ndarray:
        """Mean decrease in impurity of each feature, as scikit-learn's ``feature_importances_``.

        Each tree's decreases are summed per feature and normalised to sum 1 (a
        tree without a split counts 0), then averaged over the trees and
        normalised again. For a forest from :meth:`from_sklearn` this equals the
        classifier's ``feature_importances_`` up to float64 rounding. Trees are
        the consecutive node ranges that start at ``roots`` (the layout
        :meth:`from_trees` writes).

        Returns
        -------
        importances : float64 ndarray of shape (n_features,)
            Non-negative, summing to 1 (all 0 when no tree splits).

        Raises
        ------
        AttributeError
            The forest carries no ``impurity_decrease``.
        """
        if self.impurity_decrease is None:
            raise AttributeError(
                "This forest has no per-node impurity decrease, so no feature importances: it comes from a "
                "model file written before gpuseg stored them, or from a library that does not report them "
                "(cuML). Re-train the model to get them."
            )
        n_trees, n_feat = self.roots.size, self.n_features
        tree = np.searchsorted(self.roots, np.arange(self.child.size), side="right") - 1
        per_tree = np.bincount(tree * n_feat + self.feature, weights=self.impurity_decrease,
                               minlength=n_trees * n_feat).reshape(n_trees, n_feat)
        totals = per_tree.sum(axis=1, keepdims=True)
        per_tree = np.divide(per_tree, totals, out=np.zeros_like(per_tree), where=totals > 0)
        mean = per_tree.mean(axis=0)
        total = mean.sum()
        return mean / total if total > 0 else mean

    @classmethod
    def from_treelite(cls, model) -> "Forest":
        """Convert a ``treelite.Model`` holding a random-forest classifier.

        This is how cuML's forests arrive (``RandomForestClassifier.as_treelite()``:
        breadth-first node ids, ``<=`` splits on float32 thresholds, leaf vectors
        of class probabilities); ``treelite.sklearn.import_model`` gives the same
        layout with float64 thresholds. Thresholds stay in float64 until
        :meth:`from_trees` floors them, so every split sends each float32 value
        the way the source model does.

        Parameters
        ----------
        model : treelite.Model
            A classifier whose trees are averaged (``average_tree_output``), with
            an identity post-processor, zero base scores and numerical splits
            ``<``, ``<=``, ``>`` or ``>=``. A tree without nodes (cuML leaves one
            where a tree could not be grown) counts as one leaf of all-zero
            votes, as Treelite's own prediction counts it.

        Returns
        -------
        forest : Forest

        Raises
        ------
        ValueError
            For a model gpuseg cannot predict with as it is meant: a regressor,
            several targets, boosted per-class trees, a post-processor other
            than identity, categorical splits or another comparison operator.
        """
        header = model.get_header_accessor()
        get = header.get_field
        task = int(get("task_type")[0])
        n_classes = int(get("num_class")[0])
        shape = tuple(int(v) for v in get("leaf_vector_shape"))
        if task == _TL_BINARY and n_classes == 1:
            n_classes = 2
        problems = [
            (task in (_TL_BINARY, _TL_MULTICLASS), "it is not a classifier"),
            (int(get("num_target")[0]) == 1, "it has several targets"),
            (bool(get("average_tree_output")[0]), "its trees are summed, not averaged (a boosted model?)"),
            (shape in ((1, n_classes), (1, 1)) and (shape[1] == n_classes or n_classes == 2),
             f"its leaves hold {shape} values for {n_classes} classes"),
            (get("postprocessor") in ("identity", "identity_multiclass"),
             f"its outputs pass through {get('postprocessor')!r}"),
            (not np.any(get("base_scores")), "it has non-zero base scores"),
        ]
        for ok, why in problems:
            if not ok:
                raise ValueError(f"This Treelite model is not a random-forest classifier gpuseg can use: {why}.")
        n_features = int(get("num_feature")[0])
        trees = [_treelite_tree(model.get_tree_accessor(i), n_classes) for i in range(model.num_tree)]
        return cls.from_trees(trees, n_features, n_classes)

    def arrays(self, be) -> dict:
        """The arrays on the device of backend ``be`` (``gpuseg._cpu`` or ``gpuseg._gpu``), for its kernel."""
        return {name: be.asarray(getattr(self, name)) for name in self.ARRAYS}

    def validate(self) -> None:
        """Check the arrays are consistent and every index is in range.

        A forest read from a file must not make a kernel read out of bounds.

        Raises
        ------
        ValueError
        """
        n = self.child.shape[0] if self.child.ndim == 1 else -1
        checks = [
            (self.child.ndim == 1 and n > 0, "child must be a non-empty 1D array"),
            (self.feature.shape == (n,) and self.threshold.shape == (n,), "node arrays differ in length"),
            (self.value.ndim == 2 and self.value.shape[0] == n and self.value.shape[1] >= 2,
             "value must be (n_nodes, n_classes >= 2)"),
            (self.roots.ndim == 1 and self.roots.size > 0 and self.depth.shape == self.roots.shape,
             "roots and depth must be 1D arrays of one entry per tree"),
            (self.child.dtype == np.int32 and self.feature.dtype == np.int32 and self.roots.dtype == np.int32
             and self.depth.dtype == np.int32, "index arrays must be int32"),
            (self.threshold.dtype == np.float32 and self.value.dtype == np.float32, "threshold and value must be float32"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Invalid forest: {message}.")
        internal = ~np.isposinf(self.threshold)
        if np.any(self.child < 0) or np.any(self.child[internal] + 1 >= n) or np.any(self.child >= n):
            raise ValueError("Invalid forest: a child index is out of range.")
        if np.any(self.feature < 0) or np.any(self.feature >= self.n_features):
            raise ValueError(f"Invalid forest: a feature index is outside [0, {self.n_features}).")
        if np.any(self.roots < 0) or np.any(self.roots >= n):
            raise ValueError("Invalid forest: a root index is out of range.")
        if np.any(self.depth < 0) or np.any(self.depth > MAX_DEPTH):
            raise ValueError(f"Invalid forest: tree depths must lie in [0, {MAX_DEPTH}].")
        if not np.all(np.isfinite(self.value)) or np.any(self.value < 0):
            raise ValueError("Invalid forest: leaf values must be finite and non-negative.")
        sums = self.value.sum(axis=1, dtype=np.float64)
        if np.any((np.abs(sums - 1) > 1e-4) & (sums != 0)):
            raise ValueError("Invalid forest: a node's class probabilities do not sum to 1 (nor to 0, an empty tree's).")
        dec = self.impurity_decrease
        if dec is not None and not (dec.shape == (n,) and dec.dtype == np.float64 and np.all(np.isfinite(dec))):
            raise ValueError("Invalid forest: impurity_decrease must be finite float64 of one entry per node.")
        if dec is not None and not (self.roots[0] == 0 and np.all(np.diff(self.roots) > 0)):
            raise ValueError("Invalid forest: with impurity_decrease, trees must be consecutive node ranges from 0.")


def _sklearn_decrease(tree) -> np.ndarray:
    """Weighted impurity decrease of each node of a fitted scikit-learn ``tree_`` (0 at leaves)."""
    left, right = tree.children_left, tree.children_right
    w, impurity = tree.weighted_n_node_samples, tree.impurity
    split = np.flatnonzero(left >= 0)
    decrease = np.zeros(tree.node_count, np.float64)
    l, r = left[split], right[split]
    decrease[split] = w[split] * impurity[split] - w[l] * impurity[l] - w[r] * impurity[r]
    return decrease


def _treelite_tree(tree, n_classes: int) -> tuple:
    """One Treelite tree as ``(left, right, feature, threshold64, value)`` for :meth:`Forest.from_trees`."""
    get = tree.get_field
    n = int(get("num_nodes")[0])
    if n == 0:
        return np.array([-1]), np.array([-1]), np.zeros(1, np.int64), np.zeros(1), np.zeros((1, n_classes))
    node_type = get("node_type")
    if np.any(node_type == _TL_CATEGORICAL):
        raise ValueError("This Treelite model has categorical splits; gpuseg's forests split on numbers only.")
    internal = node_type == _TL_TEST_NODE
    op = get("cmp")
    unknown = sorted(set(op[internal].tolist()) - set(_TL_OPERATORS))
    if unknown:
        raise ValueError(f"This Treelite model compares with operator code(s) {unknown}; gpuseg handles "
                         f"{sorted(_TL_OPERATORS.values())} only.")
    left = np.where(internal, get("cleft"), -1).astype(np.int64)
    right = np.where(internal, get("cright"), -1).astype(np.int64)
    t = get("threshold").astype(np.float64)
    # Go left when "x <op> t" holds; from_trees wants "x <= threshold" to go left.
    swap = internal & ((op == _TL_GT) | (op == _TL_GE))
    left[swap], right[swap] = right[swap], left[swap].copy()
    strict = internal & ((op == _TL_LT) | (op == _TL_GE))  # left (after the swap) when x < t
    threshold = np.where(internal, t, 0.0)
    threshold[strict] = below_float32(t[strict])
    begin, end = get("leaf_vector_begin"), get("leaf_vector_end")
    vectors, scalars = get("leaf_vector"), get("leaf_value")
    value = np.zeros((n, n_classes))
    for i in np.flatnonzero(~internal):
        size = int(end[i] - begin[i])
        if size == n_classes:
            value[i] = vectors[begin[i]:end[i]]
        elif size == 0 and n_classes == 2:
            value[i] = (1.0 - scalars[i], scalars[i])
        else:
            raise ValueError(f"A leaf of this Treelite model holds {size} values for {n_classes} classes.")
    if np.any(value < 0) or not np.all(np.isfinite(value)):
        raise ValueError("This Treelite model's leaves hold negative or non-finite values, not class votes.")
    return left, right, get("split_index").astype(np.int64), threshold, value


def _tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    depth = 0
    level = np.array([0])
    while True:
        level = level[left[level] >= 0]
        if level.size == 0:
            return depth
        level = np.concatenate([left[level], right[level]])
        depth += 1
