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
# # 01 · Rings $\mathbb{Z}_n[x]$ and approximate fiber products
#
# **Data as polynomials** (docs/design/mathematics.md, Data as polynomials). A uint8 image becomes
# $P(x)=\sum_i a_i x^i\in\mathbb{Z}_{256}[x]$ (pixels in row-major order, one polynomial per
# $p\times p$ patch if asked); a token sequence $t_0..t_m$ over a vocabulary $V$ becomes
# $Q(x)=\sum_i t_i x^i\in\mathbb{Z}_{|V|}[x]$. For composite $n$ (256 is composite)
# $\mathbb{Z}_n$ is a ring with zero divisors, not a field: there is no division in general.
#
# **Embeddings** $f:\mathbb{Z}_n[x]\to\mathbb{R}^d$: a lift of the coefficients to integers
# followed by a linear map (random projection, DFT features, or a learned alignment).
#
# **Approximate fiber product** (docs/design/mathematics.md, Approximate fiber products). For sets $\mathcal P,\mathcal Q$ and
# embeddings $f,g$ into the same $Z=\mathbb{R}^d$,
#
# $$F_\varepsilon=\{(P,Q):\|f(P)-g(Q)\|\le\varepsilon\},\qquad N(\varepsilon)=|F_\varepsilon|,
#   \qquad \rho(\varepsilon)=\frac{N(\varepsilon)}{|\mathcal P||\mathcal Q|}.$$
#
# It is monotone in $\varepsilon$ ($F_\varepsilon\subseteq F_{\varepsilon'}$ for
# $\varepsilon\le\varepsilon'$, all pairs once $\varepsilon$ exceeds the diameter) and
# robust: if $\sup\|f'-f\|\le\delta_f$ and $\sup\|g'-g\|\le\delta_g$ then
# $F_\varepsilon(f,g)\subseteq F_{\varepsilon+\delta_f+\delta_g}(f',g')$.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import sympy

from geoalign import (CCA, PolyRing, RandomProjection, decode_image, decode_tokens, dft_features,
                      encode_image, encode_tokens, load_digits_two_view)
from geoalign.data import DIGITS_MODULUS, digits_images
from geoalign.fiber import fiber_counts, fiber_product

QUICK = os.environ.get("GEOALIGN_QUICK") == "1"
N_SYMPY = 5 if QUICK else 50          # products cross-checked with SymPy
N_TEST = 200 if QUICK else None       # unseen-class pairs joined (None: all of them)
rng = np.random.default_rng(0)
print("QUICK =", QUICK)

# %% [markdown]
# ## 1. The ring $\mathbb{Z}_{256}[x]$
#
# Batched exact arithmetic on coefficient arrays (lowest degree first). $16\cdot16=256=0$:
# zero divisors exist, and asking for the inverse of a non-unit is an error, not a wrong answer.

# %%
R = PolyRing(256)
print(R, "is a field:", R.is_field)
assert not R.is_field
assert R.mul([16], [16]).tolist() == [0]                          # zero divisors
assert R.mul([1, 1], [255, 1]).tolist() == [255, 0, 1]            # (1 + x)(x - 1) = x^2 - 1
assert int(R.mul([3], [int(R.inverse(3))])[0]) == 1               # 3 is a unit of Z_256
try:
    R.inverse(2)
    raise AssertionError("2 has no inverse in Z_256")
except ValueError as err:
    print("inverse(2):", err)

# Batched products, checked coefficient by coefficient against SymPy's Poly over Z/256Z.
x = sympy.symbols("x")
P = R.random((N_SYMPY,), degree=63, seed=1)
Q = R.random((N_SYMPY,), degree=40, seed=2)
PQ = R.mul(P, Q)
for p, q, pq in zip(P, Q, PQ):
    ref = sympy.Poly(p[::-1].tolist(), x, modulus=256) * sympy.Poly(q[::-1].tolist(), x, modulus=256)
    coeffs = [int(c) % 256 for c in ref.all_coeffs()[::-1]]       # SymPy shows symmetric residues
    assert coeffs == pq[:len(coeffs)].tolist() and not pq[len(coeffs):].any()
