# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Comparing alignment methods; zero-shot evaluation
#
# **Zero-shot cross-modal retrieval (ZS-CMR).** Train on *seen* classes, then rank the other
# view for queries of *unseen* classes; an item is relevant when its class matches. We report
# R@K and mAP@all (average precision over the whole ranked list, averaged over both directions).
#
# **ZSL / GZSL** (Xian et al. protocol). Samples are scored against class semantic vectors
# (attributes). ZSL: per-class mean top-1 accuracy among unseen classes only. GZSL: all classes
# are candidates; $U$ and $S$ are the accuracies on unseen- and seen-class samples and
# $H=2US/(U+S)$. Calibrated stacking subtracts $\gamma$ from seen-class scores; $\gamma$ is
# chosen on a **validation** split, never on the test split (`evaluate_gzsl` refuses that).
#
# Methods: CCA and ESZSL (closed form), LinearContrastive (linear contrastive, CLIP-style), the published
# SSPC, UniCode/TOC and CFSA, and QSMA (all torch), with chance-level references.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from geoalign import (CCA, ESZSL, LinearContrastive, PlantedAlignment, RandomProjection, calibrated_stacking,
                      evaluate_gzsl, load_digits_two_view, load_xlsa17, per_class_accuracy, retrieval_scores,
                      select_gamma, zsl_accuracy)
from geoalign.data import XLSA17_NAMES

QUICK = os.environ.get("GEOALIGN_QUICK") == "1"
EPOCHS = 15 if QUICK else 60
PUB_EPOCHS = 4 if QUICK else 30       # the published models cost more per epoch
QUIET = {"progress": False}
# Small models: one torch thread is faster than two on a shared machine (the second thread
# spin-waits; measured: the live trainings below took minutes of CPU with two threads, seconds with one).
torch.set_num_threads(1)
rng = np.random.default_rng(0)
print("QUICK =", QUICK)

# %% [markdown]
# ## 1. Zero-shot cross-view retrieval on digits (left half ↔ right half)
#
# Seen digits 0–6 train every method; queries and database are the unseen digits 7–9.

# %%
tv = load_digits_two_view(scale="unit")
Xa, Xb, y = tv.X_a_train, tv.X_b_train, tv.y_train
Ta, Tb, ty = tv.X_a_test, tv.X_b_test, tv.y_test
embeddings = {
    "random projections": (RandomProjection(17, 32, 16, seed=1, lift="canonical")(np.rint(Ta * 16).astype(int)),
                           RandomProjection(17, 32, 16, seed=2, lift="canonical")(np.rint(Tb * 16).astype(int))),
}
cca = CCA(dim=16, reg=1e-2).fit(Xa, Xb)
embeddings["CCA"] = (cca.transform_a(Ta), cca.transform_b(Tb))
clip = LinearContrastive(dim=16, max_epochs=EPOCHS, batch_size=256, lr=3e-3, random_state=0,
                         trainer_options=QUIET).fit(Xa, Xb)
embeddings["LinearContrastive"] = (clip.transform_a(Ta), clip.transform_b(Tb))
clip_lab = LinearContrastive(dim=16, max_epochs=EPOCHS, batch_size=256, lr=3e-3, use_labels=True,
                             random_state=0, trainer_options=QUIET).fit(Xa, Xb, y)
embeddings["LinearContrastive + labels"] = (clip_lab.transform_a(Ta), clip_lab.transform_b(Tb))

results = {name: retrieval_scores(za, zb, ty, ty) for name, (za, zb) in embeddings.items()}
chance_map = float(np.mean([np.mean(ty == c) for c in ty]))          # expected AP of a random ranking
for name, r in results.items():
    print(f"{name:30s} mAP@all {r.map_all:.3f}  R@1 a->b {r.a_to_b.recall[1]:.3f}  b->a {r.b_to_a.recall[1]:.3f}")
print(f"{'chance':30s} mAP@all ~{chance_map:.3f}")

