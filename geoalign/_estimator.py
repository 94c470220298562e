r"""The one estimator base of geoalign: scikit-learn's ``BaseEstimator`` for two views.

Every estimator (the torch models of :mod:`geoalign.models`, the linear
baselines, :class:`~geoalign.subspace.SharedPrivateDecomposition`, the
comparison wrappers and :class:`~geoalign.model_selection.ClassDisjointSearchCV`)
derives from :class:`TwoViewEstimator`, so that

* ``__init__`` stores every argument unmodified under its own name (validation
  happens in ``fit``), and :func:`sklearn.base.clone`,
  ``get_params(deep=True)`` and ``set_params`` (nested ``estimator__name``
  included) are scikit-learn's own;
* using a fitted attribute before ``fit`` raises one error,
  :class:`NotFittedError`.

:class:`~sklearn.base.TransformerMixin` is mixed in where an estimator has a
``transform``: :class:`~geoalign.subspace.SharedPrivateDecomposition`
(``transform(U, V)`` and its own ``fit_transform(U, V)``, returning a
:class:`~geoalign.subspace.SubspaceComponents`; ``set_output`` does not apply,
as it defines no ``get_feature_names_out``).  The alignment models map each
view with ``transform_a``/``transform_b`` and have no single ``transform``, so
they are not transformers.
"""
from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = ["TwoViewEstimator", "NotFittedError"]


class NotFittedError(_SklearnNotFittedError, RuntimeError):
    """Raised when a fitted attribute is needed before ``fit``.

    A :class:`sklearn.exceptions.NotFittedError` (so ``except NotFittedError``
    with scikit-learn's class catches it; so does ``except ValueError`` or
    ``AttributeError``).  It is also a ``RuntimeError``, which is what geoalign
    raised before it adopted scikit-learn's class, so older ``except
    RuntimeError`` handlers keep working.
    """


class TwoViewEstimator(BaseEstimator):
    """scikit-learn estimator base for paired-view estimators.

    Subclasses list in ``_fitted_attributes`` the learned attributes whose
    presence means "fitted" (all must be set by ``fit``; a ``None`` value counts
    as missing) and call :meth:`_check_fitted` before using them.
    """

    #: learned attributes that exist (and are not None) once ``fit`` has run
    _fitted_attributes: tuple[str, ...] = ()
    #: how the not-fitted message tells the user to fit
    _fit_hint: str = "fit(X_a, X_b)"

    @classmethod
    def _param_names(cls) -> list[str]:
        """Constructor argument names (scikit-learn's ``_get_param_names``)."""
        return list(cls._get_param_names())

    def set_params(self, **params) -> "TwoViewEstimator":
        """Set constructor arguments (``name__sub`` for a nested estimator's own).

        An unknown name raises ``ValueError`` naming it and the valid ones.
        """
        valid = set(self._param_names())
        for key in params:
            if key.partition("__")[0] not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; "
                                 f"valid: {sorted(valid)}")
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return all(getattr(self, k, None) is not None for k in self._fitted_attributes)

    def _check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless ``fit`` has run."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; "
                                 f"call {self._fit_hint} first")
