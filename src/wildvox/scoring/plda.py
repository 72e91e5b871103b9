"""Two-covariance PLDA back-end (Brümmer & de Villiers 2010; Sizov et al. 2014).

Model, after centring, LDA or whitening, and length normalisation::

    y ~ N(mu, Sb)          speaker variable (between-speaker covariance Sb)
    x | y ~ N(y, Sw)       an utterance of that speaker (within-speaker covariance Sw)

``fit`` estimates ``mu, Sb, Sw`` by EM (initialised from the class-scatter moments), then
diagonalises both covariances at once (``T Sw T' = I``, ``T Sb T' = diag(psi)``) so that the
verification log-likelihood ratio of two single utterances is a sum of per-dimension closed
forms. Length normalisation follows Garcia-Romero & Espy-Wilson (2011): the whitened vectors are
scaled to norm ``sqrt(dim)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from wildvox.data.files import atomic_path

logger = logging.getLogger(__name__)

__all__ = ["PLDA", "NotFittedError"]

_REG = 1e-6  # relative ridge on covariances, keeps them positive definite


class NotFittedError(RuntimeError):
    """A model used before ``fit`` or ``load``."""


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def _ridge(a: np.ndarray) -> np.ndarray:
    return a + _REG * max(float(np.trace(a)) / a.shape[0], 1e-12) * np.eye(a.shape[0])


def _class_stats(y: np.ndarray, inverse: np.ndarray, n_spk: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(inverse, minlength=n_spk).astype(np.float64)
    sums = np.zeros((n_spk, y.shape[1]))
    np.add.at(sums, inverse, y)
    return counts, sums


class PLDA:
    """Two-covariance PLDA with an LDA/whitening front end.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spk = np.repeat(np.arange(50), 6)
    >>> x = rng.normal(size=(50, 8))[spk] * 2 + rng.normal(size=(300, 8))
    >>> plda = PLDA().fit(x, spk, lda_dim=6)
    >>> bool(plda.score(x[:1], x[1:2])[0] > plda.score(x[:1], x[6:7])[0])
    True
    """

    def __init__(self, n_iter: int = 10) -> None:
        if n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        self.n_iter = n_iter
        self.mean: np.ndarray | None = None  # (D,) input mean
        self.proj: np.ndarray | None = None  # (d, D) LDA / whitening
        self.length_norm = True
        self.mu: np.ndarray | None = None  # (d,) PLDA mean
        self.transform: np.ndarray | None = None  # (d, d) simultaneous diagonaliser
        self.psi: np.ndarray | None = None  # (d,) between-speaker variances

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        x: ArrayLike,
        labels: ArrayLike,
        lda_dim: int | None = None,
        length_norm: bool = True,
    ) -> PLDA:
        """Estimate the front end and the PLDA model.

        Args:
            x: (N, D) training embeddings.
            labels: (N,) speaker labels; at least two speakers, one with >= 2 utterances.
            lda_dim: reduce to this many LDA dimensions (<= min(D, speakers - 1)); None keeps
                every non-degenerate whitened dimension.
            length_norm: scale front-end outputs to norm sqrt(dim) before PLDA.

        Returns:
            self.
        """
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 2:
            raise ValueError(f"x must be (N, D) with N >= 2, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"x contains {int((~np.isfinite(a)).sum())} NaN/inf value(s)")
        lab = np.asarray(labels)
        if lab.shape != (a.shape[0],):
            raise ValueError(f"labels must be ({a.shape[0]},), got shape {lab.shape}")
        _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        n_spk = counts.size
        if n_spk < 2 or counts.max() < 2:
            raise ValueError(
                f"PLDA needs >= 2 speakers and one with >= 2 utterances; got {n_spk} speaker(s), "
                f"max {int(counts.max())} utterance(s) each"
            )
        self.mean = a.mean(axis=0)
        xc = a - self.mean
        cnt, sums = _class_stats(xc, inverse, n_spk)
        means = sums / cnt[:, None]
        within = _sym((xc - means[inverse]).T @ (xc - means[inverse]) / a.shape[0])
        if lda_dim is not None:
            if not 1 <= lda_dim <= min(a.shape[1], n_spk - 1):
                raise ValueError(
                    f"lda_dim must be in [1, {min(a.shape[1], n_spk - 1)}] "
                    f"(D={a.shape[1]}, {n_spk} speakers), got {lda_dim}"
                )
            between = _sym((means * cnt[:, None]).T @ means / a.shape[0])
            evals, evecs = _generalized_eigh(between, _ridge(within))
            self.proj = evecs[:, ::-1][:, :lda_dim].T
        else:
            evals, evecs = np.linalg.eigh(_sym(xc.T @ xc / a.shape[0]))
            keep = evals > 1e-10 * evals.max()
            self.proj = (evecs[:, keep] / np.sqrt(evals[keep])).T
        self.length_norm = length_norm
        y = self._front_end(a)
        self._fit_two_cov(y, inverse, n_spk)
        logger.info(
            "PLDA fitted on %d embeddings of %d speakers, %d -> %d dims",
            a.shape[0],
            n_spk,
            a.shape[1],
            y.shape[1],
        )
        return self

    def _fit_two_cov(self, y: np.ndarray, inverse: np.ndarray, n_spk: int) -> None:
        n, d = y.shape
        cnt, f = _class_stats(y, inverse, n_spk)
        mu = y.mean(axis=0)
        dev = y - (f / cnt[:, None])[inverse]
        sw = _ridge(_sym(dev.T @ dev / n))
        centred = f / cnt[:, None] - mu
        sb = _ridge(_sym(centred.T @ centred / n_spk))
        s_total = y.T @ y
        uniq_n, n_inv = np.unique(cnt, return_inverse=True)
        for _ in range(self.n_iter):
            b_prec = np.linalg.inv(sb)
            w_prec = np.linalg.inv(sw)
            m = np.empty_like(f)
            lsum = np.zeros((d, d))
            lsum_n = np.zeros((d, d))
            for j, nj in enumerate(uniq_n):
                rows = n_inv == j
                linv = np.linalg.inv(b_prec + nj * w_prec)
                m[rows] = (f[rows] @ w_prec + b_prec @ mu) @ linv
                k = float(rows.sum())
                lsum += k * linv
                lsum_n += k * nj * linv
            mu = m.mean(axis=0)
            sb = _ridge(_sym((lsum + m.T @ m) / n_spk - np.outer(mu, mu)))
            cross = m.T @ f
            sw = _ridge(_sym((s_total - cross - cross.T + lsum_n + (m * cnt[:, None]).T @ m) / n))
        evals, evecs = _generalized_eigh(sb, sw)
        self.mu = mu
        self.transform = evecs.T
        self.psi = np.maximum(evals, 0.0)

    # ------------------------------------------------------------------ scoring

    def _require(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if (
            self.mean is None
            or self.proj is None
            or self.mu is None
            or self.transform is None
            or self.psi is None
        ):
            raise NotFittedError("PLDA model is not fitted; call fit() or PLDA.load()")
        return self.mean, self.proj, self.mu, self.transform, self.psi

    def _front_end(self, x: np.ndarray) -> np.ndarray:
        mean, proj = self.mean, self.proj
        assert mean is not None and proj is not None
        if x.ndim != 2 or x.shape[1] != mean.shape[0]:
            raise ValueError(
                f"embeddings must be (N, {mean.shape[0]}) for this PLDA, got shape {x.shape}"
            )
        y = (x - mean) @ proj.T
        if self.length_norm:
            norm = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
            y = y * (np.sqrt(y.shape[1]) / norm)
        return y

    def score(self, enroll: ArrayLike, test: ArrayLike) -> np.ndarray:
        """Verification LLR (natural log) of each pair ``enroll[i]`` vs ``test[i]``.

        Args:
            enroll: (N, D) embeddings.
            test: (N, D) embeddings.

        Returns:
            (N,) log p(e, t | same speaker) - log p(e, t | different speakers).
        """
        _, _, mu, transform, psi = self._require()
        e = np.asarray(enroll, dtype=np.float64)
        t = np.asarray(test, dtype=np.float64)
        if e.shape != t.shape:
            raise ValueError(f"enroll and test shapes differ: {e.shape} vs {t.shape}")
        if not (np.isfinite(e).all() and np.isfinite(t).all()):
            raise ValueError("enroll/test embeddings contain NaN or infinite values")
        u1 = (self._front_end(e) - mu) @ transform.T
        u2 = (self._front_end(t) - mu) @ transform.T
        # Per dimension (within variance 1, between psi):
        # same:  N([u1, u2]; 0, [[psi+1, psi], [psi, psi+1]]),  diff: N(0, (psi+1) I).
        q = 2.0 * psi + 1.0
        const = np.sum(np.log1p(psi) - 0.5 * np.log(q))
        a = -(psi**2) / (2.0 * (psi + 1.0) * q)
        b = psi / q
        return const + (u1**2 + u2**2) @ a + (u1 * u2) @ b

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> None:
        """Write the model to an ``.npz`` file atomically."""
        mean, proj, mu, transform, psi = self._require()
        path = Path(path)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(
                fh,
                mean=mean,
                proj=proj,
                mu=mu,
                transform=transform,
                psi=psi,
                length_norm=np.array(self.length_norm),
            )

    @classmethod
    def load(cls, path: str | Path) -> PLDA:
        """Read a model written by :meth:`save`; ``ValueError`` naming the file if malformed."""
        path = Path(path)
        keys = ("mean", "proj", "mu", "transform", "psi", "length_norm")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in keys if k not in z.files]
                if missing:
                    raise ValueError(f"{path}: not a PLDA model, missing {missing}")
                arr = {k: z[k] for k in keys}
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: cannot read PLDA model ({exc})") from exc
        d_in = arr["mean"].shape[0] if arr["mean"].ndim == 1 else -1
        d = arr["mu"].shape[0] if arr["mu"].ndim == 1 else -1
        if (
            d_in < 1
            or d < 1
            or arr["proj"].shape != (d, d_in)
            or arr["transform"].shape != (d, d)
            or arr["psi"].shape != (d,)
        ):
            raise ValueError(f"{path}: PLDA arrays have inconsistent shapes")
        model = cls()
        model.mean, model.proj, model.mu = arr["mean"], arr["proj"], arr["mu"]
        model.transform, model.psi = arr["transform"], arr["psi"]
        model.length_norm = bool(arr["length_norm"])
        return model


def _generalized_eigh(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``a v = l b v`` (b positive definite); ``V' b V = I``, eigenvalues ascending."""
    chol = np.linalg.cholesky(b)
    chol_inv = np.linalg.inv(chol)
    evals, w = np.linalg.eigh(_sym(chol_inv @ a @ chol_inv.T))
    return evals, chol_inv.T @ w