fig, ax = plt.subplots(figsize=(7, 3.5))
names = list(results)
ax.bar(names, [results[n].map_all for n in names], color=[f"C{i}" for i in range(len(names))])
ax.axhline(chance_map, color="k", ls=":", label="chance")
ax.set(ylabel="mAP@all (mean of both directions)", title="zero-shot retrieval, unseen digits 7-9")
ax.tick_params(axis="x", rotation=20)
ax.legend()
fig.tight_layout()
plt.show()

# The instance-level methods (CCA, contrastive on pairs) rank same-class halves above chance and
# above the untrained random projections on classes they never saw. Label-aware training pulls
# the *seen* classes together and transfers less well to unseen ones: supervision on seen classes
# is not free in zero-shot retrieval.
for name in ("CCA", "LinearContrastive"):
    assert results[name].map_all > chance_map + 0.05, name
    assert results[name].map_all > results["random projections"].map_all, name
assert all(r.map_all > chance_map for r in results.values())

# %% [markdown]
# ### The published methods and QSMA on the same task
#
# SSPC (InfoNCE + multi-assignment Sinkhorn–Knopp consistency), UniCode (shared VQ codebook,
# CLUB disentangling; TOC keeps the most distinguishable codebook dimensions), CFSA (coupled
# conditional WGAN-GP generators from class semantics — here rendered numerals, no digits data)
# and QSMA (notebook 05), all trained on the seen digits only. Small settings: a comparison at
# this size shows that each method runs and transfers, not which one wins at scale.
# CFSA can only be as good as its semantics: rendered numerals do not predict the digit halves'
# features linearly for 7-9, so its transfer on this task stays near chance (see the
# `geoalign.models.cfsa` docstring); it is shown, not asserted.

# %%
from geoalign.models.cfsa import CFSA, digit_glyph_semantics
from geoalign.models.codebook import UniCode, toc_select
from geoalign.models.qsma import QSMA
from geoalign.models.sspc import SSPC

common = dict(max_epochs=PUB_EPOCHS, batch_size=256, random_state=0, trainer_options=QUIET)
published = {
    "SSPC": SSPC(dim=16, hidden=64, n_anchors=16, queue_size=512, lr=3e-3, **common),
    "UniCode + TOC": UniCode(dim=32, n_codes=64, specific_dim=8, hidden=64, toc_k=16, lr=3e-3, **common),
    "CFSA": CFSA(class_semantics=digit_glyph_semantics(), dim=16, hidden=64, lr=1e-3, **common),
    "QSMA": QSMA(dim=16, hidden=64, lr=3e-3, **common),
}
for name, model in published.items():
    model.fit(Xa, Xb, y)
    results[name] = retrieval_scores(model.transform_a(Ta), model.transform_b(Tb), ty, ty)
    print(f"{name:30s} mAP@all {results[name].map_all:.3f}  R@1 a->b {results[name].a_to_b.recall[1]:.3f}")
toc = published["UniCode + TOC"].toc_
print("TOC kept codebook dimensions:", np.asarray(toc.indices)[:8], "...")
# TOC keeps the dimensions with the best J_d = -0.7 sim_d + 0.3 var_d.
assert np.all(np.asarray(toc.scores)[np.asarray(toc.indices)].min() >= np.delete(np.asarray(toc.scores), np.asarray(toc.indices)).max())
assert all(results[name].map_all > chance_map for name in ("SSPC", "UniCode + TOC", "QSMA"))

