"""scikit-learn's decision tree, grown by a Numba kernel: the same tree, node for node, in less time.

A forest of the benchmark's size spends most of its training in scikit-learn's
tree builder (``DepthFirstTreeBuilder`` with ``BestSplitter`` and ``Gini``): a
tree of 12.8k rows of 24 features, depth 10, took it 50 ms on the 2-core EPYC,
this module's kernel 25 ms (node values sorted by a radix sort, a split
position's Gini proxy in one pass over the classes). The kernel grows the tree
scikit-learn would grow, with its rules replayed in the same order:

* the features of a node are drawn with scikit-learn's generator
  (``our_rand_r``, seeded with ``RandomState(random_state).randint(0, 2**31 - 1)``)
  and its Fisher-Yates bookkeeping of constant features, which carries over
  from node to node in depth-first order (left child first);
* a feature whose node values span at most ``1e-7`` (float32) is constant; a
  split position is one where the sorted value rises by more than ``1e-7``;
  its threshold is ``v[p - 1] / 2 + v[p] / 2`` in float64;
* the best position maximises scikit-learn's Gini proxy
  ``-w_right * gini_right - w_left * gini_left`` (the first one on a tie), in
  the same float64 operations; a node is a leaf at ``max_depth``, below
  ``min_samples_split`` samples, at impurity ``<= eps``, without a position
  that leaves ``min_samples_leaf`` on each side, or when its improvement falls
  short of ``min_impurity_decrease``.

Which samples lie on each side, not their order, decides everything else: the
class sums are sums of integer weights, exact in any order. So the kernel only
runs where the weights are integers (a bootstrap's draw counts: scikit-learn 1.9
draws by class weight, but for ``"balanced_subsample"``, which weights the
draws) and scikit-learn's other options are at their defaults (:func:`replays`);
elsewhere scikit-learn grows the tree. Tested against
scikit-learn's own trees; ``python -m benchmarks.filters`` (row ``forest_fit``)
times a forest both ways.
"""

from __future__ import annotations

import numbers

import numba
import numpy as np

FEATURE_THRESHOLD = np.float32(1e-7)  # scikit-learn's: values closer than this are one value
EPSILON = np.finfo(np.float64).eps  # scikit-learn's tree builder's
RAND_R_MAX = 2147483647  # scikit-learn's generator draws below it
_UNDEFINED = -2  # scikit-learn's feature and threshold of a leaf, and the root's parent
_LEAF = -1  # scikit-learn's children of a leaf
_DIGIT = 8  # bits of a radix sort's digit
_BUCKETS = 1 << _DIGIT
_RADIX_FROM = 128  # samples of a node from which the radix sort is the faster


def replays(tree, X, y, sample_weight, options: dict) -> bool:
    """Whether :func:`grow` gives ``tree`` (an unfitted ``DecisionTreeClassifier``) the tree scikit-learn
    would grow from these arguments of its ``_fit``: its defaults but for the depth, the features drawn,
    the leaf and split sizes, the impurity decrease and the seed, and integer sample weights."""
    if not (options.get("check_input") is False and options.get("missing_values_in_feature_mask") is None
            and sample_weight is not None and isinstance(tree.random_state, numbers.Integral)):
        return False
    plain = (tree.criterion == "gini" and tree.splitter == "best" and tree.max_leaf_nodes is None
             and tree.monotonic_cst is None and tree.ccp_alpha == 0.0 and tree.min_weight_fraction_leaf == 0.0
             and tree.class_weight is None and isinstance(tree.min_samples_leaf, numbers.Integral)
             and isinstance(tree.min_samples_split, numbers.Integral))
    return (plain and isinstance(X, np.ndarray) and X.dtype == np.float32 and X.ndim == 2 and X.flags.c_contiguous
            and y.ndim == 2 and y.shape[1] == 1 and np.array_equal(sample_weight, np.floor(sample_weight))
            and float(np.sum(sample_weight)) < 2.0**52)


def max_features_of(tree, n_features: int) -> int:
    """scikit-learn's ``max_features_`` of ``tree`` for ``n_features`` columns."""
    m = tree.max_features
    if m == "sqrt":
        return max(1, int(np.sqrt(n_features)))
    if m == "log2":
        return max(1, int(np.log2(n_features)))
    if m is None:
        return n_features
    if isinstance(m, numbers.Integral):
        return int(m)
    return max(1, int(m * n_features)) if m > 0.0 else 0