print(f"{N_SYMPY} products of degree 63 x 40 agree with SymPy")

# Two exact kernels: over Z_256 (any n dividing 2^16) a compiled SIMD schoolbook in 16-bit
# wrap-around arithmetic where it was built, and the limb-split float64 FFT for every modulus.
from geoalign.rings import HAVE_COMPILED_KERNEL

methods = ["fft", "direct"] + (["simd"] if HAVE_COMPILED_KERNEL else [])
products = {m: R.mul(P, Q, method=m) for m in methods}
assert all((products[m] == PQ).all() for m in methods)
print("compiled kernel built:", HAVE_COMPILED_KERNEL, "| methods agree bit for bit:", methods)

# %% [markdown]
# ## 2. Images and captions as polynomials
#
# scikit-learn's digits are 8×8 images with values 0..16; scaled by 15 they are uint8
# images, i.e. polynomials over $\mathbb{Z}_{256}$ (64 coefficients, or four 16-coefficient
# polynomials with 4×4 patches). A caption "a handwritten digit seven" over a 14-word
# vocabulary is a polynomial over $\mathbb{Z}_{14}$. Both encodings are invertible.

# %%
images, labels = digits_images()
img = (images[7] * 15).astype(np.uint8)
P_img = encode_image(img)
P_patch = encode_image(img, patch_size=4)
assert np.array_equal(decode_image(P_img, img.shape), img)
assert np.array_equal(decode_image(P_patch, img.shape, patch_size=4), img)

vocab = ["<pad>", "a", "handwritten", "digit"] + ["zero", "one", "two", "three", "four",
                                                  "five", "six", "seven", "eight", "nine"]
captions = [[1, 2, 3, 4 + int(c)] for c in labels[:5]]
Q_cap = encode_tokens(captions, vocab_size=len(vocab))
print("caption polynomials over Z_%d:\n" % len(vocab), Q_cap)
assert [list(t) for t in decode_tokens(Q_cap)] == captions
print("P(x) of the image has", P_img.shape[-1], "coefficients; with 4x4 patches:", P_patch.shape)

fig, axes = plt.subplots(1, 3, figsize=(11, 3))
axes[0].imshow(img, cmap="gray_r")
axes[0].set_title(f"digit {labels[7]} (uint8)")
axes[1].stem(P_img, markerfmt=" ", basefmt=" ")
axes[1].set(title=r"coefficients $a_i$ of $P(x)\in\mathbb{Z}_{256}[x]$", xlabel="i")
for k in range(4):
    axes[2].plot(P_patch[k], label=f"patch {k}")
axes[2].set(title="one polynomial per 4x4 patch", xlabel="i")
axes[2].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Embeddings.** The random projection $f(P)=G\,\ell(P)/\sqrt d$ preserves squared distances in
# expectation (Johnson–Lindenstrauss) and is `lipschitz_`-Lipschitz in the lifted coefficients;
# the DFT features $\ell(P)(\omega^k)/\sqrt L$ are a block of a unitary map, hence 1-Lipschitz.

# %%
polys = (images[:300] * 15).reshape(300, 64)              # 300 images over Z_256
f_rp = RandomProjection(256, length=64, dim=32, seed=0, lift="canonical")
E = f_rp(polys)
lifted = polys.astype(float)
i, j = rng.integers(0, 300, (2, 2000))
keep = i != j
ratio = np.linalg.norm(E[i] - E[j], axis=1)[keep] / np.linalg.norm(lifted[i] - lifted[j], axis=1)[keep]
print("JL distance ratios: mean %.3f, 5%%-95%% range [%.3f, %.3f]; Lipschitz constant %.3f"
      % (ratio.mean(), *np.quantile(ratio, [0.05, 0.95]), f_rp.lipschitz_))
