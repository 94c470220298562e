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
# # 04 · Barycentres on manifolds and optimal transport
#
# Alignment methods average: a class prototype is the mean of its embeddings, QSMA pulls
# each pair toward its geodesic midpoint, and whole batches are matched by optimal transport.
# On curved spaces the average is the **Fréchet (Karcher) mean** (docs/design/mathematics.md, Barycentres and transport)
#
# $$m^\star = \arg\min_m \sum_i w_i\, d(m, x_i)^2,\qquad
#   \text{fixed point of } m \leftarrow \exp_m\Big(\sum_i w_i \log_m x_i\Big),$$
#
# on the sphere (normalised embeddings), hyperbolic space (hierarchies), SPD matrices
# (covariances) and the Grassmannian (subspaces). At the minimiser the weighted
# tangent mean $\sum_i w_i\log_{m}x_i$ vanishes — the first-order condition we check below.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from geoalign import (SPD, Grassmann, Hyperbolic, PlantedAlignment, SharedPrivateDecomposition, Sphere,
                      frechet_mean, principal_angles)
from geoalign.manifolds import lorentz_to_poincare

QUICK = os.environ.get("GEOALIGN_QUICK") == "1"
rng = np.random.default_rng(0)
N_POINTS = 40 if QUICK else 200
N_BATCH = 50 if QUICK else 200          # batched means (the benchmark setting is 200 x 50 on S^63)
N_BOOT = 8 if QUICK else 40             # bootstrap subspace estimates for the Grassmann mean
print("QUICK =", QUICK)

# %% [markdown]
# ## 1. The sphere $S^{d-1}$
#
# Points scattered around a pole of $S^2$. The Fréchet mean is close to, but not equal to,
# the normalised extrinsic mean $\bar x/\|\bar x\|$; it has the smaller objective and a zero
# tangent mean.

# %%
sphere = Sphere(dim=2)
pole = np.array([0.0, 0.0, 1.0])
pts = sphere.projx(pole + 0.6 * rng.standard_normal((N_POINTS, 3)))
res = frechet_mean(pts, sphere)
extrinsic = pts.mean(0) / np.linalg.norm(pts.mean(0))

def objective(m, x, manifold):
    return float((manifold.dist(m[None], x) ** 2).mean())

print("converged:", bool(res.converged), "iterations:", int(res.n_iter), "residual:", float(res.residual))
print("objective — Fréchet: %.6f, extrinsic: %.6f" % (objective(res.mean, pts, sphere), objective(extrinsic, pts, sphere)))
tangent_mean = sphere.log(res.mean[None], pts).mean(0)
assert bool(res.converged) and np.linalg.norm(tangent_mean) < 1e-10
assert objective(res.mean, pts, sphere) <= objective(extrinsic, pts, sphere) + 1e-12
# Small random moves along the sphere never lower the objective (it is a minimiser).
for _ in range(20):
    v = sphere.proju(res.mean, 1e-3 * rng.standard_normal(3))
    assert objective(sphere.exp(res.mean, v), pts, sphere) >= objective(res.mean, pts, sphere)

# %% [markdown]
# **Geodesic interpolation** $\gamma(t)=\exp_x(t\log_x y)$ moves at constant speed: the
# distance from $x$ is $t\,d(x,y)$. The midpoint $\gamma(1/2)$ is the two-point Fréchet mean —
# the target QSMA's barycentric term pulls a pair toward.

# %%
x0, y0 = pts[0], pts[1]
ts = np.linspace(0, 1, 11)
path = sphere.geodesic(x0, y0, ts)
assert np.allclose(sphere.dist(x0[None], path), ts * sphere.dist(x0, y0), atol=1e-12)
mid = frechet_mean(np.stack([x0, y0]), sphere).mean
assert np.allclose(mid, sphere.geodesic(x0, y0, 0.5), atol=1e-10)

fig = plt.figure(figsize=(10, 4))
ax = fig.add_subplot(1, 2, 1, projection="3d")
u, v = np.mgrid[0:2 * np.pi:30j, 0:np.pi / 2:15j]
ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.5)
ax.scatter(*pts.T, s=10, label="points")
ax.scatter(*res.mean, color="C3", s=60, label="Fréchet mean")
ax.scatter(*extrinsic, color="C2", s=60, marker="x", label="normalised extrinsic mean")
ax.plot(*path.T, color="C1", lw=2, label="geodesic")
ax.legend(fontsize=7, loc="upper left")
ax.set_title("means on $S^2$")
ax2 = fig.add_subplot(1, 2, 2)
ax2.plot(ts, sphere.dist(x0[None], path), "o-")
ax2.set(xlabel="t", ylabel=r"$d(x, \gamma(t))$", title="constant-speed geodesic")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Batched means.** `frechet_mean` accepts a batch `[..., n, d]` and solves all problems at
# once (torch underneath, any device). Each batch element equals its own solution.

