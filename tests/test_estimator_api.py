"""Every geoalign estimator is a scikit-learn estimator for two views.

One base (:class:`geoalign._estimator.TwoViewEstimator`, a
:class:`sklearn.base.BaseEstimator`): ``clone``, ``get_params(deep=True)``,
``set_params`` (nested included) and one not-fitted error, scikit-learn's.

``sklearn.utils.estimator_checks`` is written for single-view estimators
(``fit(X, y)`` with ``y`` a target vector).  The checks that only need the
constructor and the parameter protocol run on every estimator as they are
(:data:`APPLICABLE`).  Every other check sklearn yields for an estimator is
listed in :data:`SKIPPED` with the reason; the ones that matter for a two-view
estimator are re-stated here with ``fit(X_a, X_b, y)`` (:func:`test_fit_contract`):
``fit`` returns ``self``, leaves the parameters unchanged, is idempotent,
``n_features_in``-style checks of the second view, the unfitted error, and a
pickle round trip that gives the same transforms.

Skipped checks and why:

* ``check_fit_score_takes_y``, ``check_estimators_dtypes``,
  ``check_estimators_fit_returns_self``, ``check_estimators_overwrite_params``,
  ``check_dont_overwrite_parameters``, ``check_estimators_unfitted``,
  ``check_estimators_pickle``, ``check_fit_idempotent``,
  ``check_fit_check_is_fitted``, ``check_dict_unchanged``,
  ``check_readonly_memmap_input``, ``check_f_contiguous_array_estimator``,
  ``check_methods_sample_order_invariance``, ``check_methods_subset_invariance``,
  ``check_n_features_in``, ``check_n_features_in_after_fitting``,
  ``check_pipeline_consistency``, ``check_positive_only_tag_during_fit``:
  they call ``fit(X, y)`` with one view and a target vector, and
  ``predict``/``transform``/``score`` with one argument; a two-view estimator
  needs ``fit(X_a, X_b[, y])`` and maps views with ``transform_a``/``transform_b``
  (the contract ones are re-stated in :func:`test_fit_contract`).
* ``check_fit1d``, ``check_fit2d_1sample``, ``check_fit2d_1feature``,
  ``check_fit2d_predict1d``, ``check_estimators_empty_data_messages``,
  ``check_estimators_nan_inf``, ``check_complex_data``, ``check_dtype_object``:
  bad-input checks of the one-view API; the two-view bad input (1-D, empty,
  NaN/Inf, mismatched pairs, non-integer labels) is tested per estimator in
  ``test_linear.py``, ``test_train_models.py``, ``test_subspace.py`` and
  ``test_model_selection.py``.
* ``check_estimator_sparse_tag``, ``check_estimator_sparse_array``,
  ``check_estimator_sparse_matrix``: no geoalign estimator accepts sparse input
  (the default tags say so; the checks fit with one view).
* ``check_transformer_general``, ``check_transformer_data_not_an_array``,
  ``check_transformer_n_iter``, ``check_transformer_preserve_dtypes``,
  ``check_transformers_unfitted`` (SharedPrivateDecomposition, the one
  transformer): its ``transform(U, V)`` takes two views and returns a
  ``SubspaceComponents``; fit/transform contract re-stated in
  :func:`test_shared_private_contract`.
* ``check_array_api_input``: needs ``array_api_compat`` dispatch through
  ``fit(X, y)``; geoalign's own NumPy/torch contract is tested in
  ``test_backend.py`` and ``test_devices.py``.
"""
import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import estimator_checks as ec

from geoalign._estimator import NotFittedError, TwoViewEstimator
from geoalign.comparison import TwoViewESZSL
from geoalign.model_selection import ClassDisjointSearchCV
from geoalign.models import CCA, CFSA, ESZSL, QSMA, SSPC, LinearContrastive, UniCode
from geoalign.subspace import SharedPrivateDecomposition

