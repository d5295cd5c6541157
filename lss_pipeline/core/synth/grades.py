"""Severity grades of synthetic studies: independent per cell, or correlated like the real train.csv.

Real grades are not independent: a study with a narrow canal at L4/L5 tends to have narrow
recesses there too, and its neighbouring levels tend to be worse. ``correlated=True`` draws
the 25 grades of a study from a Gaussian copula whose latent correlation is a small factor
model measured on the real file (constants below), thresholded with the real per-level class
shares; the category shares stay those of ``REAL_CLASS_SHARES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from lss_pipeline.core.constants import CONDITIONS, LEVELS, REAL_CLASS_SHARES

# The 25 train.csv cells of a study, in column order: (condition, category, side, level).
CELLS: tuple[tuple[str, str, str | None, str], ...] = tuple(
    (cond, cat, side, level) for (cond, cat, side, _) in CONDITIONS for level in LEVELS
)
CATEGORIES: tuple[str, ...] = ("scs", "nfs", "sbs")

# ---------------------------------------------------------------------------------------------
# Measured once, at development time, on the Kaggle train.csv (1,975 studies; not shipped):
# - REAL_LEVEL_SHARES: share of Normal/Mild, Moderate, Severe per category and level (blank
#   cells left out; left and right averaged). Their mean over levels is REAL_CLASS_SHARES.
# - GRADE_MODEL: grades coded 0/1/2, Pearson correlation of every pair of the 25 columns
#   (pairwise complete), each turned into the latent normal correlation that reproduces it under
#   the two columns' thresholds, then the factor model of `latent_correlation` fitted to those
#   300 latent correlations by least squares (RMSE 0.054). Grades sampled with these constants
#   have Pearson correlations within 0.04 of the real ones on every summary of
#   REAL_GRADE_CORRELATIONS (RMSE 0.034 over all 300 pairs, 200k sampled studies).
# - REAL_GRADE_CORRELATIONS: those summaries of the real file (mean Pearson correlation of the
#   pairs named), the reference the tests hold generated grades to.
REAL_LEVEL_SHARES: dict[str, tuple[tuple[float, float, float], ...]] = {
    #        L1/L2                  L2/L3                  L3/L4                  L4/L5                  L5/S1
    "scs": (
        (0.955, 0.034, 0.011),
        (0.897, 0.076, 0.027),
        (0.821, 0.117, 0.062),
        (0.751, 0.120, 0.129),
        (0.964, 0.026, 0.010),
    ),
    "nfs": (
        (0.964, 0.032, 0.004),
        (0.910, 0.086, 0.004),
        (0.770, 0.209, 0.021),
        (0.612, 0.319, 0.069),
        (0.641, 0.258, 0.101),
    ),
    "sbs": (
        (0.930, 0.056, 0.014),
        (0.827, 0.132, 0.041),
        (0.671, 0.230, 0.099),
        (0.451, 0.316, 0.233),
        (0.714, 0.205, 0.081),
    ),
}


@dataclass(frozen=True)
class GradeModel:
    """Loadings of the latent factors behind a study's 25 grades (each cell has unit variance)."""

    # Study factor (overall degeneration): loading per category, times a per-level weight
    # (L5/S1 degenerates more on its own than the levels above it).
    study_loading: dict[str, float]
    study_level_weight: tuple[float, ...]
    # Level factor shared by every condition at one level (disc bulge, facets); correlated
    # between levels k apart by level_rho ** k.
    level_loading: dict[str, float]
    level_rho: float
    # One condition (and side) along the spine: correlation trajectory_rho ** k between levels.
    trajectory_loading: dict[str, float]
    trajectory_rho: float
    # Left and right of one category at one level.
    bilateral_loading: dict[str, float]
    # Foramen and recess on the same side at one level.
    same_side_loading: dict[str, float]


GRADE_MODEL = GradeModel(
    study_loading={"scs": 0.504, "nfs": 0.595, "sbs": 0.599},
    study_level_weight=(0.986, 1.022, 1.0, 0.884, 0.594),
    level_loading={"scs": 0.815, "nfs": 0.281, "sbs": 0.607},
    level_rho=0.463,
    trajectory_loading={"scs": 0.226, "nfs": 0.636, "sbs": 0.487},
    trajectory_rho=0.558,
    bilateral_loading={"nfs": 0.357, "sbs": 0.0},  # the fit gives SBS none beyond the level factor
    same_side_loading={"nfs": 0.312, "sbs": 0.312},
)
REAL_GRADE_CORRELATIONS: dict[str, float] = {
    "scs adjacent levels": 0.349,
    "scs levels 2+ apart": 0.129,
    "nfs adjacent levels": 0.384,
    "nfs levels 2+ apart": 0.170,
    "sbs adjacent levels": 0.437,
    "sbs levels 2+ apart": 0.231,
    "nfs left-right same level": 0.318,
    "sbs left-right same level": 0.492,
    "scs-nfs same level": 0.267,
    "scs-nfs other levels": 0.144,
    "scs-sbs same level": 0.515,
    "scs-sbs other levels": 0.202,
    "nfs-sbs same level": 0.335,
    "nfs-sbs other levels": 0.184,
}