# %%
big = Sphere(dim=63)
centres = big.random(N_BATCH, seed=1)
clouds = big.projx(centres[:, None, :] + 0.3 * rng.standard_normal((N_BATCH, 50, 64)) / np.sqrt(64))
batched = frechet_mean(clouds, big)
single = np.stack([frechet_mean(clouds[i], big).mean for i in range(3)])
print("batched means:", batched.mean.shape, "all converged:", bool(np.all(batched.converged)))
assert np.all(batched.converged)
assert np.allclose(batched.mean[:3], single, atol=1e-10)

# %% [markdown]
# ## 2. Hyperbolic space (Poincaré ball and Lorentz model)
#
# Negative curvature spreads points out toward the boundary; the Fréchet mean is unique
# anywhere. The two models are isometric, so their means must correspond under
# $p = x_{1:}/(1+x_0)$.

# %%
ball = Hyperbolic(2, model="poincare")
hyperboloid = Hyperbolic(2, model="lorentz")
hp_l = hyperboloid.random(N_POINTS, seed=3, scale=1.2)
hp_p = lorentz_to_poincare(hp_l)
mean_p = frechet_mean(hp_p, ball).mean
mean_l = frechet_mean(hp_l, hyperboloid).mean
print("Poincaré mean:", mean_p, " Lorentz mean mapped to the ball:", lorentz_to_poincare(mean_l))
assert np.allclose(mean_p, lorentz_to_poincare(mean_l), atol=1e-8)
euclid = hp_p.mean(0)
assert objective(mean_p, hp_p, ball) <= objective(euclid, hp_p, ball)

fig, ax = plt.subplots(figsize=(4, 4))
ax.add_patch(plt.Circle((0, 0), 1, fill=False, color="k"))
ax.scatter(*hp_p.T, s=10)
for p in hp_p[:10]:
    ax.plot(*ball.geodesic(mean_p, p, np.linspace(0, 1, 20)).T, color="0.7", lw=0.8)
ax.scatter(*mean_p, color="C3", s=60, label="Fréchet mean")
ax.scatter(*euclid, color="C2", marker="x", s=60, label="Euclidean mean of the ball coordinates")
ax.set(aspect="equal", xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), title="Poincaré disk")
ax.legend(fontsize=7, loc="lower left")
plt.show()

# %% [markdown]
# ## 3. SPD matrices: averaging covariances
#
# Per-class covariance matrices of the planted view $U$ (restricted to a few coordinates).
# The arithmetic mean *swells*: its determinant exceeds the geometric mean of the
# determinants. Both the affine-invariant and the log-Euclidean Fréchet means satisfy
# $\det m^\star = \prod_i (\det X_i)^{w_i}$ exactly (take the trace of the first-order condition).

# %%
planted = PlantedAlignment(dim=6, shared_rank=2, private_ranks=(2, 2), snr=1.0, n_classes=8,
                           between_class_fraction=0.9, random_state=0).sample(4000)
covs = np.stack([np.cov(planted.U[planted.labels == c].T) for c in range(8)])
covs = covs * np.exp(rng.normal(0, 0.7, size=8))[:, None, None]        # classes of different scale
affine = frechet_mean(covs, SPD(6, metric="affine")).mean
log_euclid = frechet_mean(covs, SPD(6, metric="log_euclidean")).mean
arith = covs.mean(0)
logdets = np.linalg.slogdet(covs)[1]
print("log det — geometric mean of dets: %.4f, affine: %.4f, log-Euclidean: %.4f, arithmetic: %.4f" % (
    logdets.mean(), np.linalg.slogdet(affine)[1], np.linalg.slogdet(log_euclid)[1], np.linalg.slogdet(arith)[1]))
assert np.isclose(np.linalg.slogdet(affine)[1], logdets.mean(), atol=1e-8)
assert np.isclose(np.linalg.slogdet(log_euclid)[1], logdets.mean(), atol=1e-8)
assert np.linalg.slogdet(arith)[1] > logdets.mean()
print("affine-invariant distance between the two Riemannian means: %.2e"
      % float(SPD(6).dist(affine, log_euclid)))

fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, (name, M) in zip(axes, [("arithmetic", arith), ("log-Euclidean", log_euclid), ("affine-invariant", affine)]):
    ax.imshow(M, cmap="RdBu_r", vmin=-np.abs(arith).max(), vmax=np.abs(arith).max())
    ax.set_title(f"{name}\nlog det = {np.linalg.slogdet(M)[1]:.2f}")
    ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. The Grassmannian: averaging estimated subspaces
