# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Shared/private decomposition $Z = Z_s \oplus Z_I \oplus Z_T$
#
# Two views of the same object (an image embedding $u$ and a text embedding $v$)
# live in one space $Z=\mathbb{R}^d$. The **planted model** (docs/design/mathematics.md, Shared and private subspaces) is
#
# $$u = A s + B_I a + \sigma\xi, \qquad v = A s + B_T b + \sigma\zeta,$$
#
# with $[A, B_I, B_T]$ orthonormal columns: $Z_s=\operatorname{span}A$ is *shared*,
# $Z_I=\operatorname{span}B_I$ and $Z_T=\operatorname{span}B_T$ are *private* to each view.
#
# **Decomposition identity** (docs/design/mathematics.md, Statement 4). If $f\in Z_s\oplus Z_I$ and
# $g\in Z_s\oplus Z_T$ then, because the three subspaces are mutually orthogonal,
#
# $$\|f-g\|^2 = \|\Pi_s(f-g)\|^2 + \|\Pi_I f\|^2 + \|\Pi_T g\|^2 .$$
#
# Private energy can only *add* to a pair's distance, so the fiber product
# $F_\varepsilon=\{(P,Q):\|f(P)-g(Q)\|\le\varepsilon\}$ is contained in the shared-only
# fiber product $F^s_\varepsilon$ (distances measured after $\Pi_s$).
#
# **Estimator.** `SharedPrivateDecomposition.fit(U, V)` takes $Z_s$ from the top
# eigenvectors of the symmetric cross-covariance $\tfrac12(C_{uv}+C_{vu})$, then $Z_I$, $Z_T$
# from each view's covariance on $Z_s^\perp$, made exactly orthogonal; ranks come from
# eigenvalue gaps (or a permutation test). We compare to the planted truth with
# principal angles, and to AJIVE, whose orthogonality is in *sample* space.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from geoalign import PlantedAlignment, SharedPrivateDecomposition, ajive, principal_angles

QUICK = os.environ.get("GEOALIGN_QUICK") == "1"
N = 1500 if QUICK else 6000          # samples per fit
DIM = 32 if QUICK else 64            # ambient dimension d
SNR_GRID = [0.05, 0.1, 0.3, 1.0, 3.0, 10.0] if QUICK else list(np.geomspace(0.02, 30, 14))
RANKS = dict(shared_rank=4, private_ranks=(3, 2))
print(f"QUICK={QUICK}: n={N}, d={DIM}")

# %% [markdown]
# ## 1. Recovering the planted subspaces

# %%
gen = PlantedAlignment(dim=DIM, snr=10.0, n_classes=10, random_state=0, **RANKS)
data = gen.sample(N)
model = SharedPrivateDecomposition().fit(data.U, data.V)
print("estimated ranks: shared", model.shared_rank_, "private", model.private_ranks_)
print("explained energy:", {k: {p: round(e, 3) for p, e in v.items()} for k, v in model.explained_energy_.items()})

angles = {
    "shared": principal_angles(model.basis_shared_, data.basis_shared),
    "private I": principal_angles(model.basis_a_, data.basis_a),
    "private T": principal_angles(model.basis_b_, data.basis_b),
}
for name, th in angles.items():
    print(f"{name:10s} largest principal angle to truth: {np.degrees(th.max()):.2f}°")

# The ranks are found from the data, and at snr=10 every subspace is within a few degrees.
assert model.shared_rank_ == RANKS["shared_rank"]
assert model.private_ranks_ == RANKS["private_ranks"]
assert all(np.degrees(th.max()) < 10 for th in angles.values())
# The estimated subspaces are orthonormal and mutually orthogonal.
B = np.concatenate([model.basis_shared_, model.basis_a_, model.basis_b_], axis=1)
assert np.allclose(B.T @ B, np.eye(B.shape[1]), atol=1e-10)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
eigs = model.shared_eigenvalues_
axes[0].bar(np.arange(1, 13), eigs[:12], color=["C0"] * model.shared_rank_ + ["C7"] * (12 - model.shared_rank_))
axes[0].set(title="spectrum of the symmetric cross-covariance", xlabel="index", ylabel="eigenvalue")
for i, (name, th) in enumerate(angles.items()):
    axes[1].plot(np.arange(1, th.size + 1), np.degrees(th), "o-", label=name)
