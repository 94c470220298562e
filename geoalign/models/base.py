r"""The estimator API that every trainable alignment model shares.

:class:`AlignmentEstimator` is a scikit-learn style wrapper around a torch
module trained by :class:`geoalign.train.Trainer`.  A subclass only says how
to build its module::

    class MyModel(AlignmentEstimator):
        def __init__(self, dim=64, ..., max_epochs=50, batch_size=256, lr=1e-3,
                     weight_decay=0.0, optimizer="adam", trainer_options=None,
                     dtype="float32", device=None, random_state=None):
            ...store every argument under its own name...

        def _build_module(self, n_features_a, n_features_b, X_a, X_b, y):
            return MyModule(...)   # has training_loss, embed_a, embed_b

The base class validates the input before any training (matching pair counts,
labels one per pair, no NaN/Inf, 2-D features), seeds the module's
initialisation with ``random_state``, trains it, and provides
``transform_a``/``transform_b`` (NumPy in -> NumPy out, tensor in -> tensor out
on the input's device), ``save``/``load`` and ``get_params``/``set_params``.
Learned attributes end in ``_``: ``module_``, ``history_``,
``n_features_a_``, ``n_features_b_``, ``seed_``.

Models are registered by name in :data:`MODEL_REGISTRY` (``name ->
"module:Class"``, imported only when used) so configs and the CLI can build
them; use :func:`register_model` to add one.
"""
from __future__ import annotations

import inspect
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._adapter import adapt
from .._backend import check_same_device, is_torch, like, resolve_device, to_numpy
from .._estimator import NotFittedError, TwoViewEstimator
from .._io import atomic_write_bytes
from .._registry import Registry
from .._validation import check_array, check_same_length

__all__ = ["AlignmentEstimator", "MODEL_REGISTRY", "register_model", "get_model_class",
           "NotFittedError", "read_model_file"]

SAVE_FORMAT = "geoalign.model/1"

#: model name -> "module:Class" (imported lazily) or the class itself
MODEL_REGISTRY = Registry("model", {
    "linear_contrastive": "geoalign.models.contrastive:LinearContrastive",
    "qsma": "geoalign.models.qsma:QSMA",
    "sspc": "geoalign.models.sspc:SSPC",
    "cfsa": "geoalign.models.cfsa:CFSA",
    "unicode": "geoalign.models.codebook:UniCode",
})


def register_model(name: str, target: Any = None):
    """Register ``target`` (a class or ``"module:Class"``) under ``name`` for configs and the CLI.

    Without ``target``, a class decorator.  Registering a name again replaces it.
    """
    return MODEL_REGISTRY.register(name, target, replace=True)


def get_model_class(name: str) -> type:
    """The estimator class registered under ``name`` (``ValueError`` listing the names if unknown)."""
    return MODEL_REGISTRY[name]


def _class_path(klass: type) -> str:
    return f"{klass.__module__}:{klass.__qualname__}"


def _registered_class(state: dict, path: Path) -> type:
    """The registered estimator class a model file names -- never an arbitrary import path.

    Files name their class by registry name (``"model"``); older files carry a
    ``"module:Class"`` path (``"class"``), accepted only when it is exactly the
    path of a registered class.
    """
    name = state.get("model")
    if isinstance(name, str):
        if name not in MODEL_REGISTRY:
            raise ValueError(f"{path} names model {name!r}, which is not registered "
                             f"(registered: {', '.join(sorted(MODEL_REGISTRY))}); "
                             "register_model it before loading")
        return get_model_class(name)
    target = state.get("class")
    if not isinstance(target, str):
        raise ValueError(f"{path} does not name its model class; it is not a saved geoalign model")
    for reg_name in MODEL_REGISTRY:
        reg_target = MODEL_REGISTRY.target(reg_name)
        reg_path = reg_target if isinstance(reg_target, str) else _class_path(reg_target)
        if reg_path == target:
            return get_model_class(reg_name)
    raise ValueError(f"{path} names class {target!r}, which is not a registered geoalign model "
                     f"(registered: {', '.join(sorted(MODEL_REGISTRY))}); refusing to import it")