def fit(tree, X, y, sample_weight):
    """Fit ``tree`` (see :func:`replays`) as ``DecisionTreeClassifier._fit`` would, attributes and all.

    Parameters
    ----------
    tree : sklearn.tree.DecisionTreeClassifier
    X : float32 ndarray of shape (n_samples, n_features), C-contiguous
    y : float64 ndarray of shape (n_samples, 1)
        Classes.
    sample_weight : float64 ndarray of shape (n_samples,)
        Non-negative integers.

    Returns
    -------
    tree
    """
    from sklearn.tree._tree import NODE_DTYPE, Tree

    classes, encoded = np.unique(y[:, 0], return_inverse=True)
    n_classes = classes.shape[0]
    max_depth = np.iinfo(np.int32).max if tree.max_depth is None else int(tree.max_depth)
    min_samples_leaf = int(tree.min_samples_leaf)
    min_samples_split = max(int(tree.min_samples_split), 2 * min_samples_leaf)
    max_features = max_features_of(tree, X.shape[1])
    seed = np.random.RandomState(tree.random_state).randint(0, RAND_R_MAX)
    nodes, values, depth = grow(X, encoded.astype(np.int64), np.ascontiguousarray(sample_weight, np.float64),
                                n_classes, max_features, max_depth, min_samples_leaf, min_samples_split,
                                float(tree.min_impurity_decrease), int(seed))
    record = np.zeros(len(nodes[0]), NODE_DTYPE)
    for name, column in zip(NODE_DTYPE.names, nodes):
        record[name] = column
    tree.n_features_in_ = X.shape[1]
    tree.n_outputs_ = 1
    tree.classes_ = classes
    tree.n_classes_ = np.intp(n_classes)
    tree.max_features_ = max_features
    tree.tree_ = Tree(X.shape[1], np.array([n_classes], np.intp), 1)
    tree.tree_.__setstate__({"max_depth": depth, "node_count": record.shape[0], "nodes": record,
                             "values": values[:, None, :]})
    return tree


def grow(X, y, w, n_classes, max_features, max_depth, min_samples_leaf, min_samples_split,
         min_impurity_decrease, seed):
    """The nodes of scikit-learn's tree (see the module docstring), in its depth-first order.

    Parameters
    ----------
    X : float32 ndarray of shape (n_samples, n_features)
    y : int64 ndarray of shape (n_samples,)
        Class indices ``0 .. n_classes - 1``.
    w : float64 ndarray of shape (n_samples,)
        Integer weights; a sample of weight 0 is left out, as scikit-learn leaves it.
    n_classes, max_features, max_depth, min_samples_leaf, min_samples_split : int
        scikit-learn's values after its ``_fit`` resolved them.
    min_impurity_decrease : float
    seed : int
        The splitter's generator state, ``RandomState(random_state).randint(0, RAND_R_MAX)``.

    Returns
    -------
    nodes : tuple of ndarray
        ``NODE_DTYPE``'s fields: left and right child, feature, threshold,
        impurity, samples, weighted samples, missing-values-go-left.
    values : float64 ndarray of shape (n_nodes, n_classes)
        Class fractions of each node's weight.
    depth : int
        The deepest node's depth.
    """
    out = _grow(X, y, w, n_classes, max_features, max_depth, min_samples_leaf, min_samples_split,
                min_impurity_decrease, seed)
    n = out[-1]
    return tuple(a[:n] for a in out[:8]), out[8][:n], out[9]


@numba.njit(cache=True, nogil=True)
def _rand_int(low, high, state):
    """scikit-learn's ``rand_int``: ``low + our_rand_r(state) % (high - low)``; ``state`` is a 1-element array."""
    s = state[0]
    if s == 0:
        s = np.uint32(1)
    s ^= np.uint32(s << np.uint32(13))
    s ^= np.uint32(s >> np.uint32(17))
    s ^= np.uint32(s << np.uint32(5))
    state[0] = s
    return low + np.int64(s % np.uint32(2147483648)) % (high - low)


@numba.njit(cache=True, nogil=True, inline="always")
def _gini(squares, weight):
    """scikit-learn's Gini impurity of classes whose weights' squares sum to ``squares``, ``weight`` in
    all, in its operations."""
    return (0.0 + (1.0 - squares / (weight * weight))) / 1.0


@numba.njit(cache=True, nogil=True, inline="always")
def _squares(sums):
    """Sum of the squares of ``sums``, in class order."""
    sq = 0.0
    for c in range(sums.shape[0]):
        sq += sums[c] * sums[c]
    return sq


