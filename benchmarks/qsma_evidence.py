"""Evidence for QSMA (issue 5): digits zero-shot cross-view retrieval and planted recovery.

(1) Digits, left half <-> right half, classes 0-6 seen, 7-9 unseen; metric: cross-view
    mAP@all on the unseen items (mean of both directions).  Every QSMA choice is made on
    *class-disjoint validation folds of the seen classes*: for each fold (validation
    classes {0,1}, {2,3}, {5,6}) train on the other seen classes and measure mAP@all on
    the held-out ones; a configuration's score is the mean over the 3 folds and 2 seeds.
    The grid (GRID) is every encoder x every augmentation of the training pairs:
    encoder MLP or ConvEncoder (``encoder="conv"``, ``input_shape=(8, 4)``); augmentation
    (geoalign.data.digits.augmented_digits_halves, applied to whole images before they
    are cut into halves, so pairs stay pairs) none / sub-pixel shifts / small affine /
    strong affine / affine + 2 or 4 row splices per image (a splice joins the top rows of
    one digit to the bottom rows of another: shapes of no training class); epochs scaled
    so that every row trains for about the same number of steps.  The best row is
    retrained on all seen classes with 8 seeds and evaluated once per seed on 7-9.  CCA
    gets the same chance: (dim, reg) tuned on the same folds ("val-tuned") or on the test
    classes ("oracle", an upper bound), without augmentation, with the chosen
    augmentation (8 seeds; its validation folds use the seed-0 augmentation), and with every
    augmentation of the grid (3 seeds, ``cca_by_augmentation``).  For a like-for-like upper
    bound QSMA gets the oracle's chance too (``qsma_oracle``): every grid row at widths
    8/16/32 scored on 7-9 (3 seeds), the best re-scored with all 8 seeds.  Every loss term
    is ablated in the chosen configuration (seed 0).
(2) Planted shared/private data (geoalign.data.planted.PlantedAlignment, d=24, shared
    rank 6, private ranks 3+3): trained embeddings of a held-out draw are joined with
    geoalign.fiber at the ε chosen on the training draw (precision/recall against the
    true pairs), and the shared subspace is read off each view's embedding as the
    directions it responds to on the data (see _sensitive_subspace).

Run ``python benchmarks/qsma_evidence.py`` (``--quick`` for a tiny grid; ``--only PART``
to rerun one part of an existing ``--output`` file).

Measured here (1 torch thread, 1430 s + 51 s for ``cca_by_augmentation``; ``qsma_oracle``
1055 s with ``--jobs 2``):

* validation mAP (3 folds x 2 seeds): MLP 0.632 (none), 0.708 (shifts), 0.701 (affine),
  0.720 (strong), 0.699 (splices x2), 0.703 (x4); conv 0.604, 0.722, 0.722, 0.712,
  **0.725** (affine + 2 splices, chosen), 0.722.  The top five rows lie within 0.005,
  i.e. within the noise of this protocol.
* unseen 7-9 mAP@all, QSMA (chosen): 0.584 +- 0.009 over 8 seeds (seed 0: 0.590;
  0.590 0.591 0.594 0.590 0.579 0.584 0.564 0.580).
* CCA without augmentation: val-tuned 0.419, oracle 0.518 -> QSMA +0.066.
  CCA with the chosen augmentation (8 seeds): val-tuned 0.492, oracle 0.547 -> QSMA +0.037.
  Strongest CCA over every augmentation of the grid: oracle 0.550 (affine + 2 splices,
  3 seeds) -> QSMA +0.034.  So QSMA beats the strongest *oracle* CCA on the raw pairs by
  more than the 0.05 of issue 5, but not CCA given the same augmented pairs (the row
  splices help CCA too); it beats every validation-tuned CCA by >= 0.087.
* like for like, on equal (augmented) data: validation-tuned QSMA 0.584 vs the strongest
  validation-tuned CCA 0.497 (+0.087); oracle QSMA 0.594 +- 0.012 (conv, affine + 4
  splices, width 32; 8 seeds) vs the strongest oracle CCA 0.550 (+0.044).  Tuned on 7-9,
  CCA gains most (0.497 -> 0.550, by keeping 4 dimensions for 3 classes with less
  regularisation), QSMA little (0.584 -> 0.594): the oracle mainly rescues CCA's width
  choice.  On the test classes every row with splices beats every row without (by 0.004
  at the closest, 0.026 within the conv encoder), which the validation folds do not show
  (all augmented rows within 0.02 of each other).
* ablation (seed 0, full 0.590): no contrastive 0.355, no sliced alignment 0.598,
  Sinkhorn divergence instead 0.578, no barycentric 0.601, no KL 0.592.
* planted: precision 0.951, recall 0.970; principal angles to the shared subspace
  0.1 0.2 0.2 3.4 6.4 9.5 deg (view a), 0.2 0.2 0.3 4.2 8.6 12.3 deg (view b), with a
  50x gap after the 6th sensitivity eigenvalue.  The earlier read-out (top eigenvectors
  of the raw Jacobian Gram matrix) gave a largest angle of 45.6 deg: 34% of that matrix
  lies in directions the view's data hardly visit (noise-only, and the other view's
  private subspace), where the network's slope is unconstrained by training; it was a
  measurement artefact, not a failure to recover the subspace.
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

from geoalign.evaluation import retrieval_scores  # noqa: E402
from geoalign.models.linear import CCA  # noqa: E402
from geoalign.models.qsma import QSMA  # noqa: E402

BASE = dict(batch_size=128, use_labels=False, trainer_options={"progress": False})
SEEN = tuple(range(7))
UNSEEN = (7, 8, 9)
VAL_FOLDS = ((0, 1), (2, 3), (5, 6))
FOLDS = [(tuple(c for c in SEEN if c not in f), f) for f in VAL_FOLDS]  # (train, validation) classes
VAL_SEEDS = (0, 1)          # every validation score is the mean over these seeds and the folds
TEST_SEEDS = tuple(range(8))
MLP = dict(hidden=256, n_layers=2, dim=32, dropout=0.2)
CONV = dict(MLP, encoder_a="conv", encoder_b="conv", input_shape_a=(8, 4), input_shape_b=(8, 4))
SHIFT = dict(n_copies=4, max_shift=1.0, max_rotation=0.0)
AFFINE = dict(n_copies=4, max_shift=1.0, max_rotation=10.0)
STRONG = dict(n_copies=8, max_shift=1.0, max_rotation=15.0, max_scale=0.1)
SPLICE2 = dict(n_copies=2, max_shift=1.0, max_rotation=10.0, n_splices=2)
SPLICE4 = dict(n_copies=2, max_shift=1.0, max_rotation=10.0, n_splices=4)
# the configurations explored on the validation folds: every encoder x every augmentation, with
# epochs scaled so that every row trains for about the same number of steps (augmentation
# multiplies the data: x1, x5, x5, x9, x9, x15)
AUGMENTATIONS = [(None, 30), (SHIFT, 20), (AFFINE, 20), (STRONG, 12), (SPLICE2, 12), (SPLICE4, 8)]
GRID = [dict(enc, max_epochs=epochs, **({"augment": aug} if aug else {}))
        for enc in (MLP, CONV) for aug, epochs in AUGMENTATIONS]
QUICK_GRID = [dict(MLP, max_epochs=4), dict(MLP, max_epochs=2, augment=SPLICE2)]
CCA_GRID = [(dim, reg) for dim in (2, 4, 8, 16, 32) for reg in (1e-3, 1e-2, 1e-1, 1.0)]
ORACLE_DIMS = (8, 16, 32)   # the oracle QSMA also tunes its width on 7-9, like CCA's dim
ORACLE_SEEDS = (0, 1, 2)
ABLATIONS = ["use_contrastive", "use_alignment", "use_barycentric", "use_kl"]


def _split(train_classes, eval_classes, augment, seed):
    """Training halves of ``train_classes`` (augmented with ``seed``) and evaluation halves."""
    from geoalign.data.digits import augmented_digits_halves, digits_images, image_halves

    images, labels = digits_images()
    tr, ev = np.isin(labels, train_classes), np.isin(labels, eval_classes)
    if augment:
        Xa, Xb, _ = augmented_digits_halves(images[tr], labels[tr], **augment, random_state=seed)
    else:
        Xa, Xb = image_halves(images[tr])
    Ea, Eb = image_halves(images[ev])
    return Xa, Xb, Ea, Eb, labels[ev]


def _qsma_map(cfg, train_classes, eval_classes, seed, extra=None) -> float:
    cfg = dict(cfg)
    Xa, Xb, Ea, Eb, y = _split(train_classes, eval_classes, cfg.pop("augment", None), seed)
    m = QSMA(**BASE, **cfg, **(extra or {}), random_state=seed).fit(Xa, Xb)
    return retrieval_scores(m.transform_a(Ea), m.transform_b(Eb), y, y).map_all


def _cca_maps(train_classes, eval_classes, augment=None, seed=0) -> list[float]:
    """Unseen mAP@all of CCA for every ``(dim, reg)`` of :data:`CCA_GRID`."""
    Xa, Xb, Ea, Eb, y = _split(train_classes, eval_classes, augment, seed)
    out = []
    for dim, reg in CCA_GRID:
        m = CCA(dim=dim, reg=reg).fit(Xa, Xb)
        out.append(retrieval_scores(m.transform_a(Ea), m.transform_b(Eb), y, y).map_all)
    return out


def _cca_evidence(folds, augment, seeds) -> dict:
    """CCA tuned on the validation folds, and oracle-tuned on the unseen classes, per seed."""
    val = np.mean([_cca_maps(tr, va, augment, 0) for tr, va in folds], axis=0)
    test = np.array([_cca_maps(SEEN, UNSEEN, augment, s) for s in (seeds if augment else (0,))])
    v, o = int(np.argmax(val)), int(np.argmax(test.mean(0)))
    return {"val_tuned": {"dim": CCA_GRID[v][0], "reg": CCA_GRID[v][1], "val_map": float(val[v]),
                          "test_map_per_seed": test[:, v].tolist(), "test_map": float(test[:, v].mean())},
            "oracle": {"dim": CCA_GRID[o][0], "reg": CCA_GRID[o][1],
                       "test_map_per_seed": test[:, o].tolist(), "test_map": float(test[:, o].mean())}}


def digits_evidence(grid, val_seeds=VAL_SEEDS, test_seeds=TEST_SEEDS, ablate: bool = True) -> dict:
    folds = FOLDS
    out: dict = {"protocol": {"seen": SEEN, "unseen": UNSEEN, "validation_folds": VAL_FOLDS,
                              "validation_seeds": val_seeds, "test_seeds": test_seeds},
                 "grid": []}
    for cfg in tqdm(grid, desc="QSMA validation grid"):
        vals = [[_qsma_map(cfg, tr, va, s) for tr, va in folds] for s in val_seeds]
        out["grid"].append({**cfg, "val_map_folds": np.mean(vals, 0).tolist(),
                            "val_map": float(np.mean(vals))})
    best = max(out["grid"], key=lambda r: r["val_map"])
    chosen = {k: v for k, v in best.items() if k not in ("val_map", "val_map_folds")}
    out["chosen"] = chosen
    per_seed = [_qsma_map(chosen, SEEN, UNSEEN, s) for s in tqdm(test_seeds, desc="QSMA test seeds")]
    out["qsma"] = {"test_map_per_seed": per_seed, "test_map": float(np.mean(per_seed)),
                   "test_map_std": float(np.std(per_seed))}
    out["cca"] = _cca_evidence(folds, None, test_seeds)
    # CCA given the same augmented training data as the chosen QSMA (affine if it has none)
    out["cca_augmented"] = _cca_evidence(folds, chosen.get("augment") or AFFINE, test_seeds)
    if ablate:
        out["ablation_seed0"] = {}
        for switch in tqdm(ABLATIONS + ["alignment=sinkhorn"], desc="ablation"):
            extra = {"alignment": "sinkhorn"} if switch.startswith("alignment") else {switch: False}
            key = switch if switch.startswith("alignment") else switch + "=False"
            out["ablation_seed0"][key] = _qsma_map(chosen, SEEN, UNSEEN, test_seeds[0], extra)
    return out


def cca_by_augmentation(seeds=(0, 1, 2)) -> dict:
    """The strongest CCA we could give: validation-tuned and oracle CCA for every augmentation of the grid."""
    folds = FOLDS
    out = {}
    for aug, _ in tqdm(AUGMENTATIONS, desc="CCA per augmentation"):
        out[json.dumps(aug, sort_keys=True)] = _cca_evidence(folds, aug, seeds)
    return out


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _qsma_map_job(job) -> float:
    return _qsma_map(*job)


def qsma_oracle(grid=GRID, dims=ORACLE_DIMS, seeds=ORACLE_SEEDS, confirm_seeds=TEST_SEEDS,
                jobs: int = 1, threads: int = 1) -> dict:
    """QSMA tuned on the test classes, the counterpart of the oracle CCA (an upper bound).

    Every grid row at every ``dims`` is trained on the seen classes with ``seeds`` and
    scored on 7-9; the row with the best mean is then scored with ``confirm_seeds``
    (the reported number), which damps the winner's curse of picking from many noisy
    means.  The oracle CCA picks (dim, reg) the same way, on the mean over its seeds.
    """
    from concurrent.futures import ProcessPoolExecutor

    configs = [dict(cfg, dim=d) for cfg in grid for d in dims]
    runs = [(c, SEEN, UNSEEN, s) for c in configs for s in seeds]
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(threads,)) as ex:
        scores = list(tqdm(ex.map(_qsma_map_job, runs), total=len(runs), desc="QSMA oracle grid"))
        per_config = np.reshape(scores, (len(configs), len(seeds)))
        best = int(np.argmax(per_config.mean(1)))
        known = dict(zip(seeds, per_config[best]))
        todo = [s for s in confirm_seeds if s not in known]
        known.update(zip(todo, ex.map(_qsma_map_job, [(configs[best], SEEN, UNSEEN, s) for s in todo])))
    confirm = [float(known[s]) for s in confirm_seeds]
    return {"grid": [{**c, "test_map_per_seed": r.tolist(), "test_map": float(r.mean())}
                     for c, r in zip(configs, per_config)],
            "chosen": configs[best], "selection_map": float(per_config[best].mean()),
            "test_map_per_seed": confirm, "test_map": float(np.mean(confirm)),
            "test_map_std": float(np.std(confirm))}


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
    # shared subspace, per view: the input directions that drive the embedding (see
    # _sensitive_subspace); angles to the planted shared basis, plus the raw read-out
    a = _sensitive_subspace(model.module_.embed_a, train.U, r := train.basis_shared.shape[1])
    b = _sensitive_subspace(model.module_.embed_b, train.V, r)
    angles_a = np.degrees(np.asarray(principal_angles(a["subspace"], train.basis_shared)))
    angles_b = np.degrees(np.asarray(principal_angles(b["subspace"], train.basis_shared_v)))
    raw = np.degrees(np.asarray(principal_angles(a["raw_subspace"], train.basis_shared)))
    G = a["raw_gram"]
    frac = {name: float(np.trace(B.T @ G @ B) / np.trace(G))
            for name, B in (("shared", train.basis_shared), ("private_a", train.basis_a),
                            ("private_b", train.basis_b))}
    # directions view a's data hardly visit: noise-only (variance 4e-4) and view b's private ones
    frac["hardly_visited"] = 1.0 - frac["shared"] - frac["private_a"]
    return {"eps": float(eps), "precision": float(pr.precision), "recall": float(pr.recall),
            "n_pairs": int(len(fp.pairs)),
            "principal_angles_deg": np.sort(angles_a).tolist(),
            "principal_angles_deg_view_b": np.sort(angles_b).tolist(),
            "max_principal_angle_deg": float(max(angles_a.max(), angles_b.max())),
            "sensitivity_eigenvalues": a["eigenvalues"][:r + 2].tolist(),
            "raw_jacobian_principal_angles_deg": np.sort(raw).tolist(),
            "raw_jacobian_energy_fraction": frac,
            "shared_energy_fraction": frac["shared"],
            "private_energy_fraction": frac["private_a"]}


def _sensitive_subspace(embed, X: np.ndarray, rank: int) -> dict:
    r"""The ``rank`` input directions a trained embedding responds to, on the data it sees.

    With :math:`J(x) = \partial z/\partial x` and :math:`\Sigma` the covariance of
    ``X``, the top eigenvectors :math:`v` of :math:`H = \Sigma^{1/2}\,E[J^\top J]\,
    \Sigma^{1/2}` give the input directions :math:`\Sigma^{1/2} v` along which the
    embedding changes most *per typical variation of the data*.  The raw
    :math:`E[J^\top J]` (the first read-out used here) also counts directions
    the data never visit (the planted noise directions, with variance 4e-4, and
    the other view's private subspace): a network's slope there is
    unconstrained by training, not evidence of what it uses, and it put the
    6th raw direction 45 deg off the shared subspace although the embedding
    carried no measurable private signal.
    """
    import torch

    param = next(embed.__self__.parameters())
    x = torch.as_tensor(X, dtype=param.dtype, device=param.device).requires_grad_(True)
    z = embed(x)
    G = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=param.device)
    for k in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, k].sum(), x, retain_graph=True)
        G += (g.T @ g).double() / x.shape[0]
    G = G.cpu().numpy()
    w, U = np.linalg.eigh(np.cov(X.T))
    root = (U * np.sqrt(np.clip(w, 0, None))) @ U.T
    evals, evecs = np.linalg.eigh(root @ G @ root)
    sub = np.linalg.qr(root @ evecs[:, ::-1][:, :rank])[0]
    return {"subspace": sub, "eigenvalues": evals[::-1], "raw_gram": G,
            "raw_subspace": np.linalg.eigh(G)[1][:, ::-1][:, :rank]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny grid, 2 seeds, no ablation")
    ap.add_argument("--only", choices=("digits", "cca_by_augmentation", "qsma_oracle", "planted"),
                    default=None,
                    help="run one part; with --output, the other part of an existing file is kept")
    ap.add_argument("--output", default=None, help="write the results as JSON here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes for the oracle QSMA grid (each with --threads)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res: dict = {}
    if args.output and args.only and Path(args.output).exists():
        res = json.loads(Path(args.output).read_text())
    if args.only in (None, "digits"):
        res["digits"] = (digits_evidence(QUICK_GRID, (0,), (0, 1), ablate=False) if args.quick
                         else digits_evidence(GRID))
    if args.only in (None, "cca_by_augmentation") and not args.quick:
        res["cca_by_augmentation"] = cca_by_augmentation()
    if args.only in (None, "qsma_oracle") and not args.quick:
        res["qsma_oracle"] = qsma_oracle(jobs=args.jobs, threads=args.threads)
    if args.only in (None, "planted"):
        res["planted"] = planted_evidence()
    print(json.dumps(res, indent=2, default=float))
    if "digits" in res:
        d = res["digits"]
        q = d["qsma"]
        best_cca = max(d["cca"]["oracle"]["test_map"], d["cca_augmented"]["oracle"]["test_map"])
        print(f"digits mAP@all (unseen 7-9, {len(q['test_map_per_seed'])} seeds): QSMA "
              f"{q['test_map']:.3f} +- {q['test_map_std']:.3f} (seed 0: {q['test_map_per_seed'][0]:.3f}; "
              f"chosen on validation folds: {d['chosen']}), CCA val-tuned "
              f"{d['cca']['val_tuned']['test_map']:.3f}, CCA oracle {d['cca']['oracle']['test_map']:.3f}, "
              f"CCA+augmentation val-tuned {d['cca_augmented']['val_tuned']['test_map']:.3f}, "
              f"oracle {d['cca_augmented']['oracle']['test_map']:.3f}; "
              f"margin over the best oracle CCA {q['test_map'] - best_cca:+.3f}")
    if "cca_by_augmentation" in res:
        cca = res["cca_by_augmentation"].values()
        strongest = max(r["oracle"]["test_map"] for r in cca)
        best_val = max(r["val_tuned"]["test_map"] for r in cca)
        if "digits" in res:
            q_map = res["digits"]["qsma"]["test_map"]
            print(f"margin over the strongest CCA (oracle-tuned, any augmentation of the grid): "
                  f"{q_map - strongest:+.3f}; validation-tuned QSMA vs the strongest "
                  f"validation-tuned CCA (any augmentation): {q_map - best_val:+.3f}")
        if "qsma_oracle" in res:
            o = res["qsma_oracle"]
            print(f"oracle QSMA (tuned on 7-9 like the oracle CCA, {o['chosen']}): "
                  f"{o['test_map']:.3f} +- {o['test_map_std']:.3f}; margin over the strongest "
                  f"oracle CCA {o['test_map'] - strongest:+.3f}")
    for aug, r in res.get("cca_by_augmentation", {}).items():
        print(f"CCA with augmentation {aug}: val-tuned {r['val_tuned']['test_map']:.3f}, "
              f"oracle {r['oracle']['test_map']:.3f}")
    if "planted" in res:
        p = res["planted"]
        print(f"planted: precision {p['precision']:.3f}, recall {p['recall']:.3f} at eps={p['eps']:.3f}; "
              f"principal angles to the shared subspace (deg) {np.round(p['principal_angles_deg'], 1).tolist()}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.output:
        from geoalign._io import atomic_write_json

        atomic_write_json(args.output, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