QUIET = {"progress": False}
TINY = dict(max_epochs=1, batch_size=32, random_state=0, trainer_options=QUIET)
SEMANTICS = np.random.default_rng(0).normal(size=(4, 3))

#: estimators built with their defaults (what the constructor checks need)
DEFAULTS = [CCA(), ESZSL(), QSMA(), SSPC(), CFSA(), UniCode(), LinearContrastive(),
            SharedPrivateDecomposition(), TwoViewESZSL(), ClassDisjointSearchCV(CCA(), {"dim": [2]})]

APPLICABLE = ("check_estimator_cloneable", "check_estimator_tags_renamed", "check_valid_tag_types",
              "check_estimator_repr", "check_no_attributes_set_in_init",
              "check_parameters_default_constructible", "check_get_params_invariance",
              "check_set_params", "check_do_not_raise_errors_in_init_or_set_params",
              "check_mixin_order")

_ONE_VIEW_FIT = "calls fit(X, y) with one view; two-view contract re-stated in test_fit_contract"
_ONE_VIEW_INPUT = "bad input of the one-view API; two-view bad input is tested per estimator"
SKIPPED = {
    **{name: _ONE_VIEW_FIT for name in (
        "check_fit_score_takes_y", "check_estimators_dtypes", "check_estimators_fit_returns_self",
        "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
        "check_estimators_unfitted", "check_estimators_pickle", "check_fit_idempotent",
        "check_fit_check_is_fitted", "check_dict_unchanged", "check_readonly_memmap_input",
        "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_n_features_in", "check_n_features_in_after_fitting",
        "check_pipeline_consistency", "check_positive_only_tag_during_fit")},
    **{name: _ONE_VIEW_INPUT for name in (
        "check_fit1d", "check_fit2d_1sample", "check_fit2d_1feature", "check_fit2d_predict1d",
        "check_estimators_empty_data_messages", "check_estimators_nan_inf", "check_complex_data",
        "check_dtype_object")},
    **{name: "no geoalign estimator accepts sparse input" for name in (
        "check_estimator_sparse_tag", "check_estimator_sparse_array", "check_estimator_sparse_matrix")},
    **{name: "SharedPrivateDecomposition.transform(U, V) takes two views and returns "
             "SubspaceComponents; re-stated in test_shared_private_contract" for name in (
        "check_transformer_data_not_an_array", "check_transformer_general", "check_transformer_n_iter",
        "check_transformer_preserve_dtypes", "check_transformers_unfitted")},
    "check_array_api_input": "array-API dispatch through fit(X, y); the NumPy/torch contract is "
                             "tested in test_backend.py and test_devices.py",
}


def _name(check) -> str:
    return getattr(check, "func", check).__name__


@pytest.mark.parametrize("est", DEFAULTS, ids=lambda e: type(e).__name__)
def test_applicable_sklearn_checks(est):
    assert isinstance(est, BaseEstimator) and isinstance(est, TwoViewEstimator)
    name = type(est).__name__
    for check in APPLICABLE:
        getattr(ec, check)(name, est)
    # every check sklearn would run is either run here or skipped with a reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yielded = {_name(c) for c in ec._yield_all_checks(est, legacy=True)}
    unaccounted = yielded - set(APPLICABLE) - set(SKIPPED)
    assert not unaccounted, f"sklearn {sklearn.__version__} yields checks not classified: {unaccounted}"


@pytest.mark.parametrize("est", DEFAULTS, ids=lambda e: type(e).__name__)
def test_clone_and_params(est):
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    deep = est.get_params(deep=True)
    assert set(est.get_params(deep=False)) <= set(deep)
    with pytest.raises(ValueError, match="invalid parameter 'no_such_parameter'"):
        clone(est).set_params(no_such_parameter=1)


def test_nested_params():
    search = ClassDisjointSearchCV(CCA(dim=3), {"reg": [0.1]})
    assert search.get_params(deep=True)["estimator__dim"] == 3
    search.set_params(estimator__dim=5)
    assert search.estimator.dim == 5
    with pytest.raises(ValueError, match="invalid parameter 'estimator_dim'"):
        search.set_params(estimator_dim=5)