assert ratio.max() <= f_rp.lipschitz_ + 1e-9 and 0.8 < np.mean(ratio ** 2) < 1.2
F = dft_features(polys, 256, n_freq=8, lift="canonical")
ratio_dft = np.linalg.norm(F[i] - F[j], axis=1)[keep] / np.linalg.norm(lifted[i] - lifted[j], axis=1)[keep]
assert ratio_dft.max() <= 1 + 1e-12

# %% [markdown]
# ## 3. The fiber product of two views
#
# The two-view digits task: the left half of each image (a polynomial over $\mathbb{Z}_{17}$, 32
# coefficients) and its right half. Embeddings: $f$, $g$ = CCA maps (on the lifted coefficients)
# fitted on the *seen* digits 0–6, applied to held-out images of the seen digits and to the
# *unseen* digits 7–9. True pairs are the two halves of one image. A pair of independent random
# projections (no alignment) is the baseline: nothing makes its true pairs closer than other
# pairs, so its recall is no better than chance, $\rho(\varepsilon)$.

# %%
tv = load_digits_two_view(val_fraction=0.2)
left_tr, right_tr = tv.polynomials("train")
cca = CCA(dim=8, reg=1e-2).fit(left_tr.astype(float), right_tr.astype(float))
print("canonical correlations (training pairs):", np.round(cca.correlations_, 3))


def subsample(split, labels_split):
    a, b = tv.polynomials(split)
    keep = np.arange(a.shape[0]) if N_TEST is None else np.sort(rng.choice(a.shape[0], N_TEST, replace=False))
    return a[keep], b[keep], labels_split[keep]


left_val, right_val, y_val = subsample("val", tv.y_val)
left, right, y_test = subsample("test", tv.y_test)
n = left.shape[0]
f_emb, g_emb = cca.transform_a(left.astype(float)), cca.transform_b(right.astype(float))
settings = {
    "CCA, held-out seen digits": (cca.transform_a(left_val.astype(float)), cca.transform_b(right_val.astype(float))),
    "CCA, unseen digits 7-9": (f_emb, g_emb),
    "random projections, unseen": (RandomProjection(DIGITS_MODULUS, 32, 8, seed=1, lift="canonical")(left),
                                   RandomProjection(DIGITS_MODULUS, 32, 8, seed=2, lift="canonical")(right)),
}

curves = {}
for name, (fx, gy) in settings.items():
    true_pairs = np.stack([np.arange(fx.shape[0])] * 2, axis=1)
    grid = np.linspace(0, np.quantile(np.linalg.norm(fx - gy, axis=1), 0.98), 30)
    counts = fiber_counts(fx, gy, grid)                      # the whole N(eps) curve in one pass
    prs = [fiber_product(fx, gy, e).precision_recall(true_pairs) for e in grid]
    curves[name] = dict(eps=grid, rho=counts.rho, recall=np.array([p.recall for p in prs]),
                        precision=np.array([p.precision for p in prs]))
    # One-pass counts agree with the individual joins; N(eps) and the recall are monotone.
    assert np.array_equal(counts.counts, [p.n_predicted for p in prs])
    assert np.all(np.diff(counts.counts) >= 0) and np.all(np.diff(curves[name]["recall"]) >= 0)

# Exactness: compare one join with brute force over all n*m distances.
eps_grid = curves["CCA, unseen digits 7-9"]["eps"]
D = np.linalg.norm(f_emb[:, None, :] - g_emb[None, :, :], axis=-1)
F_mid = fiber_product(f_emb, g_emb, eps_grid[15])
assert F_mid.count == int((D <= eps_grid[15]).sum())
assert set(map(tuple, F_mid.pairs.tolist())) == set(zip(*np.nonzero(D <= eps_grid[15])))
# Nested sets, and the full product once eps reaches the diameter.
F_small, F_large = fiber_product(f_emb, g_emb, eps_grid[10]), fiber_product(f_emb, g_emb, eps_grid[20])
assert set(map(tuple, F_small.pairs.tolist())) <= set(map(tuple, F_large.pairs.tolist()))
assert fiber_product(f_emb, g_emb, D.max()).count == n * n

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for k, (name, c) in enumerate(curves.items()):
    axes[0].plot(c["rho"], c["recall"], color=f"C{k}", label=name)
    axes[1].plot(c["eps"], c["recall"], color=f"C{k}", label=f"recall, {name}")
    axes[1].plot(c["eps"], c["rho"], "--", color=f"C{k}", label=r"$\rho(\varepsilon)$")