fig, ax = plt.subplots(figsize=(9, 3.5))
names = list(results)
ax.bar(names, [results[n].map_all for n in names], color=[f"C{i}" for i in range(len(names))])
ax.axhline(chance_map, color="k", ls=":", label="chance")
ax.set(ylabel="mAP@all", title="zero-shot retrieval on unseen digits 7-9: all methods")
ax.tick_params(axis="x", rotation=25)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The paper's comparison table: every method selected the same way, over seeds, in three regimes
#
# Fixed settings favour whoever chose them. `geoalign.comparison.select_and_compare` gives every
# method the same budget: `ClassDisjointSearchCV` (folds = groups of *seen* classes, score =
# zero-shot mAP@all on the held-out classes) picks one of 4 candidates around the library
# defaults; the choice is trained with 5 seeds and scored on the unseen classes — class-level
# mAP@all next to instance-level R@1/R@10 (is the true partner retrieved?), mean and std over
# seeds — on digits left↔right, digits top↔bottom and planted data. The library defaults are
# trained with the same seeds, and CCA tuned on the *test* classes is given as an upper bound
# (an oracle, not a selection). Two extra regimes are marked as such: **semi-paired 5 %** (5 % of
# the seen pairs; QSMA also gets the rest as unpaired samples of each view) and **transductive**
# (QSMA also gets the unseen inputs, unlabeled and unpaired; the other methods cannot use them).
#
# That is far more training than this notebook's budget of a few minutes (the cell below prints
# the training time the stored cells record), so the full setting does not retrain it: every
# selection and trained model is stored in `figures/data/comparison/` (one JSON file per data set
# and method, with the library version and settings), and `select_and_compare(store=...)` only
# computes cells that are missing — with the stored cells complete, it only reads them. The
# same cells make the paper's table (`geoalign figures --only comparison`; `--force` retrains).
# The quick setting computes a small version in memory (closed-form methods, planted data).

# %%
from geoalign.comparison import STORED_CELLS, select_and_compare

if QUICK:
    selected = select_and_compare(("planted",), ["CCA", "ESZSL"], seeds=(0, 1), progress=False)
else:
    import json

    stored = [json.loads(p.read_text()) for p in sorted(STORED_CELLS.glob("*/*.json"))]
    train_s = sum(s["selection"]["search_s"] + sum(c.get("fit_s", 0.0) for c in s["cells"].values())
                  for s in stored)
    print(f"{len(stored)} stored (data set, method) files in {'/'.join(STORED_CELLS.parts[-3:])}, "
          f"recording {train_s / 60:.0f} min of searches and training (wall time when they ran)")
    selected = select_and_compare(store=STORED_CELLS)   # reads the stored cells (a bar per data set x method)