axes[1].set(title="principal angles to the planted subspaces", xlabel="index", ylabel="degrees")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The decomposition identity
#
# On noiseless data ($\sigma=0$) every $u$ lies exactly in $Z_s\oplus Z_I$ and every
# $v$ in $Z_s\oplus Z_T$; the estimator then recovers the subspaces exactly and the
# identity holds for *every* pair $(i, j)$, paired or not, to rounding error.

# %%
clean = PlantedAlignment(dim=DIM, snr=np.inf, n_classes=10, random_state=1, **RANKS).sample(N // 2)
fit0 = SharedPrivateDecomposition().fit(clean.U, clean.V)
print("noiseless: largest shared angle", principal_angles(fit0.basis_shared_, clean.basis_shared).max())

m = 300
f = clean.U[:m] - fit0.mean_u_
g = clean.V[:m] - fit0.mean_v_
Ps, Pi, Pt = fit0.projector_shared_, fit0.projector_a_, fit0.projector_b_
diff = f[:, None, :] - g[None, :, :]                     # all m*m pairs (i, j)
lhs = (diff ** 2).sum(-1)
shared_term = ((diff @ Ps) ** 2).sum(-1)
rhs = shared_term + ((f @ Pi) ** 2).sum(-1)[:, None] + ((g @ Pt) ** 2).sum(-1)[None, :]
rel_err = np.abs(lhs - rhs).max() / lhs.max()
print(f"max relative error of the identity over {m*m} pairs: {rel_err:.2e}")
assert rel_err < 1e-9

# %% [markdown]
# ### Consequence: $F_\varepsilon \subseteq F^s_\varepsilon$
#
# We compute both fiber products (all pairs, blocked by hand here since $m$ is small)
# over a grid of $\varepsilon$ and check the inclusion and the monotonicity in $\varepsilon$.
# On noisy data the vectors also have a residual outside $Z_s\oplus Z_I\oplus Z_T$, but
# $\Pi_s$ is an orthogonal projection, so $\|\Pi_s(f-g)\|\le\|f-g\|$ and the inclusion
# still holds.

# %%
def pair_distances(fu, gv, proj=None):
    d = fu[:, None, :] - gv[None, :, :]
    if proj is not None:
        d = d @ proj
    return np.sqrt((d ** 2).sum(-1))

parts = model.transform(data.U[:m], data.V[:m])
fu = parts.shared_u + parts.private_a + parts.residual_u      # centred U (whole space)
gv = parts.shared_v + parts.private_b + parts.residual_v
D_full = pair_distances(fu, gv)
D_shared = pair_distances(fu, gv, model.projector_shared_)
eps_grid = np.linspace(0, np.quantile(D_full, 0.5), 40)
N_full = np.array([(D_full <= e).sum() for e in eps_grid])
N_shared = np.array([(D_shared <= e).sum() for e in eps_grid])
for e in eps_grid[::8]:
    F, Fs = D_full <= e, D_shared <= e
    assert not (F & ~Fs).any(), "F_eps must be a subset of the shared-only F^s_eps"
assert np.all(np.diff(N_full) >= 0) and np.all(np.diff(N_shared) >= 0)
assert np.all(N_full <= N_shared)

true_full, true_shared = np.diag(D_full), np.diag(D_shared)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(eps_grid, N_full / m**2, label=r"$\rho(\varepsilon)$, full distance")
axes[0].plot(eps_grid, N_shared / m**2, label=r"$\rho^s(\varepsilon)$, shared part only")
axes[0].set(xlabel=r"$\varepsilon$", ylabel="fraction of pairs", title=r"$F_\varepsilon \subseteq F^s_\varepsilon$")
axes[0].legend()
axes[1].hist(true_full, bins=30, alpha=0.6, label="true pairs, full")
axes[1].hist(true_shared, bins=30, alpha=0.6, label="true pairs, shared")
axes[1].set(xlabel="distance", title="private energy lengthens true pairs")
axes[1].legend()
fig.tight_layout()
plt.show()
# True pairs are much closer once private energy is removed.
assert np.median(true_shared) < 0.5 * np.median(true_full)

# %% [markdown]
# ## 3. How much signal is needed? Principal angles versus SNR
#
# We sweep the signal-to-noise ratio (ranks given, so only the subspaces are estimated)
# and report the largest principal angle of $\hat Z_s$ to $Z_s$.

# %%
worst = []
for snr in SNR_GRID:
    d_snr = PlantedAlignment(dim=DIM, snr=snr, n_classes=10, random_state=2, **RANKS).sample(N)
    est = SharedPrivateDecomposition(**RANKS).fit(d_snr.U, d_snr.V)
    worst.append(np.degrees(principal_angles(est.basis_shared_, d_snr.basis_shared).max()))
worst = np.array(worst)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.semilogx(SNR_GRID, worst, "o-")
ax.set(xlabel="snr", ylabel="largest angle to $Z_s$ (degrees)", title="recovery of the shared subspace")
plt.show()
print({round(float(s), 3): round(float(w), 2) for s, w in zip(SNR_GRID, worst)})
# More signal, better recovery: the error at the largest snr is far below the error at the smallest.
assert worst[-1] < 5 and worst[-1] < worst[0] / 3

# %% [markdown]
# ## 4. Feature space (ours) versus sample space (AJIVE)
#
# AJIVE finds *joint score* directions in sample space $\mathbb{R}^n$ and has no
# out-of-sample transform; its joint loadings are still a feature-space subspace we can
# compare with $Z_s$. Both should find the planted shared subspace on this data.

# %%
res = ajive(data.U, data.V, signal_ranks=(RANKS["shared_rank"] + RANKS["private_ranks"][0],
                                           RANKS["shared_rank"] + RANKS["private_ranks"][1]))
print("AJIVE joint rank:", res.joint_rank)
th_ajive = principal_angles(res.joint_loadings_u, data.basis_shared)
th_ours = angles["shared"]
print("largest angle to Z_s — ours: %.2f°, AJIVE: %.2f°" % (np.degrees(th_ours.max()), np.degrees(th_ajive.max())))
assert res.joint_rank >= 1
# Transforming new samples is possible only in feature space: project a fresh test draw.
test = gen.sample(500, random_state=123)
parts_test = model.transform(test.U, test.V)
gap_shared = np.linalg.norm(parts_test.shared_u - parts_test.shared_v, axis=1)
gap_full = np.linalg.norm((test.U - model.mean_u_) - (test.V - model.mean_v_), axis=1)
print("test pairs: median distance full %.3f, shared part %.3f" % (np.median(gap_full), np.median(gap_shared)))
assert np.median(gap_shared) < np.median(gap_full)

# %% [markdown]
# ## 5. Interactive: the fraction of pairs in $F_\varepsilon$ and $F^s_\varepsilon$
#
# In JupyterLab (with `ipywidgets` installed) a slider moves $\varepsilon$. It is skipped in
# the quick (test) setting.

# %%
if not QUICK:
    try:
        import ipywidgets as widgets
    except ImportError:
        widgets = None
        print("ipywidgets is not installed: no slider (pip install ipywidgets)")
    if widgets is not None:
        def show(eps=float(np.median(true_full))):
            print(f"eps={eps:.3f}: |F_eps|={(D_full <= eps).sum()}, |F^s_eps|={(D_shared <= eps).sum()}, "
                  f"true pairs kept: {(true_full <= eps).mean():.2f} (full), {(true_shared <= eps).mean():.2f} (shared)")
        widgets.interact(show, eps=(0.0, float(eps_grid[-1]), float(eps_grid[-1]) / 100))