#
# Bootstrap resamples of a noisy planted sample each give an estimate $\hat Z_s^{(b)}$ of
# the shared subspace (notebook 03). These are points of $\mathrm{Gr}(d, r)$ (as $d\times r$
# orthonormal frames); their Fréchet mean is a *bagged* estimate, typically closer to the
# truth than a typical single estimate.

# %%
gen = PlantedAlignment(dim=24, shared_rank=3, private_ranks=(2, 2), snr=0.15, random_state=4)
noisy = gen.sample(400)
frames = []
for b in range(N_BOOT):
    idx = rng.integers(0, noisy.n_samples, noisy.n_samples)
    est = SharedPrivateDecomposition(shared_rank=3, private_ranks=(2, 2)).fit(noisy.U[idx], noisy.V[idx])
    frames.append(est.basis_shared_)
frames = np.stack(frames)
gr = Grassmann(24, 3)
bagged = frechet_mean(frames, gr).mean
single_err = np.array([np.degrees(principal_angles(F, gen.basis_shared).max()) for F in frames])
bagged_err = np.degrees(principal_angles(bagged, gen.basis_shared).max())
print("largest angle to Z_s — bootstrap estimates: median %.1f°, range [%.1f°, %.1f°]; Fréchet mean: %.1f°"
      % (np.median(single_err), single_err.min(), single_err.max(), bagged_err))
assert bagged_err <= np.median(single_err)
# The mean is invariant to the choice of frame: rotating each frame within its span changes nothing.
Q = np.linalg.qr(rng.standard_normal((N_BOOT, 3, 3)))[0]
bagged_rot = frechet_mean(frames @ Q, gr).mean
assert float(gr.dist(bagged, bagged_rot)) < 1e-8

fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(single_err, bins=10, alpha=0.7, label="bootstrap estimates")
ax.axvline(bagged_err, color="C3", label="Grassmann Fréchet mean")
ax.set(xlabel="largest principal angle to $Z_s$ (degrees)", title="bagging subspaces on Gr(24, 3)")
ax.legend()
plt.show()

# %% [markdown]
# ## 5. Optimal transport between the two modalities
#
# Entropic OT (log-domain Sinkhorn) between a batch of image embeddings $u_i$ and text
# embeddings $v_j$ on the sphere, cost $C_{ij}=1-\cos(u_i,v_j)$:
#
# $$P^\star=\arg\min_{P\mathbf 1=a,\;P^\top\mathbf 1=b}\langle C,P\rangle+\varepsilon\,\mathrm{KL}(P\,\|\,a\otimes b).$$
#
# The plan recovers the pairing without being told it when the views share enough signal;
# the barycentric image $\hat v_i=\sum_j P_{ij}v_j/a_i$ is the target of QSMA's barycentric term.
# POT's `ot.sinkhorn(method="sinkhorn_log")` gives the same plan.

# %%
import ot as pot

from geoalign.ot import free_support_barycenter, gaussian_barycenter, sinkhorn, sinkhorn_divergence, sliced_wasserstein

n_ot = 60 if QUICK else 300
pairs = PlantedAlignment(dim=16, shared_rank=6, private_ranks=(2, 2), snr=10.0, between_class_fraction=0.2,
                         random_state=7).sample(n_ot)
emb_u = pairs.U / np.linalg.norm(pairs.U, axis=1, keepdims=True)
emb_v = pairs.V / np.linalg.norm(pairs.V, axis=1, keepdims=True)
C = 1.0 - emb_u @ emb_v.T
reg = 0.05
sol = sinkhorn(None, None, C, reg=reg, tol=1e-9, max_iter=5000)
a = np.full(n_ot, 1.0 / n_ot)
P_pot = pot.sinkhorn(a, a, C, reg, method="sinkhorn_log", numItermax=5000, stopThr=1e-9)
print("converged:", sol.converged, "iterations:", sol.n_iter, "max |P - P_POT| =", np.abs(sol.plan - P_pot).max())
assert sol.converged and np.abs(sol.plan - P_pot).max() < 1e-6
assert np.allclose(sol.plan.sum(1), a, atol=1e-12) and np.allclose(sol.plan.sum(0), a, atol=1e-9)
matched = (sol.plan.argmax(1) == np.arange(n_ot)).mean()
print(f"rows whose largest plan entry is the true partner: {matched:.2f} (chance {1 / n_ot:.3f})")
assert matched > 0.5
S16 = Sphere(dim=15)
v_hat = S16.projx((sol.plan @ emb_v) / a[:, None])          # barycentric image of each u_i, on the sphere
mid = S16.geodesic(emb_u, v_hat, 0.5)                      # the point QSMA pulls both toward
assert np.allclose(S16.dist(mid, emb_u), S16.dist(mid, v_hat), atol=1e-10)
assert np.allclose(mid, S16.projx(emb_u + v_hat), atol=1e-10)   # on the sphere: normalised sum