cols = ["dataset", "regime", "method", "map_all", "map_all_std", "R@1", "R@1_std", "R@10", "R@10_std"]
print(selected[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
inductive = selected[selected.regime == "inductive"]
assert (inductive.map_all > 0.34).all()            # above chance (1/3) on 3 unseen classes
assert (selected["R@1"] <= selected["R@10"]).all()

# %% [markdown]
# Class-level mAP@all (left) and instance-level R@10 (right) of every method, inductive regime,
# with the spread over seeds; the dotted line is CCA tuned on the test classes (oracle).

# %%
datasets = list(dict.fromkeys(inductive.dataset))
methods = list(dict.fromkeys(inductive.method))
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
width = 0.8 / len(methods)
for k, method in enumerate(methods):
    rows = inductive.set_index("dataset").loc[datasets]
    rows = rows[rows.method == method]
    x = np.arange(len(datasets)) + (k - (len(methods) - 1) / 2) * width
    axes[0].bar(x, rows.map_all, width, yerr=rows.map_all_std, label=method, color=f"C{k}")
    axes[1].bar(x, rows["R@10"], width, yerr=rows["R@10_std"], color=f"C{k}")
oracle = inductive[inductive.method == "CCA"].set_index("dataset").loc[datasets, "oracle_map_all"]
for i, v in enumerate(oracle):
    axes[0].hlines(v, i - 0.45, i + 0.45, colors="k", linestyles=":", label="CCA oracle" if i == 0 else None)
axes[0].axhline(1 / 3, color="0.5", lw=0.8)
axes[0].set(ylabel="mAP@all (unseen classes)", ylim=(0.3, 1.0))
axes[1].set(ylabel="R@10 of the true partner")
for ax in axes:
    ax.set_xticks(np.arange(len(datasets)), datasets)
axes[0].legend(fontsize=7, ncol=2)
fig.suptitle("every method selected by the same class-disjoint search (mean ± std over seeds)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **The search's choice against the library defaults.** The validation score of the choice is
# on held-out *seen* classes; the test columns are on the unseen classes, same seeds.

# %%
choice = inductive[["dataset", "method", "params", "val_map_all", "default_val_map_all", "map_all",
                    "map_all_defaults"]].rename(columns={"val_map_all": "val (choice)",
                                                         "default_val_map_all": "val (defaults)",
                                                         "map_all": "test (choice)",
                                                         "map_all_defaults": "test (defaults)"})
print(choice.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
# where the defaults are one of the candidates, the choice validates at least as well
assert (choice["val (defaults)"].isna() | (choice["val (choice)"] >= choice["val (defaults)"] - 1e-12)).all()
semi = selected[selected.regime == "semi-paired 5%"].set_index(["dataset", "method"]).map_all
trans = selected[selected.regime == "transductive"].set_index(["dataset", "method"])
print("\nsemi-paired 5% (mAP@all):")
print(semi.unstack().round(3).to_string())
print("\ntransductive, methods that use the unseen inputs (mAP@all):")
print(trans[trans.uses_unpaired].map_all.round(3).to_string())

# %% [markdown]
# ## 2. ZSL and GZSL with class attributes (planted model)
#
# Each class $c$ has a shared centre $c_k$; its *attribute vector* is a noisy linear image
# $a_c=Mc_k+\nu$ in $\mathbb{R}^{16}$. Classes are split into **seen** (training), **validation
# unseen** (for choosing $\gamma$ only) and **test unseen**. Every method sees only seen-class
# training samples.

# %%
n_classes = 24
gen = PlantedAlignment(dim=48, shared_rank=8, private_ranks=(4, 4), snr=2.0, n_classes=n_classes,
                       between_class_fraction=0.8, random_state=3)
data = gen.sample(3000 if QUICK else 12000)
M = rng.standard_normal((16, 8))
attributes = data.class_centers @ M.T + 0.1 * rng.standard_normal((n_classes, 16))
classes = rng.permutation(n_classes)
test_unseen, val_unseen, seen = np.sort(classes[:6]), np.sort(classes[6:10]), np.sort(classes[10:])
seen_mask = np.isin(np.arange(n_classes), seen)

is_seen = np.isin(data.labels, seen)
held_out = is_seen & (rng.random(data.n_samples) < 0.2)              # seen samples kept out of training
first_half = rng.random(data.n_samples) < 0.5
train = is_seen & ~held_out
val = (held_out & first_half) | np.isin(data.labels, val_unseen)
test = (held_out & ~first_half) | np.isin(data.labels, test_unseen)
assert not (train & (val | test)).any() and not (val & test).any()

X, labels = data.U, data.labels
row = {c: i for i, c in enumerate(seen)}                              # ESZSL: y indexes rows of X_b
models = {
    "ESZSL": ESZSL(alpha=1.0, gamma=1.0).fit(X[train], attributes[seen], np.array([row[c] for c in labels[train]])),
    "CCA": CCA(dim=8, reg=1e-2).fit(X[train], attributes[labels[train]]),
}
zsl, gzsl = {}, {}
for name, model in models.items():
    scores = model.class_scores(X, attributes)                     # [n, all classes]
    zsl[name] = zsl_accuracy(scores[test & ~is_seen], labels[test & ~is_seen], classes=test_unseen)
    gzsl[name] = evaluate_gzsl(scores[val], labels[val], scores[test], labels[test], seen_mask)
    g = gzsl[name]
    print(f"{name:6s} ZSL acc {zsl[name]:.3f} | GZSL U {g.unseen:.3f} S {g.seen:.3f} H {g.harmonic:.3f} "
          f"(gamma {g.gamma:.3f} chosen on validation, val H {g.val_harmonic:.3f})")
    raw = scores[test].argmax(1)
    u0 = per_class_accuracy(labels[test][~is_seen[test]], raw[~is_seen[test]])
    print(f"       without calibration: U {u0:.3f}")
    assert zsl[name] > 1.5 / len(test_unseen)                       # well above chance among unseen classes
    if g.gamma > 0:   # lowering seen-class scores can only turn predictions toward unseen classes
        assert g.unseen >= u0

# The guard: gamma may not be chosen on the test split.
try:
    evaluate_gzsl(scores[test], labels[test], scores[test], labels[test], seen_mask)
    raise AssertionError("evaluate_gzsl must refuse the test split as validation data")
except ValueError as err:
    print("refused:", err)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].bar(list(zsl), list(zsl.values()))
axes[0].axhline(1 / len(test_unseen), color="k", ls=":", label="chance")
axes[0].set(title="ZSL accuracy (unseen classes)", ylim=(0, 1))
axes[0].legend()
width = 0.25
for k, key in enumerate(["unseen", "seen", "harmonic"]):
    axes[1].bar(np.arange(len(gzsl)) + (k - 1) * width, [getattr(g, key) for g in gzsl.values()], width, label=key)
axes[1].set_xticks(np.arange(len(gzsl)), list(gzsl))
axes[1].set(title="GZSL with calibrated stacking", ylim=(0, 1))
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The xlsa17 benchmarks (CUB, AWA2, SUN, APY, AWA1) from your own folder
#
# Set `GEOALIGN_XLSA17_ROOT` to a folder holding `<NAME>/res101.mat` and
# `<NAME>/att_splits.mat` (the "proposed splits" of Xian et al.). Nothing is downloaded.
# $\gamma$ is chosen in *validation* mode (`train_loc` vs `val_loc`) and applied in *test* mode;
# scalers are fitted on the training split only. Reported with ResNet-101 features and the
# data set's attribute vectors.

# %%
def gzsl_at(scores, labels, seen_mask, gamma):
    """U, S, H at a given gamma (gamma chosen beforehand on validation data)."""
    pred = np.asarray(calibrated_stacking(scores, seen_mask, gamma)).argmax(1)
    unseen_rows = ~seen_mask[labels]
    u = per_class_accuracy(labels[unseen_rows], pred[unseen_rows])
    s = per_class_accuracy(labels[~unseen_rows], pred[~unseen_rows])
    return u, s, (2 * u * s / (u + s) if u + s > 0 else 0.0)


root = os.environ.get("GEOALIGN_XLSA17_ROOT")
if not root or not Path(root).is_dir():
    print("GEOALIGN_XLSA17_ROOT is not set (or not a folder): skipping the xlsa17 benchmarks.")
else:
    found = [name for name in XLSA17_NAMES if (Path(root) / name / "res101.mat").exists()]
    print("data sets found:", found or "none")
    for name in found:
        val_split = load_xlsa17(root, name, mode="validation")
        test_split = load_xlsa17(root, name, mode="test")

        def fit_eszsl(split):
            seen_rows = {c: i for i, c in enumerate(split.seen_classes)}
            return ESZSL(alpha=1.0, gamma=1.0).fit(split.X_train, split.class_attributes[split.seen_classes],
                                                   np.array([seen_rows[c] for c in split.y_train]))

        m_val, m_test = fit_eszsl(val_split), fit_eszsl(test_split)
        Xv = np.concatenate([val_split.X_test_seen, val_split.X_test_unseen])
        yv = np.concatenate([val_split.y_test_seen, val_split.y_test_unseen])
        sel = select_gamma(m_val.class_scores(Xv, val_split.class_attributes), yv, val_split.seen_mask)
        Xt = np.concatenate([test_split.X_test_seen, test_split.X_test_unseen])
        yt = np.concatenate([test_split.y_test_seen, test_split.y_test_unseen])
        st = m_test.class_scores(Xt, test_split.class_attributes)
        zsl_acc = zsl_accuracy(m_test.class_scores(test_split.X_test_unseen, test_split.class_attributes),
                               test_split.y_test_unseen, classes=test_split.unseen_classes)
        u, s, h = gzsl_at(st, yt, test_split.seen_mask, sel.gamma)
        print(f"{name}: ESZSL (ResNet-101 features, attributes) ZSL {zsl_acc:.3f} | GZSL U {u:.3f} S {s:.3f} "
              f"H {h:.3f} with gamma={sel.gamma:.3f} from validation")