def _data(n=64):
    rng = np.random.default_rng(1)
    y = np.arange(n) % 4
    shared = rng.normal(size=(n, 2)) + y[:, None]
    X_a = np.c_[shared, rng.normal(size=(n, 3))] @ rng.normal(size=(5, 6))
    X_b = np.c_[shared, rng.normal(size=(n, 2))] @ rng.normal(size=(4, 5))
    return X_a, X_b, y


FITTABLE = [CCA(dim=2), TwoViewESZSL(semantics=SEMANTICS), LinearContrastive(dim=3, **TINY),
            QSMA(dim=3, hidden=8, n_layers=1, **TINY), SSPC(dim=3, hidden=8, queue_size=32, **TINY),
            UniCode(dim=3, n_codes=8, specific_dim=2, hidden=8, **TINY),
            CFSA(class_semantics=SEMANTICS, dim=3, hidden=8, **TINY)]


@pytest.mark.parametrize("est", FITTABLE, ids=lambda e: type(e).__name__)
def test_fit_contract(est):
    import torch

    torch.set_num_threads(1)
    X_a, X_b, y = _data()
    model = clone(est)
    for method in ("transform_a", "transform_b"):
        with pytest.raises(NotFittedError, match="not fitted"):
            getattr(model, method)(X_a if method == "transform_a" else X_b)
    before = model.get_params(deep=False)
    assert model.fit(X_a, X_b, y) is model
    after = model.get_params(deep=False)
    for k, v in before.items():
        assert after[k] is v, k  # fit never rewrites a parameter
    za, zb = model.transform_a(X_a), model.transform_b(X_b)
    again = clone(est).fit(X_a, X_b, y)
    np.testing.assert_array_equal(again.transform_a(X_a), za)  # idempotent (seeded)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.transform_a(X_a), za)
    np.testing.assert_array_equal(back.transform_b(X_b), zb)
    with pytest.raises(ValueError, match="X"):
        model.transform_a(X_a[:, :-1])  # wrong number of view-a features


def test_shared_private_contract():
    X_a, _, _ = _data()
    rng = np.random.default_rng(2)
    U, V = X_a, X_a + 0.1 * rng.normal(size=X_a.shape)
    est = SharedPrivateDecomposition(shared_rank=2, private_ranks=(1, 1))
    with pytest.raises(NotFittedError, match="call fit\\(U, V\\)"):
        est.transform(U, V)
    before = est.get_params(deep=False)
    assert est.fit(U, V) is est
    assert all(est.get_params(deep=False)[k] is v for k, v in before.items())
    parts = est.transform(U, V)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.transform(U, V).shared_u, parts.shared_u)
    np.testing.assert_array_equal(clone(est).fit_transform(U, V).shared_u, parts.shared_u)
    assert parts.shared_u.dtype == np.float64 and est.transform(U.astype(np.float32)).shared_u.dtype == np.float32


def test_one_not_fitted_error():
    X_a, X_b, _ = _data()
    assert issubclass(NotFittedError, SklearnNotFittedError)
    assert issubclass(NotFittedError, RuntimeError)  # what geoalign raised before
    from geoalign.models import base

    assert base.NotFittedError is NotFittedError
    cases = [(CCA(), "transform_a", (X_a,)), (QSMA(), "transform_b", (X_b,)),
             (SharedPrivateDecomposition(), "transform", (X_a, X_a)),
             (ClassDisjointSearchCV(CCA(), {"dim": [2]}), "transform_a", (X_a,)),
             (TwoViewESZSL(semantics=SEMANTICS), "transform_a", (X_a,))]
    for est, method, args in cases:
        with pytest.raises(SklearnNotFittedError, match=f"this {type(est).__name__} is not fitted"):
            getattr(est, method)(*args)
    with pytest.raises(SklearnNotFittedError):
        SharedPrivateDecomposition().projector_shared_  # noqa: B018