axes[0].plot([0, 1], [0, 1], ":", color="0.5", label="chance")
axes[0].set(xlabel=r"$\rho(\varepsilon)$ (fraction of all pairs kept)", ylabel="recall of true pairs",
            title="true pairs enter the fiber product first")
axes[0].legend(fontsize=8)
axes[1].set(xlabel=r"$\varepsilon$", title=r"recall and $\rho$ versus $\varepsilon$")
axes[1].legend(fontsize=6)
fig.tight_layout()
plt.show()

rec_at = {name: float(np.interp(0.1, c["rho"], c["recall"])) for name, c in curves.items()}
print("recall of true pairs when 10% of all pairs are kept:", {k: round(v, 3) for k, v in rec_at.items()})
# Aligned embeddings beat chance (0.1) by far on seen digits and still clearly on unseen digits;
# independent random projections stay near chance.
assert rec_at["CCA, held-out seen digits"] > 0.5
assert rec_at["CCA, unseen digits 7-9"] > 0.15
assert rec_at["random projections, unseen"] < rec_at["CCA, unseen digits 7-9"]

# %% [markdown]
# Pairs in $F_\varepsilon$ that are not true pairs are often halves of the *same digit class*
# — the fiber product also matches semantically, on classes never seen in training.

# %%
c = curves["CCA, unseen digits 7-9"]
F_eps = fiber_product(f_emb, g_emb, float(np.interp(0.1, c["rho"], c["eps"])))
same_class = (y_test[F_eps.pairs[:, 0]] == y_test[F_eps.pairs[:, 1]]).mean()
base_rate = np.mean(y_test[:, None] == y_test[None, :])
print(f"|F_eps| = {F_eps.count}, same-class fraction {same_class:.2f} (chance {base_rate:.2f})")
assert same_class > base_rate + 0.05

# %% [markdown]
# ## 4. Robustness: perturbed inputs, bounded change of $F_\varepsilon$
#
# Change a few pixels of every left half by ±1 (staying in $[0, 16]$). The CCA map is linear,
# so $\delta_f=\sup_i\|f(P_i')-f(P_i)\|\le\|W_a\|_2\,\eta$ with $\eta=\sup_i\|P_i'-P_i\|$, and
# $F_\varepsilon(f,g)\subseteq F_{\varepsilon+\delta_f}(f',g)$ — and vice versa.

# %%
noise = np.zeros_like(left)
for row in noise:
    k = rng.choice(32, 3, replace=False)
    row[k] = rng.choice([-1, 1], 3)
left_p = np.clip(left + noise, 0, DIGITS_MODULUS - 1)
f_pert = cca.transform_a(left_p.astype(float))
eta = np.linalg.norm((left_p - left).astype(float), axis=1).max()
delta_f = np.linalg.norm(f_pert - f_emb, axis=1).max()
L = np.linalg.norm(cca.weights_a_, 2)
print(f"eta = {eta:.3f}, delta_f = {delta_f:.3f} <= L*eta = {L * eta:.3f}")
assert delta_f <= L * eta + 1e-9
for e in eps_grid[5::6]:
    A = set(map(tuple, fiber_product(f_emb, g_emb, e).pairs.tolist()))
    B = set(map(tuple, fiber_product(f_pert, g_emb, e + delta_f).pairs.tolist()))
    A2 = set(map(tuple, fiber_product(f_emb, g_emb, e + delta_f).pairs.tolist()))
    B2 = set(map(tuple, fiber_product(f_pert, g_emb, e).pairs.tolist()))
    assert A <= B and B2 <= A2
print("F_eps(f, g) ⊆ F_{eps+delta}(f', g) and F_eps(f', g) ⊆ F_{eps+delta}(f, g) on the whole grid")