@numba.njit(cache=True, nogil=True)
def _sort_node(X, feature, samples, values, bits, keys, order, start, end):
    """Sort ``samples[start:end]`` by their value of ``feature``, into ``values[start:end]`` (``bits``: a
    ``uint32`` view of ``values``; ``keys`` and ``order``: scratch of twice the samples).

    The values' bits, made order-keeping as unsigned integers, are sorted with the samples: a radix
    sort of four 8-bit digits, or for small nodes an insertion sort.
    """
    n = end - start
    for p in range(n):
        values[start + p] = X[samples[start + p], feature]
    for p in range(n):
        b = bits[start + p]
        keys[p] = ~b if b >> np.uint32(31) else b | np.uint32(0x80000000)
        order[p] = samples[start + p]
    if n >= _RADIX_FROM:
        src, dst = 0, n
        counts = np.empty(_BUCKETS, np.int64)
        for shift in range(0, 32, _DIGIT):
            counts[:] = 0
            for p in range(n):
                counts[(keys[src + p] >> np.uint32(shift)) & np.uint32(_BUCKETS - 1)] += 1
            if counts.max() == n:
                continue  # one digit for all: the order stands
            running = 0
            for d in range(_BUCKETS):
                c = counts[d]
                counts[d] = running
                running += c
            for p in range(n):
                k = keys[src + p]
                d = (k >> np.uint32(shift)) & np.uint32(_BUCKETS - 1)
                keys[dst + counts[d]] = k
                order[dst + counts[d]] = order[src + p]
                counts[d] += 1
            src, dst = dst, src
    else:
        src = 0
        for p in range(1, n):  # insertion sort
            k = keys[p]
            s = order[p]
            q = p - 1
            while q >= 0 and keys[q] > k:
                keys[q + 1] = keys[q]
                order[q + 1] = order[q]
                q -= 1
            keys[q + 1] = k
            order[q + 1] = s
    for p in range(n):
        k = keys[src + p]
        bits[start + p] = k ^ np.uint32(0x80000000) if k >> np.uint32(31) else ~k
        samples[start + p] = order[src + p]


@numba.njit(cache=True, nogil=True, inline="always")
def _class_sums(samples, y, w, start, end, sums):
    """Weight of each class among ``samples[start:end]`` into ``sums``; returns their total weight."""
    sums[:] = 0.0
    total = 0.0
    for p in range(start, end):
        i = samples[p]
        sums[y[i]] += w[i]
        total += w[i]
    return total


@numba.njit(cache=True, nogil=True)
def _scan(values, samples, y, w, start, end, total, w_node, min_samples_leaf, sum_left):
    """The best split position of sorted ``values[start:end]`` (``end`` if none) and its Gini proxy, as
    scikit-learn's search over one feature finds them (``sum_left``: scratch of one per class)."""
    best_proxy = -np.inf
    best_pos = end
    sum_left[:] = 0.0
    w_left = 0.0
    for p in range(start + 1, end):
        i = samples[p - 1]
        sum_left[y[i]] += w[i]
        w_left += w[i]
        if values[p] <= values[p - 1] + FEATURE_THRESHOLD:
            continue
        if p - start < min_samples_leaf or end - p < min_samples_leaf:
            continue
        w_right = w_node - w_left
        sq_left = 0.0
        sq_right = 0.0
        for c in range(total.shape[0]):  # children_impurity's sums, in its order
            v = sum_left[c]
            sq_left += v * v
            v = total[c] - v
            sq_right += v * v
        proxy = -w_right * _gini(sq_right, w_right) - w_left * _gini(sq_left, w_left)
        if proxy > best_proxy:
            best_proxy = proxy
            best_pos = p
    return best_pos, best_proxy


@numba.njit(cache=True, nogil=True)
def _best_split(X, y, w, samples, values, bits, keys, order, features, constant, state, start, end, n_known,
                total, w_node, max_features, min_samples_leaf, sum_left):
    """scikit-learn's ``node_split_best`` up to the final partition: the features drawn (and the constant
    ones' bookkeeping in ``features`` and ``constant`` updated), the best one's split position (``end``
    if none), feature and threshold, and the constant features known to the children."""
    n_features = features.shape[0]
    f_i = n_features
    n_visited = 0
    n_found = 0
    n_drawn = 0
    n_total = n_known
    best_proxy = -np.inf
    best_pos = end
    best_feature = 0
    best_threshold = 0.0
    while f_i > n_total and (n_visited < max_features or n_visited <= n_found + n_drawn):
        n_visited += 1
        f_j = _rand_int(n_drawn, f_i - n_found, state)
        if f_j < n_known:
            features[n_drawn], features[f_j] = features[f_j], features[n_drawn]
            n_drawn += 1
            continue
        f_j += n_found
        current = features[f_j]
        _sort_node(X, current, samples, values, bits, keys, order, start, end)
        if values[end - 1] <= values[start] + FEATURE_THRESHOLD:
            features[f_j], features[n_total] = features[n_total], features[f_j]
            n_found += 1
            n_total += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        pos, proxy = _scan(values, samples, y, w, start, end, total, w_node, min_samples_leaf, sum_left)
        if proxy > best_proxy:
            best_proxy = proxy
            best_pos = pos
            best_feature = current
            best_threshold = np.float64(values[pos - 1]) / 2.0 + np.float64(values[pos]) / 2.0
    features[:n_known] = constant[:n_known]
    constant[n_known:n_total] = features[n_known:n_total]
    return best_pos, best_feature, best_threshold, n_total


