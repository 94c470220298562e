"""Evidence for QSMA (issue 5): digits zero-shot cross-view retrieval and planted recovery.

(1) Digits, left half <-> right half, classes 0-6 seen, 7-9 unseen.  QSMA's
    hyper-parameters are chosen on *class-disjoint validation folds of the seen
    classes*: for each fold (validation classes {0,1}, {2,3}, {5,6}) train on
    the other seen classes and measure mAP@all on the held-out ones; the
    configuration with the best mean is retrained on all seen classes and
    evaluated once on 7-9.  The test classes are never used to choose anything.
    Options in the grid: shift augmentation (each training image also shifted
    by one pixel before it is cut into halves, so the pair stays a pair) and
    an ensemble of models with different seeds (embeddings concatenated, i.e.
    the mean of their cosine similarities).  CCA is tuned on the same folds,
    and also "oracle"-tuned on the test classes (an upper bound for CCA), with
    and without the same augmentation.  Every loss term is ablated (switched
    off) in the chosen configuration.
(2) Planted shared/private data (geoalign.data.planted.PlantedAlignment):
    trained embeddings of a held-out draw are joined with geoalign.fiber at the
    ε chosen on the training draw; precision and recall against the true pairs,
    and principal angles between the shared subspace and the dominant subspace
    of a linear read-out of the view-a embedding.

Run ``python benchmarks/qsma_evidence.py`` (``--quick`` for a smaller grid).

Measured here (1 torch thread, seed 0, 323 s): validation mAP (mean of the 3
folds) 0.626 plain -> 0.697 with vertical+horizontal shift augmentation (chosen);
unseen 7-9 mAP@all: QSMA 0.541, CCA validation-tuned 0.419, CCA oracle 0.518
(0.513 with the same augmentation): +0.022 over the oracle CCA, short of the
+0.05 of issue 5.  Ablation on 7-9: no contrastive 0.359, no sliced alignment
0.518, Sinkhorn divergence instead 0.519, no barycentric 0.540, no KL 0.541.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm.auto import tqdm  # noqa: E402

from geoalign.metrics import retrieval_metrics  # noqa: E402
from geoalign.models.linear import CCA  # noqa: E402
from geoalign.models.qsma import QSMA  # noqa: E402

BASE = dict(batch_size=128, use_labels=False, trainer_options={"progress": False})
VAL_FOLDS = ((0, 1), (2, 3), (5, 6))
SEEN = tuple(range(7))
VERTICAL = ((0, 0), (-1, 0), (1, 0))
MLP = dict(hidden=256, n_layers=2, dim=32, dropout=0.2)
VERTICAL_HORIZONTAL = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
GRID = [  # the configurations explored on the validation folds (see the report in the docstring)
    dict(MLP, max_epochs=30),
    dict(MLP, max_epochs=60),
    dict(MLP, max_epochs=30, augment=VERTICAL),
    dict(MLP, max_epochs=60, augment=VERTICAL),
    dict(MLP, max_epochs=20, augment=VERTICAL_HORIZONTAL),
    dict(hidden=512, n_layers=2, dim=64, dropout=0.2, max_epochs=30, augment=VERTICAL),
]
QUICK_GRID = [dict(MLP, max_epochs=10), dict(MLP, max_epochs=10, augment=VERTICAL)]
ABLATIONS = ["use_contrastive", "use_alignment", "use_barycentric", "use_kl"]


def shifted_halves(images: np.ndarray, shifts=((0, 0),)):
    """Left/right halves (float) of the images shifted by each ``(dy, dx)`` (zero fill), stacked."""
    from geoalign.data.digits import images_to_half_polynomials

    lefts, rights = [], []
    for dy, dx in shifts:
        out = np.zeros_like(images)
        H, W = images.shape[1:]
        out[:, max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
            images[:, max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
        left, right = images_to_half_polynomials(out)
        lefts.append(left.astype(np.float64))
        rights.append(right.astype(np.float64))
    return np.concatenate(lefts), np.concatenate(rights)


def _embed(cfg: dict, train_classes, eval_classes, seed: int, extra: dict | None = None):
    """Train ``cfg`` on ``train_classes``; embeddings and labels of ``eval_classes`` (both views)."""
    from geoalign.data.digits import digits_images

    images, labels = digits_images()
    cfg = dict(cfg)
    shifts = cfg.pop("augment", None) or ((0, 0),)
    n_models = cfg.pop("ensemble", 1)
    tr = np.isin(labels, train_classes)
    ev = np.isin(labels, eval_classes)
    Xa, Xb = shifted_halves(images[tr], shifts)
    Ea, Eb = shifted_halves(images[ev])
    Za, Zb = [], []
    for k in range(n_models):
        m = QSMA(**BASE, **cfg, **(extra or {}), random_state=seed + k).fit(Xa, Xb)
        Za.append(m.transform_a(Ea))
        Zb.append(m.transform_b(Eb))
    return np.concatenate(Za, 1), np.concatenate(Zb, 1), labels[ev]


def _qsma_map(cfg, train_classes, eval_classes, seed, extra=None) -> float:
    Za, Zb, y = _embed(cfg, train_classes, eval_classes, seed, extra)
    return retrieval_metrics(Za, Zb, y, y).map_all


def _cca_map(dim, reg, train_classes, eval_classes, shifts=((0, 0),)) -> float:
    from geoalign.data.digits import digits_images

    images, labels = digits_images()
    tr, ev = np.isin(labels, train_classes), np.isin(labels, eval_classes)
    Xa, Xb = shifted_halves(images[tr], shifts)
    Ea, Eb = shifted_halves(images[ev])
    m = CCA(dim=dim, reg=reg).fit(Xa, Xb)
    return retrieval_metrics(m.transform_a(Ea), m.transform_b(Eb), labels[ev], labels[ev]).map_all


def digits_evidence(grid, seed: int = 0, ablate: bool = True) -> dict:
    unseen = (7, 8, 9)
    folds = [(tuple(c for c in SEEN if c not in f), f) for f in VAL_FOLDS]
    out: dict = {"protocol": {"seen": SEEN, "unseen": unseen, "validation_folds": VAL_FOLDS},
                 "grid": []}
    for cfg in tqdm(grid, desc="QSMA validation grid"):
        vals = [_qsma_map(cfg, tr, va, seed) for tr, va in folds]
        out["grid"].append({**cfg, "val_map_folds": vals, "val_map": float(np.mean(vals))})
    best = max(out["grid"], key=lambda r: r["val_map"])
    chosen = {k: v for k, v in best.items() if k not in ("val_map", "val_map_folds")}
    out["chosen"] = chosen
    out["qsma_test_map"] = _qsma_map(chosen, SEEN, unseen, seed)
    # CCA: tuned on the same validation folds, and oracle-tuned on the unseen test classes
    for name, shifts in (("", ((0, 0),)), ("_augmented", VERTICAL)):
        rows = []
        for dim in (2, 4, 8, 16, 32):
            for reg in (1e-3, 1e-2, 1e-1, 1.0):
                v = np.mean([_cca_map(dim, reg, tr, va, shifts) for tr, va in folds])
                rows.append((dim, reg, float(v), _cca_map(dim, reg, SEEN, unseen, shifts)))
        v_best = max(rows, key=lambda r: r[2])
        o_best = max(rows, key=lambda r: r[3])
        out[f"cca{name}_val_tuned"] = {"dim": v_best[0], "reg": v_best[1], "test_map": v_best[3]}
        out[f"cca{name}_oracle"] = {"dim": o_best[0], "reg": o_best[1], "test_map": o_best[3]}
    if ablate:
        out["ablation"] = {}
        for switch in tqdm(ABLATIONS + ["alignment=sinkhorn"], desc="ablation"):
            extra = {"alignment": "sinkhorn"} if switch.startswith("alignment") else {switch: False}
            key = switch if switch.startswith("alignment") else switch + "=False"
            out["ablation"][key] = _qsma_map(chosen, SEEN, unseen, seed, extra)
    return out


def planted_evidence(n_train: int = 400, n_test: int = 100, max_epochs: int = 60,
                     seed: int = 0) -> dict:
    """Fiber-product recovery of the true pairs and of the shared subspace on planted data."""
    from geoalign.data.planted import PlantedAlignment
    from geoalign.fiber import fiber_product
    from geoalign.subspace import principal_angles

    gen = PlantedAlignment(dim=24, shared_rank=6, private_ranks=(3, 3), snr=1000.0, n_classes=8,
                           between_class_fraction=0.2, random_state=seed)
    train, test = gen.sample(n_train), gen.sample(n_test, random_state=seed + 1)
    model = QSMA(dim=8, hidden=64, n_layers=1, max_epochs=max_epochs, batch_size=100,
                 use_labels=False, random_state=seed, trainer_options={"progress": False})
    model.fit(train.U, train.V)
    # ε: midpoint between the largest true-pair and the smallest false-pair distance quantiles
    # on the TRAINING draw (never on the test draw)
    Za, Zb = model.transform_a(train.U), model.transform_b(train.V)
    D = np.linalg.norm(Za[:, None] - Zb[None], axis=-1)
    true_d = np.diag(D)
    false_d = D[~np.eye(n_train, dtype=bool)]
    eps = 0.5 * (np.quantile(true_d, 0.99) + np.quantile(false_d, 0.001))
    Ta, Tb = model.transform_a(test.U), model.transform_b(test.V)
    fp = fiber_product(Ta, Tb, eps)
    pr = fp.precision_recall(np.stack([np.arange(n_test)] * 2, axis=1))
    # shared subspace: the input directions the view-a embedding responds to, i.e. the top
    # eigenvectors of the average Jacobian Gram matrix E[J^T J] (J = dz_a/du, [dim, 24])
    import torch

    mod = model.module_
    u = torch.as_tensor(train.U, dtype=next(mod.parameters()).dtype).requires_grad_(True)
    z = mod.embed_a(u)
    G = torch.zeros(u.shape[1], u.shape[1], dtype=u.dtype)
    for k in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, k].sum(), u, retain_graph=True)
        G += g.T @ g / u.shape[0]
    evals, evecs = np.linalg.eigh(G.detach().numpy().astype(np.float64))
    r = train.basis_shared.shape[1]
    top = evecs[:, ::-1][:, :r]
    angles = np.degrees(np.asarray(principal_angles(top, train.basis_shared)))
    # energy of the Jacobian in the private directions of view a (0 = ignores them)
    Gn = G.detach().numpy().astype(np.float64)
    private_energy = float(np.trace(train.basis_a.T @ Gn @ train.basis_a) / np.trace(Gn))
    shared_energy = float(np.trace(train.basis_shared.T @ Gn @ train.basis_shared) / np.trace(Gn))
    return {"eps": float(eps), "precision": float(pr.precision), "recall": float(pr.recall),
            "n_pairs": int(len(fp.pairs)), "max_principal_angle_deg": float(angles.max()),
            "private_energy_fraction": private_energy,
            "shared_energy_fraction": shared_energy}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grid, no ablation")
    ap.add_argument("--output", default=None, help="write the results as JSON here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = {"digits": digits_evidence(QUICK_GRID if args.quick else GRID, ablate=not args.quick),
           "planted": planted_evidence()}
    d = res["digits"]
    print(json.dumps(res, indent=2, default=float))
    best_cca = max(d["cca_oracle"]["test_map"], d["cca_augmented_oracle"]["test_map"])
    print(f"digits mAP@all (unseen 7-9): QSMA {d['qsma_test_map']:.3f} (chosen on validation folds: "
          f"{d['chosen']}), CCA val-tuned {d['cca_val_tuned']['test_map']:.3f}, "
          f"CCA oracle {d['cca_oracle']['test_map']:.3f}, "
          f"CCA+augmentation oracle {d['cca_augmented_oracle']['test_map']:.3f}; "
          f"margin over the best oracle CCA {d['qsma_test_map'] - best_cca:+.3f}")
    p = res["planted"]
    print(f"planted: precision {p['precision']:.3f}, recall {p['recall']:.3f} at eps={p['eps']:.3f}; "
          f"max principal angle to the shared subspace {p['max_principal_angle_deg']:.1f} deg, "
          f"Jacobian energy shared {p['shared_energy_fraction']:.3f} / private {p['private_energy_fraction']:.4f}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.output:
        from geoalign._io import atomic_write_json

        atomic_write_json(args.output, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