def common_covariance() -> np.ndarray:
    """The 25 × 25 covariance that GRADE_MODEL's factors give the latent grades, in CELLS order;
    its diagonal is each cell's shared variance (the rest, up to 1, is the cell's own)."""
    m = GRADE_MODEL
    n = len(CELLS)
    cov = np.zeros((n, n))
    for i, (_, ci, si, li) in enumerate(CELLS):
        for j, (_, cj, sj, lj) in enumerate(CELLS):
            a, b = LEVELS.index(li), LEVELS.index(lj)
            v = m.study_loading[ci] * m.study_level_weight[a] * m.study_loading[cj] * m.study_level_weight[b]
            v += m.level_loading[ci] * m.level_loading[cj] * m.level_rho ** abs(a - b)
            if ci == cj and si == sj:
                v += m.trajectory_loading[ci] ** 2 * m.trajectory_rho ** abs(a - b)
            if ci == cj and ci != "scs" and a == b and si != sj:
                v += m.bilateral_loading[ci] ** 2
            if ci != cj and "scs" not in (ci, cj) and si == sj and a == b:
                v += m.same_side_loading[ci] * m.same_side_loading[cj]
            cov[i, j] = v
    if cov.diagonal().max() >= 1:
        raise ValueError("GRADE_MODEL explains more than all of a cell's variance")
    return cov


def latent_correlation() -> np.ndarray:
    """The latent correlation of GRADE_MODEL (unit diagonal)."""
    cov = common_covariance()
    np.fill_diagonal(cov, 1.0)
    return cov


# Draws of the calibration below: enough for the noise rate to within ~0.1 %, fixed so a seed
# gives the same labels on every machine.
_CALIBRATION_DRAWS = 200_000