def _check_saved_params(klass: type, params: Any, path: Path) -> None:
    """Saved constructor arguments must be a dict of the class's own parameter names."""
    if not isinstance(params, dict):
        raise ValueError(f"{path}: 'params' must be a dict of constructor arguments, "
                         f"got {type(params).__name__}")
    valid = set(klass._param_names())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(f"{path}: parameter(s) {unknown} are not arguments of {klass.__name__} "
                         f"(valid: {sorted(valid)}); the file is corrupt or from another version")
    try:
        inspect.signature(klass.__init__).bind(None, **params)
    except TypeError as exc:
        raise ValueError(f"{path}: saved parameters do not fit {klass.__name__}: {exc}") from None


def read_model_file(path: str | os.PathLike) -> dict:
    """Read a model file written by :meth:`AlignmentEstimator.save` (tensors and plain data only).

    Raises ``FileNotFoundError`` or ``ValueError`` naming the file for a
    missing, truncated, corrupt or foreign file (never torch's advice to pass
    ``weights_only=False``, which would allow code execution).
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"model file {path} is a folder; give the model.pt file inside it")
    if path.suffix.lower() == ".npz":
        raise ValueError(f"{path} is an .npz file, not a torch model file (.pt); CCA and ESZSL "
                         "models are saved as .npz: load them with "
                         "geoalign.models.linear.load_linear_model")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path} holds objects other than tensors and plain data, which geoalign "
                         "never writes; refusing to load it (it may be corrupt or not a geoalign "
                         f"model; detail: {str(exc).splitlines()[0][:200]})") from None
    except (EOFError, OSError, RuntimeError, zipfile.BadZipFile, ValueError, KeyError,
            IndexError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is truncated or corrupt and cannot be read as a geoalign model "
                         f"({type(exc).__name__}); re-save or retrain it") from None
    if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
        raise ValueError(f"{path} is not a saved geoalign model (expected format {SAVE_FORMAT!r})")
    missing = [k for k in ("params", "n_features_a", "n_features_b", "seed", "module_config",
                           "history", "state_dict") if k not in state]
    if missing:
        raise ValueError(f"{path} is not a complete geoalign model file: missing {missing}")
    if not isinstance(state["module_config"], dict) or not isinstance(state["history"], dict):
        raise ValueError(f"{path} is corrupt: 'module_config' and 'history' must be dicts")
    return state


class AlignmentEstimator(TwoViewEstimator):
    """Base class: validation, device, conversion, training and persistence of a torch model.

    Subclasses define ``__init__`` (every argument stored under its own name;
    they must include ``max_epochs``, ``batch_size``, ``lr``, ``weight_decay``,
    ``optimizer``, ``trainer_options``, ``dtype``, ``device`` and
    ``random_state``) and ``_build_module``.  ``trainer_options`` is a dict of
    further :class:`~geoalign.train.Trainer` arguments (scheduler, log_dir,
    checkpoint_dir, early_stopping_patience, val_fraction, progress, ...).
    """

    _fitted_attributes = ("module_",)

    # -- hooks for subclasses -------------------------------------------------------
    def _build_module(self, n_features_a: int, n_features_b: int, X_a, X_b, y):
        """Return the untrained ``nn.Module`` (with ``training_loss``, ``embed_a``, ``embed_b``).

        ``X_a``, ``X_b`` (float tensors on the CPU) and ``y`` (int64 tensor or
        None) are the training data, for data-dependent buffers such as
        standardisation statistics.
        """
        raise TypeError(f"{type(self).__name__} must implement _build_module")

    def _module_config(self) -> dict:
        """Extra state besides parameters needed to rebuild the module in :meth:`load`."""
        return {}

    # -- helpers --------------------------------------------------------------------
    def _torch_dtype(self):
        import torch

        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return getattr(torch, self.dtype)

    def _validate_pairs(self, X_a, X_b, y, prefix: str = ""):
        # devices first: the value checks below cannot run on mixed (or meta) devices
        check_same_device(**{f"{prefix}X_a": X_a, f"{prefix}X_b": X_b, f"{prefix}y": y})
        X_a = check_array(X_a, f"{prefix}X_a", ndim=2, allow_empty=False)
        X_b = check_array(X_b, f"{prefix}X_b", ndim=2, allow_empty=False)
        check_same_length(**{f"{prefix}X_a": X_a, f"{prefix}X_b": X_b})
        if y is not None:
            y = check_array(y, f"{prefix}y", ndim=1)
            if tuple(y.shape)[0] != tuple(X_a.shape)[0]:
                raise ValueError(f"{prefix}y must have one label per pair: got {tuple(y.shape)[0]} "
                                 f"labels for {tuple(X_a.shape)[0]} pairs")
            yn = to_numpy(y)
            if not (np.issubdtype(yn.dtype, np.integer) or
                    (np.issubdtype(yn.dtype, np.floating) and np.all(yn == np.round(yn)))):
                raise ValueError(f"{prefix}y must hold integer class labels, got dtype {yn.dtype}")
        return X_a, X_b, y

    # -- API --------------------------------------------------------------------------
    def fit(self, X_a, X_b, y=None, val_data=None) -> "AlignmentEstimator":
        """Train on paired views.

        Parameters
        ----------
        X_a : array-like, shape=[n, d_a]
        X_b : array-like, shape=[n, d_b]
            Row ``i`` of ``X_a`` is paired with row ``i`` of ``X_b``.
        y : array-like of int, shape=[n], optional
            Class labels (used by models that use them; validated always).
        val_data : tuple (X_a, X_b[, y]), optional
            Validation pairs for early stopping / ``best.pt``.

        Returns
        -------
        self
        """
        import torch

        from ..train import Trainer

        X_a, X_b, y = self._validate_pairs(X_a, X_b, y)
        if val_data is not None:
            parts = tuple(val_data)
            if len(parts) not in (2, 3):
                raise ValueError(f"val_data must be (X_a, X_b) or (X_a, X_b, y), got {len(parts)} items")
            parts = parts + (None,) * (3 - len(parts))
            va, vb, vy = self._validate_pairs(*parts[:3], prefix="val_")
            if tuple(va.shape)[1] != tuple(X_a.shape)[1] or tuple(vb.shape)[1] != tuple(X_b.shape)[1]:
                raise ValueError(f"val_data has {tuple(va.shape)[1]} and {tuple(vb.shape)[1]} features, "
                                 f"training data {tuple(X_a.shape)[1]} and {tuple(X_b.shape)[1]}")
            val_data = (va, vb) if vy is None else (va, vb, vy)
        device = resolve_device(self.device, X_a, X_b)
        dtype = self._torch_dtype()
        options = dict(self.trainer_options or {})
        own = {"max_epochs": self.max_epochs, "batch_size": self.batch_size, "lr": self.lr,
               "weight_decay": self.weight_decay, "optimizer": self.optimizer}
        twice = sorted(set(options) & (set(own) | {"device", "seed", "identity"}))
        if twice:
            raise ValueError(f"trainer_options must not repeat estimator parameters {twice}; "
                             "set them on the estimator")
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
        # everything that defines the result besides the trainer options: resuming a checkpoint
        # of other loss weights / temperatures (same tensor shapes) must be refused
        identity = {"class": _class_path(type(self)),
                    "params": {k: v for k, v in self.get_params(deep=False).items()
                               if k not in ("trainer_options", "device")}}
        trainer = Trainer(**own, device=device, seed=int(seed), identity=identity, **options)
        # tensors stay where they are (the Trainer gathers batches on their device); NumPy
        # arrays become CPU tensors, streamed to the device through pinned memory
        ta, tb = (X.detach().to(dtype) if is_torch(X) else torch.as_tensor(to_numpy(X), dtype=dtype)
                  for X in (X_a, X_b))
        ty = None if y is None else (y.detach() if is_torch(y) else torch.as_tensor(to_numpy(y)))
        ty = None if ty is None else ty.to(torch.int64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            # data-dependent buffers are computed from CPU copies (the documented contract)
            module = self._build_module(ta.shape[1], tb.shape[1], ta.cpu(), tb.cpu(),
                                        None if ty is None else ty.cpu())
        module = module.to(dtype=dtype)
        data = (ta, tb) if ty is None else (ta, tb, ty)
        self.history_ = trainer.fit(module, data, val_data=val_data)
        self.module_ = module
        self.n_features_a_ = int(ta.shape[1])
        self.n_features_b_ = int(tb.shape[1])
        self.seed_ = int(seed)
        return self

    def _transform(self, X, which: str, n_features: int):
        import torch

        self._check_fitted()
        name = f"X_{which}"
        X = check_array(X, name, ndim=2)
        if tuple(X.shape)[1] != n_features:
            raise ValueError(f"{name} must have shape (n, {n_features}), got {tuple(X.shape)}")
        param = next(self.module_.parameters())
        # the module's device and dtype; results come back as the caller's kind (on its device)
        (xt,) = adapt({name: X}, device=param.device, dtype=param.dtype, validate=False).tensors
        self.module_.eval()
        with torch.no_grad():
            z = getattr(self.module_, f"embed_{which}")(xt)
        return like(z, X)

    def transform_a(self, X):
        """Embed view-a samples, ``X : array-like, shape=[n, d_a]`` -> ``shape=[n, dim]``."""
        self._check_fitted()
        return self._transform(X, "a", self.n_features_a_)

    def transform_b(self, X):
        """Embed view-b samples, ``X : array-like, shape=[n, d_b]`` -> ``shape=[n, dim]``."""
        self._check_fitted()
        return self._transform(X, "b", self.n_features_b_)

    # -- persistence ----------------------------------------------------------------
    @classmethod
    def _registry_name(cls) -> str:
        for name in MODEL_REGISTRY:
            target = MODEL_REGISTRY.target(name)
            if target is cls or target == _class_path(cls):
                return name
        raise ValueError(f"{cls.__name__} is not registered; call "
                         f"register_model(name, {cls.__name__}) before saving, so that load can "
                         "find it by name (model files never import arbitrary paths)")

    def save(self, path: str | os.PathLike) -> Path:
        """Write parameters, learned attributes and weights to ``path`` atomically (torch format)."""
        import torch

        self._check_fitted()
        params = self.get_params(deep=False)
        if params.get("device") is not None:
            params["device"] = str(params["device"])  # torch.device -> plain string for the file
        params["trainer_options"] = {k: (str(v) if isinstance(v, Path) else v)
                                     for k, v in (params.get("trainer_options") or {}).items()
                                     if k != "callbacks"}
        state = {"format": SAVE_FORMAT, "model": self._registry_name(),
                 "class": _class_path(type(self)),
                 "params": params,
                 "n_features_a": self.n_features_a_, "n_features_b": self.n_features_b_,
                 "seed": self.seed_, "module_config": self._module_config(),
                 "history": {"records": self.history_.records, "monitor": self.history_.monitor,
                             "best_epoch": self.history_.best_epoch,
                             "best_score": self.history_.best_score,
                             "stopped_early": self.history_.stopped_early},
                 "state_dict": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}}
        buf = io.BytesIO()
        torch.save(state, buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, device: Any = None) -> "AlignmentEstimator":
        """Load an estimator written by :meth:`save` (onto ``device``, default its saved device).

        ``AlignmentEstimator.load`` returns whatever subclass was saved; a
        subclass's ``load`` refuses files of another class.
        """
        import torch

        from ..train import TrainingHistory

        path = Path(path)
        state = read_model_file(path)
        klass = _registered_class(state, path)
        if cls is not AlignmentEstimator and not issubclass(klass, cls):
            raise ValueError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        _check_saved_params(klass, state["params"], path)
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        est = klass(**params)
        X_a = torch.zeros(1, state["n_features_a"], dtype=est._torch_dtype())
        X_b = torch.zeros(1, state["n_features_b"], dtype=est._torch_dtype())
        module = est._build_module(state["n_features_a"], state["n_features_b"], X_a, X_b, None,
                                   **state["module_config"])
        module.load_state_dict(state["state_dict"])
        est.module_ = module.to(device=resolve_device(params.get("device")), dtype=est._torch_dtype())
        est.module_.eval()
        est.n_features_a_ = state["n_features_a"]
        est.n_features_b_ = state["n_features_b"]
        est.seed_ = state["seed"]
        est.history_ = TrainingHistory._from_saved(state["history"], f"model file {path}")
        return est