fig, axes = plt.subplots(1, 2, figsize=(10, 4))
axes[0].imshow(sol.plan * n_ot, cmap="magma")
axes[0].set(title=r"Sinkhorn plan $n P^\star$ (true pairs on the diagonal)", xlabel="text j", ylabel="image i")
axes[1].hist(np.diag(C), bins=20, alpha=0.7, density=True, label="true pairs")
axes[1].hist(C[~np.eye(n_ot, dtype=bool)], bins=40, alpha=0.5, density=True, label="other pairs")
axes[1].set(xlabel=r"cost $1-\cos$", title="costs of true and other pairs")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Distances between the two batch distributions
#
# QSMA's alignment term compares the *distributions* of the two batches: the debiased Sinkhorn
# divergence $S_\varepsilon(\alpha,\beta)=\mathrm{OT}_\varepsilon(\alpha,\beta)-\tfrac12\mathrm{OT}_\varepsilon(\alpha,\alpha)-\tfrac12\mathrm{OT}_\varepsilon(\beta,\beta)$
# (zero when $\alpha=\beta$) or the sliced Wasserstein distance with Sobol directions. Both grow
# as we rotate the second cloud away from the first.

# %%
angles_deg = np.linspace(0, 90, 7)
cloud = rng.standard_normal((n_ot, 3)) * [1.0, 0.4, 0.2] + [2.0, 0, 0]
sdiv, sw = [], []
for t in np.radians(angles_deg):
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    other = cloud @ rot.T
    sdiv.append(float(sinkhorn_divergence(cloud, other, reg=0.3).value))
    sw.append(float(sliced_wasserstein(cloud, other, n_projections=64, seed=0).value))
sdiv, sw = np.array(sdiv), np.array(sw)
print("Sinkhorn divergence:", np.round(sdiv, 4))
print("sliced Wasserstein: ", np.round(sw, 4))
assert abs(sdiv[0]) < 1e-6 and sw[0] < 1e-9                 # identical clouds
assert np.all(np.diff(sdiv) > 0) and np.all(np.diff(sw) > 0)

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(angles_deg, sdiv, "o-", label=r"Sinkhorn divergence $S_\varepsilon$")
ax.plot(angles_deg, sw ** 2, "s-", label=r"sliced $W_2^2$")
ax.set(xlabel="rotation of the second cloud (degrees)", title="distribution distances")
ax.legend()
plt.show()

# %% [markdown]
# ## 7. Wasserstein barycentres
#
# The free-support $W_2$ barycentre of point clouds $\nu_k$ minimises $\sum_k w_k W_2^2(\mu,\nu_k)$
# over the support of $\mu$. For Gaussians the barycentre is Gaussian with mean $\sum_k w_k m_k$
# and covariance the fixed point $S=\sum_k w_k(S^{1/2}\Sigma_kS^{1/2})^{1/2}$; the free-support
# barycentre of Gaussian samples approaches it.

# %%
n_cloud = 150 if QUICK else 500
means = np.array([[0.0, 0.0], [4.0, 0.0], [2.0, 3.0]])
covs = np.array([[[1.0, 0.6], [0.6, 0.5]], [[0.3, -0.2], [-0.2, 1.0]], [[0.5, 0.0], [0.0, 0.2]]])
clouds_2d = [rng.multivariate_normal(m, S, size=n_cloud) for m, S in zip(means, covs)]
bary = free_support_barycenter(clouds_2d, support_size=n_cloud, max_iter=30 if QUICK else 100, seed=0)
gauss = gaussian_barycenter(means, covs)
emp_mean, emp_cov = bary.support.mean(0), np.cov(bary.support.T)
print("Gaussian barycentre mean", gauss.mean, "free-support mean", emp_mean)
print("Gaussian barycentre cov\n", gauss.cov, "\nfree-support cov\n", emp_cov)
assert np.allclose(gauss.mean, means.mean(0), atol=1e-12)
assert np.linalg.norm(emp_mean - gauss.mean) < 0.25
assert np.linalg.norm(emp_cov - gauss.cov) < 0.35 * np.linalg.norm(gauss.cov)
# The fixed-point equation of the Gaussian barycentre holds.
from scipy.linalg import sqrtm
root = np.real(sqrtm(gauss.cov))
rhs = sum(np.real(sqrtm(root @ S @ root)) for S in covs) / 3
assert np.allclose(gauss.cov, rhs, atol=1e-8)

fig, ax = plt.subplots(figsize=(5, 4))
for k, c in enumerate(clouds_2d):
    ax.scatter(*c.T, s=6, alpha=0.4, label=rf"$\nu_{k + 1}$")
ax.scatter(*bary.support.T, s=8, color="k", label="free-support barycentre")
ax.set(aspect="equal", title=r"$W_2$ barycentre of three clouds")
ax.legend(fontsize=7)
plt.show()
