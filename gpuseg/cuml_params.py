"""scikit-learn random-forest parameters in the names, types and conventions cuML accepts.

cuML's ``RandomForestClassifier`` (26.10: ``python/cuml/cuml/ensemble/randomforest_common.pyx``)
tests ``isinstance(x, int)``: a NumPy integer ``max_depth`` is refused, and a NumPy
integer ``min_samples_leaf`` is read as a *fraction* of the rows (``ceil(x * n_rows)``:
every tree one leaf). It takes ``max_samples`` as a float fraction only, and
``class_weight`` only from 26.08 on, without ``"balanced_subsample"``. Everything here
is plain Python, so the translation is tested on machines without a GPU.
"""

from __future__ import annotations

from numbers import Integral, Real

CLASS_WEIGHT_SINCE = (26, 8)
"""The first cuML release whose ``RandomForestClassifier`` takes ``class_weight``."""


def _integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _fraction(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, Integral))


def cuml_params(forest_params: dict, n_samples: int, cuml_version: tuple = (99, 0)) -> dict:
    """Translate scikit-learn forest parameters to cuML's.

    Parameters
    ----------
    forest_params : dict
        ``n_estimators``, ``max_depth``, ``max_samples``, ``max_features``,
        ``min_samples_leaf``, ``class_weight`` (keyed by class *index*, as the
        trainer sees classes) and ``random_state``, as scikit-learn takes them;
        ``max_samples="auto"`` must already be resolved to a number.
    n_samples : int
        Rows the forest is trained on (an integer ``max_samples`` becomes a fraction of it).
    cuml_version : tuple of int
        ``(major, minor)`` of the installed cuML.

    Returns
    -------
    params : dict
        Keyword arguments for ``cuml.ensemble.RandomForestClassifier``, every
        number a Python ``int`` or ``float``. With a ``random_state``,
        ``n_streams=1`` too: cuML's trees are reproducible only on one stream.

    Raises
    ------
    ValueError
        For a value cuML cannot honour, naming the parameter and what to use instead.
    """
    unknown = set(forest_params) - {"n_estimators", "max_depth", "max_samples", "max_features",
                                    "min_samples_leaf", "class_weight", "random_state"}
    if unknown:
        raise ValueError(f"cuML's forest has no parameter(s) {sorted(unknown)}.")
    p = dict(forest_params)
    out = {}

    n = p.get("n_estimators", 100)
    if not _integer(n) or n < 1:
        raise ValueError(f"n_estimators must be a positive integer; got {n!r}.")
    out["n_estimators"] = int(n)

    depth = p.get("max_depth")
    if depth is not None and (not _integer(depth) or depth < 1):
        raise ValueError(f"max_depth must be a positive integer or None; got {depth!r}.")
    out["max_depth"] = None if depth is None else int(depth)

    out["max_samples"] = _max_samples(p.get("max_samples"), n_samples)

    features = p.get("max_features", "sqrt")
    if _integer(features) and features >= 1:
        out["max_features"] = int(features)
    elif _fraction(features) and 0 < features <= 1:
        out["max_features"] = float(features)
    elif features in ("sqrt", "log2", None):
        out["max_features"] = features
    else:
        raise ValueError(f"max_features must be a positive integer, a fraction in (0, 1], 'sqrt', 'log2' "
                         f"or None; got {features!r}.")

    leaf = p.get("min_samples_leaf", 1)
    if _integer(leaf) and leaf >= 1:
        out["min_samples_leaf"] = int(leaf)
    elif _fraction(leaf) and 0 < leaf < 1:
        out["min_samples_leaf"] = float(leaf)
    else:
        raise ValueError(f"min_samples_leaf must be a positive integer or a fraction in (0, 1); got {leaf!r}.")

    weight = p.get("class_weight")
    if weight is not None:
        if tuple(cuml_version) < CLASS_WEIGHT_SINCE:
            raise ValueError(f"class_weight needs cuML >= {'.'.join(map(str, CLASS_WEIGHT_SINCE))} on the GPU "
                             f"(this is {'.'.join(map(str, cuml_version))}); upgrade cuML or use backend='cpu'.")
        if weight == "balanced_subsample":
            raise ValueError("cuML has no class_weight='balanced_subsample'; use 'balanced' (the same weights "
                             "for the whole training set) or backend='cpu'.")
        if isinstance(weight, dict):
            weight = {int(k): float(v) for k, v in weight.items()}
        elif weight != "balanced":
            raise ValueError(f"class_weight must be a dict, 'balanced' or None; got {weight!r}.")
        out["class_weight"] = weight

    seed = p.get("random_state")
    if seed is not None:
        if not _integer(seed) or seed < 0:
            raise ValueError(f"On the GPU, random_state must be a non-negative integer (cuML takes a seed, "
                             f"not a generator); got {seed!r}.")
        out["random_state"] = int(seed)
        out["n_streams"] = 1
    return out


def _max_samples(value, n_samples: int) -> float:
    """scikit-learn's ``max_samples`` (None, a row count or a fraction) as cuML's fraction of the rows."""
    if value is None:
        return 1.0
    if _integer(value):
        if not 1 <= value <= n_samples:
            raise ValueError(f"max_samples={value} rows, but there are {n_samples} training rows; "
                             "pass at most that many, or a fraction in (0, 1].")
        return float(value) / n_samples
    if _fraction(value) and 0 < value <= 1:
        return float(value)
    raise ValueError(f"max_samples must be None, a number of rows or a fraction in (0, 1]; got {value!r}.")