def _grades(latent: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """0/1/2 grades of latent values (..., cells) at each cell's (Moderate, Severe) cut points."""
    return ((latent > cuts[:, 0]).astype(np.int8) + (latent > cuts[:, 1])).astype(np.int8)


@lru_cache(maxsize=16)
def annotator_sigma(label_noise: float, cuts_key: tuple[tuple[float, float], ...]) -> float:
    """The latent annotator error sigma that makes ``label_noise`` of written grades an other class
    than the true ones, averaged over cells with these (Moderate, Severe) cut points.

    The rate a given sigma gives depends on the class shares (enriched shares put more grades near
    a cut point), so it is solved for per set of cut points rather than fixed once for the real
    shares: the demo's enriched set would otherwise get nearly twice the noise it asks for.
    """
    if label_noise <= 0:
        return 0.0
    cuts = np.asarray(cuts_key, dtype=float)
    rng = np.random.default_rng(0)
    z, error = rng.standard_normal((2, _CALIBRATION_DRAWS, 1))  # one draw serves every cell
    true = _grades(z, cuts)

    def disagreement(sigma: float) -> float:
        written = _grades((z + sigma * error) / np.sqrt(1 + sigma**2), cuts)
        return float((written != true).mean())

    lo, hi = 0.0, 8.0
    if disagreement(hi) < label_noise:
        raise ValueError(f"label_noise {label_noise} is more than annotator error can make here")
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if disagreement(mid) < label_noise else (lo, mid)
    return (lo + hi) / 2


@lru_cache(maxsize=4)
def _cholesky(inflation: float) -> np.ndarray:
    """Cholesky factor of the true grades' latent correlation: the measured one times
    ``inflation`` off the diagonal, so that written grades (true plus annotator error) have the
    measured correlation."""
    corr = latent_correlation() * inflation
    np.fill_diagonal(corr, 1.0)
    return np.linalg.cholesky(corr)


def _thresholds(class_shares: dict[str, tuple[float, float, float]] | None) -> np.ndarray:
    """(25, 2) latent cut points: z above the first is at least Moderate, above the second Severe."""
    cuts = np.empty((len(CELLS), 2))
    for j, (_, cat, _, level) in enumerate(CELLS):
        p = np.asarray(
            class_shares[cat] if class_shares else REAL_LEVEL_SHARES[cat][LEVELS.index(level)], float
        )
        p = p / p.sum()
        cuts[j] = stats.norm.ppf([1 - p[1] - p[2], 1 - p[2]])
    return cuts


def _correlated(
    rng: np.random.Generator, n_studies: int, class_shares: dict | None, label_noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """(true, written) from the copula; written = the true latent grade plus annotator error,
    rescaled to unit variance, so both keep the class shares; about ``label_noise`` of written
    grades differ from the true ones whatever the shares."""
    cuts = _thresholds(class_shares)
    sigma = annotator_sigma(label_noise, tuple(map(tuple, np.round(cuts, 9).tolist())))
    # Inflate the shared part by the attenuation the error brings, as far as it fits under 1.
    inflation = min(1 + sigma**2, 0.995 / float(common_covariance().diagonal().max()))
    z = rng.standard_normal((n_studies, len(CELLS))) @ _cholesky(round(inflation, 6)).T
    w = (z + sigma * rng.standard_normal(z.shape)) / np.sqrt(1 + sigma**2)

    return _grades(z, cuts), _grades(w, cuts)


def sample_labels(
    rng: np.random.Generator,
    n_studies: int,
    class_shares: dict[str, tuple[float, float, float]] | None = None,
    blank_rate: float = 0.02,
    label_noise: float = 0.04,
    correlated: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(true, written) severities, shape (n_studies, 25) in train.csv column order.

    ``true`` drives the anatomy; ``written`` is what train.csv says: mostly equal, an
    adjacent class with probability about ``label_noise``, -1 (blank) with ``blank_rate``.
    Blanks fall mostly on subarticular L1/L2 and L2/L3, as in the real file.
    ``correlated``: written grades correlated across levels and conditions like the real file,
    true and written both with the real per-level shares (or ``class_shares`` at every level
    when given); otherwise each true cell is drawn on its own with its category's share and
    ``label_noise`` of the written ones are moved to an adjacent class.
    """
    if correlated:
        true, written = _correlated(rng, n_studies, class_shares, label_noise)
    else:
        shares = class_shares or REAL_CLASS_SHARES
        true = np.empty((n_studies, len(CELLS)), dtype=np.int8)
        for j, (_, cat, _, _) in enumerate(CELLS):
            p = np.asarray(shares[cat], dtype=float)
            true[:, j] = rng.choice(3, size=n_studies, p=p / p.sum())
        written = true.copy()
        flip = rng.random(true.shape) < label_noise
        step = np.where(rng.random(true.shape) < 0.5, -1, 1)
        step = np.where(true == 0, 1, np.where(true == 2, -1, step))
        written[flip] = (true + step)[flip]
    # Blank cells: weight subarticular upper levels 6x.
    weights = np.array(
        [6.0 if cat == "sbs" and level in ("L1/L2", "L2/L3") else 1.0 for (_, cat, _, level) in CELLS]
    )
    p_blank = np.clip(blank_rate * weights / weights.mean(), 0, 1)
    written[rng.random(true.shape) < p_blank[None, :]] = -1
    return true, written


def correlation_summary(grades: np.ndarray) -> dict[str, float]:
    """The REAL_GRADE_CORRELATIONS summaries of a (studies, 25) grade table (blank = -1 or NaN)."""
    g = np.where(np.asarray(grades, float) < 0, np.nan, np.asarray(grades, float))
    ok = ~np.isnan(g)
    corr = np.full((g.shape[1], g.shape[1]), np.nan)
    for i in range(g.shape[1]):
        for j in range(i + 1, g.shape[1]):
            both = ok[:, i] & ok[:, j]
            a, b = g[both, i], g[both, j]
            if a.std() > 0 and b.std() > 0:
                corr[i, j] = corr[j, i] = float(np.corrcoef(a, b)[0, 1])

    def col(cat: str, side: str | None, level: int) -> int:
        return next(
            j for j, (_, c, s, lv) in enumerate(CELLS) if c == cat and s == side and LEVELS.index(lv) == level
        )

    sides = {"scs": (None,), "nfs": ("left", "right"), "sbs": ("left", "right")}

    def mean(pairs) -> float:
        return float(np.nanmean([corr[a, b] for a, b in pairs]))

    out: dict[str, float] = {}
    for cat in CATEGORIES:
        cols = [[col(cat, s, lv) for lv in range(5)] for s in sides[cat]]
        out[f"{cat} adjacent levels"] = mean([(c[a], c[a + 1]) for c in cols for a in range(4)])
        out[f"{cat} levels 2+ apart"] = mean(
            [(c[a], c[b]) for c in cols for a in range(5) for b in range(a + 2, 5)]
        )
    for cat in ("nfs", "sbs"):
        out[f"{cat} left-right same level"] = mean(
            [(col(cat, "left", lv), col(cat, "right", lv)) for lv in range(5)]
        )
    for x, y in (("scs", "nfs"), ("scs", "sbs"), ("nfs", "sbs")):
        pairs = [
            ((col(x, sx, a), col(y, sy, b)), a == b)
            for sx in sides[x]
            for sy in sides[y]
            for a in range(5)
            for b in range(5)
        ]
        out[f"{x}-{y} same level"] = mean([p for p, same in pairs if same])
        out[f"{x}-{y} other levels"] = mean([p for p, same in pairs if not same])
    return out