@numba.njit(cache=True, nogil=True)
def _grow(X, y, w, n_classes, max_features, max_depth, min_samples_leaf, min_samples_split,
          min_impurity_decrease, seed):
    n_rows, n_features = X.shape
    samples = np.empty(n_rows, np.int64)
    m = 0
    w_all = 0.0
    for i in range(n_rows):
        if w[i] != 0.0:
            samples[m] = i
            m += 1
        w_all += w[i]
    features = np.arange(n_features)
    constant = np.empty(n_features, np.int64)
    state = np.array([np.uint32(seed)], np.uint32)
    values = np.empty(max(m, 1), np.float32)
    bits = values.view(np.uint32)
    keys = np.empty(2 * max(m, 1), np.uint32)
    order = np.empty(2 * max(m, 1), np.int64)

    cap = max(2 * m, 1)
    left = np.full(cap, _LEAF, np.int64)
    right = np.full(cap, _LEAF, np.int64)
    feat = np.full(cap, _UNDEFINED, np.int64)
    thr = np.full(cap, float(_UNDEFINED), np.float64)
    imp = np.zeros(cap, np.float64)
    count = np.zeros(cap, np.int64)
    weight = np.zeros(cap, np.float64)
    go_left = np.zeros(cap, np.uint8)
    value = np.zeros((cap, n_classes), np.float64)

    # The stack of nodes to grow: start, end, depth, parent, is_left, known constant features; impurity.
    stack = np.empty((cap + 2, 6), np.int64)
    stack_impurity = np.empty(cap + 2, np.float64)
    stack[0] = (0, m, 0, _UNDEFINED, 0, 0)
    stack_impurity[0] = np.inf
    top = 1
    total = np.zeros(n_classes, np.float64)
    sum_left = np.zeros(n_classes, np.float64)
    sum_right = np.zeros(n_classes, np.float64)
    n_nodes = 0
    deepest = -1
    while top > 0:
        top -= 1
        start, end, depth, parent, is_left, n_known = stack[top]
        impurity = stack_impurity[top]
        n_node = end - start
        w_node = _class_sums(samples, y, w, start, end, total)
        if n_nodes == 0:
            impurity = _gini(_squares(total), w_node)
        leaf = (depth >= max_depth or n_node < min_samples_split or n_node < 2 * min_samples_leaf
                or impurity <= EPSILON)
        if not leaf:
            pos, best_feature, best_threshold, n_total = _best_split(
                X, y, w, samples, values, bits, keys, order, features, constant, state, start, end, n_known,
                total, w_node, max_features, min_samples_leaf, sum_left)
            leaf = pos >= end
        if not leaf:
            lo, hi = start, end
            while lo < hi:  # partition_samples_final
                if np.float64(X[samples[lo], best_feature]) <= best_threshold:
                    lo += 1
                else:
                    hi -= 1
                    samples[lo], samples[hi] = samples[hi], samples[lo]
            w_left = _class_sums(samples, y, w, start, pos, sum_left)
            w_right = w_node - w_left
            for c in range(n_classes):
                sum_right[c] = total[c] - sum_left[c]
            imp_left = _gini(_squares(sum_left), w_left)
            imp_right = _gini(_squares(sum_right), w_right)
            improvement = (w_node / w_all) * (impurity - (w_right / w_node * imp_right)
                                              - (w_left / w_node * imp_left))
            leaf = improvement + EPSILON < min_impurity_decrease
        node = n_nodes
        n_nodes += 1
        imp[node] = impurity
        count[node] = n_node
        weight[node] = w_node
        if parent != _UNDEFINED:
            if is_left:
                left[parent] = node
            else:
                right[parent] = node
        for c in range(n_classes):
            value[node, c] = total[c] / w_node
        if not leaf:
            feat[node] = best_feature
            thr[node] = best_threshold
            go_left[node] = pos - start > end - pos
            stack[top] = (pos, end, depth + 1, node, 0, n_total)  # right below left: left grows first
            stack_impurity[top] = imp_right
            stack[top + 1] = (start, pos, depth + 1, node, 1, n_total)
            stack_impurity[top + 1] = imp_left
            top += 2
        deepest = max(deepest, depth)
    return left, right, feat, thr, imp, count, weight, go_left, value, deepest, n_nodes
