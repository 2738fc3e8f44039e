"""Slice discovery, the algorithm only: where, among the evaluation samples, a model's per-sample error
concentrates. Pure functions over arrays; the I/O (models, data files, budgets) is discover.py's.

Failures: a kind whose per-sample error is 0/1 (classification, indices) fails where it is 1; a
continuous error (embedding 1 - cosine, dense mean |error|, sequence disagreement share) fails above its
90th percentile, so about a tenth of the samples fail by construction and a slice is significant when
it holds more of them than chance.

Candidates, from four sources:
  - metadata: per-sample columns of the data file (categorical, or numeric in quantile bins); SliceLine
    (the `sliceline` package) searches conjunctions of up to `max_l` conditions;
  - clusters: k-means (seeded) of the reference's own outputs (logits standardized, embeddings by
    direction), reduced to at most 32 dimensions by PCA, every node of the Ward tree over the clusters'
    centres, and for embeddings k-means again at coarser resolutions (a group one partition cuts is whole
    in another);
  - confidence: bands (deciles) of the reference's top-1 minus top-2 probability (class scores only);
  - labels: each label, and each class the reference predicts.
Each candidate is tested with a one-sided Fisher exact test (hypergeometric: more failures in the slice
than the rest predicts) and the p-values are corrected with Holm over every hypothesis searched: for
metadata, every conjunction SliceLine could have returned (not only the ones it did), so picking the best
of many cannot pass for a finding. Slices below `min_size` samples, or above half the data, are counted
and not tested.
"""

from __future__ import annotations

import itertools
import math
import re
import time
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .result import FoundSlice, SliceDiscovery

CONTINUOUS_QUANTILE = 0.9
NOISE_FLOOR = 1e-5  # a continuous error below this is float32 rounding, never a failure
MAX_CATEGORIES = 50  # a column with more distinct values is an identifier, not a group
JACCARD_SAME = 0.5
SOURCES = ("metadata", "clusters", "confidence", "labels")


@dataclass
class Candidate:
    name: str
    source: str
    description: str
    mask: np.ndarray
    typical: list[int] = field(default_factory=list)


@dataclass
class Searched:
    candidates: list[Candidate]
    hypotheses: int
    note: str


def failures_of(errors: np.ndarray, above: float | None = None) -> tuple[np.ndarray, str]:
    """(which samples fail, the rule in words). `above`: a stated threshold for a continuous error;
    by default its 90th percentile, never below NOISE_FLOOR (an artifact equal to its float model up to
    rounding would otherwise 'fail' on a tenth of its samples)."""
    errors = np.asarray(errors, np.float64)
    if above is None and np.isin(errors, (0.0, 1.0)).all():
        return errors == 1.0, "the kind's 0/1 error: 1 fails"
    if above is not None:
        return errors > above, f"error above {above:g} (stated)"
    threshold = float(np.quantile(errors, CONTINUOUS_QUANTILE))
    if threshold < NOISE_FLOOR:
        return errors > NOISE_FLOOR, f"error above {NOISE_FLOOR:g} (its {CONTINUOUS_QUANTILE:.0%} quantile, " \
                                     f"{threshold:.3g}, is rounding)"
    return errors > threshold, f"error above its {CONTINUOUS_QUANTILE:.0%} quantile ({threshold:.4g})"


def safe_name(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", text)).strip("_")[:60] or "slice"


def encode_column(name: str, values: np.ndarray, bins: int) -> tuple[np.ndarray, list[str]] | str:
    """(integer code per sample, a condition in words per code), or why the column is not used."""
    values = np.asarray(values)
    if values.ndim != 1:
        return "not one value per sample"
    if values.dtype.kind in "fiu" and len(np.unique(values)) > bins:
        edges = np.unique(np.quantile(values.astype(np.float64), np.linspace(0, 1, bins + 1)[1:-1]))
        codes = np.searchsorted(edges, values, side="right")
        bounds = [-np.inf, *edges, np.inf]
        return codes, [_interval(name, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    uniques, codes = np.unique(values.astype(str), return_inverse=True)
    if len(uniques) > MAX_CATEGORIES:
        return f"{len(uniques)} distinct values: an identifier, not a group"
    return codes, [f"{name} = {u}" for u in uniques]


def _interval(name: str, lo: float, hi: float) -> str:
    if lo == -np.inf:
        return f"{name} < {hi:.4g}"
    return f"{name} >= {lo:.4g}" if hi == np.inf else f"{lo:.4g} <= {name} < {hi:.4g}"


def conjunctions(cardinalities: list[int], max_l: int) -> int:
    """How many slices of up to max_l conditions (one value per column) the columns admit."""
    return sum(math.prod(c) for level in range(1, max_l + 1) for c in itertools.combinations(cardinalities, level))


def metadata_candidates(columns: dict[str, np.ndarray], failed: np.ndarray, *, min_size: int, bins: int = 4,
                        max_l: int = 2, top_k: int = 8) -> Searched:
    """SliceLine over the metadata columns; every conjunction it could return counts as a hypothesis."""
    from sliceline.slicefinder import Slicefinder

    codes, words, skipped = [], [], []
    for name, values in columns.items():
        encoded = encode_column(name, values, bins)
        if isinstance(encoded, str):
            skipped.append(f"{name}: {encoded}")
            continue
        codes.append(encoded[0])
        words.append(encoded[1])
    if not codes:
        return Searched([], 0, "no usable metadata columns" + (f" ({'; '.join(skipped)})" if skipped else ""))
    hypotheses = conjunctions([len(w) for w in words], max_l)
    note = f"{len(codes)} column(s), conjunctions of up to {max_l}: {hypotheses} possible slices"
    note += f"; skipped {'; '.join(skipped)}" if skipped else ""
    if not failed.any():
        return Searched([], hypotheses, note)
    matrix = np.stack(codes, axis=1)
    finder = Slicefinder(alpha=0.95, k=top_k, max_l=min(max_l, matrix.shape[1]), min_sup=min_size, verbose=False)
    finder.fit(matrix, failed.astype(np.float64))
    out = []
    for row in finder.top_slices_:
        mask = np.ones(len(failed), bool)
        parts = []
        for column, value in enumerate(row):
            if value is not None:
                mask &= matrix[:, column] == int(value)
                parts.append(words[column][int(value)])
        if parts:
            out.append(Candidate("meta_" + safe_name("_and_".join(parts)), "metadata", " and ".join(parts), mask))
    return Searched(out, hypotheses, note)


RESOLUTIONS = (1.0, 0.8, 0.65, 0.5)  # embeddings: k-means at these shares of the finest k. A group a little
# larger than one cell (MiniLM's 23 planted texts among 428, cells of about 20) is cut by one partition and
# whole in another. Not for logits: there a coarser partition cuts a class by its margin, and on the planted
# Fashion-MNIST data a sub-group (26 of the 30 failing Trousers in 47) outranked the class itself.


def cluster_features(features: np.ndarray, seed: int, dims: int = 32, cosine: bool = False) -> np.ndarray:
    """The reference's outputs per sample, reduced by PCA to at most `dims` dimensions: standardized
    per dimension (logits), or with `cosine` each row scaled to length 1 first (embeddings: the
    geometry their kind's error and their users' search measure; standardizing would weigh the
    near-constant dimensions as much as the meaningful ones)."""
    x = np.asarray(features, np.float64).reshape(len(features), -1)
    if cosine:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        x = x - x.mean(axis=0)
    else:
        x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    if x.shape[1] > dims:
        from sklearn.decomposition import PCA

        x = PCA(dims, random_state=seed).fit_transform(x)
    return x


def cluster_candidates(features: np.ndarray, *, seed: int, min_size: int, k: int = 32, cosine: bool = False,
                       composition: np.ndarray | None = None, names: list[str] | None = None) -> Searched:
    """k-means (seeded) of the reference's outputs into at most `k` clusters, and the tree that Ward
    linkage of their centres builds over them: every node (a cluster, or clusters merged) is a candidate,
    so a group k-means splits in two is still one candidate. For embeddings (`cosine`), k-means again at
    coarser resolutions (RESOLUTIONS), each cluster a candidate: a group the finest partition cuts across
    two cells is whole in one of them. `composition`: a class per sample (the reference's top-1), to say what a node holds."""
    from scipy.cluster.hierarchy import linkage
    from sklearn.cluster import KMeans

    x = cluster_features(features, seed, cosine=cosine)
    k = min(k, len(x) // max(min_size, 1))
    if k < 2:
        return Searched([], 0, "too few samples to cluster")
    model = KMeans(k, n_init=2, random_state=seed).fit(x)
    nodes = [(f"cluster {c} of {k}", model.labels_ == c) for c in range(k)]
    leaves = [[c] for c in range(k)]
    for left, right, *_ in linkage(model.cluster_centers_, method="ward"):
        leaves.append(leaves[int(left)] + leaves[int(right)])
        merged = sorted(leaves[-1])
        nodes.append((f"clusters {', '.join(map(str, merged))} of {k}", np.isin(model.labels_, merged)))
    nodes.pop()  # the root is every sample
    coarser = sorted({round(k * r) for r in RESOLUTIONS if 2 <= round(k * r) < k}, reverse=True) if cosine else []
    for kk in coarser:
        labels = KMeans(kk, n_init=2, random_state=seed).fit(x).labels_
        nodes += [(f"cluster {c} of {kk}", labels == c) for c in range(kk)]
    out = []
    for i, (which, mask) in enumerate(nodes):
        members = np.flatnonzero(mask)
        centre = x[members].mean(axis=0)
        typical = [int(j) for j in members[np.argsort(np.linalg.norm(x[members] - centre, axis=1), kind="stable")[:5]]]
        words = f"{which} over the reference's outputs; most typical samples #" + ", #".join(map(str, typical))
        out.append(Candidate(f"cluster{i}", "cluster", words + _composition(composition, names, members), mask, typical))
    note = (f"k-means (seed {seed}{', cosine' if cosine else ''}) into {k} clusters, the {k - 2} merges of Ward linkage "
            f"over their centres" + (f", and k-means into {', '.join(map(str, coarser))} clusters" if coarser else ""))
    return Searched(out, len(out), note)


def _composition(classes: np.ndarray | None, names: list[str] | None, members: np.ndarray) -> str:
    if classes is None or not len(members):
        return ""
    counts = np.bincount(classes[members])
    top = int(counts.argmax())
    return f"; reference top-1 {counts[top] / len(members):.0%} {_class_name(top, names)}"


def _class_name(c: int, names: list[str] | None) -> str:
    return names[c] if names and 0 <= c < len(names) else str(c)


def confidence_candidates(margin: np.ndarray, bands: int = 10) -> Searched:
    """Quantile bands of the reference's margin (top-1 minus top-2 probability)."""
    edges = np.unique(np.quantile(margin, np.linspace(0, 1, bands + 1)[1:-1]))
    band = np.searchsorted(edges, margin, side="right")
    bounds = [float(margin.min()), *edges, float(margin.max())]
    out = [Candidate(f"margin_band{b}", "confidence",
                     f"reference margin (top-1 minus top-2 probability) in [{bounds[b]:.3g}, {bounds[b + 1]:.3g}]",
                     band == b) for b in range(len(edges) + 1)]
    return Searched(out, len(out), f"{len(out)} quantile bands of the reference's margin")


def class_candidates(values: np.ndarray, prefix: str, what: str, names: list[str] | None) -> Searched:
    out = [Candidate(f"{prefix}_{safe_name(_class_name(int(c), names))}", "label",
                     f"{what} = {_class_name(int(c), names)}", values == c) for c in np.unique(values)]
    return Searched(out, len(out), f"{len(out)} values of the {what}")


def log_p_values(masks: list[np.ndarray], failed: np.ndarray) -> np.ndarray:
    """Natural log of each one-sided Fisher exact p-value: P(X >= failures in the slice), X hypergeometric."""
    from scipy.stats import hypergeom

    n, total = len(failed), int(failed.sum())
    sizes = np.array([int(m.sum()) for m in masks])
    hits = np.array([int(failed[m].sum()) for m in masks])
    return np.minimum(hypergeom.logsf(hits - 1, n, total, sizes), 0.0)


def holm(log_p: np.ndarray, hypotheses: int) -> np.ndarray:
    """Holm-adjusted p-values (step-down) of the tested hypotheses, `hypotheses` in all (the untested
    ones count as p = 1: they come last and change nothing above them)."""
    order = np.argsort(log_p, kind="stable")
    factors = np.log(np.maximum(hypotheses - np.arange(len(log_p)), 1))
    adjusted = np.minimum(np.maximum.accumulate(log_p[order] + factors), 0.0)
    out = np.empty(len(log_p))
    out[order] = np.exp(adjusted)
    return out


def rank_candidates(found: list[Candidate], errors: np.ndarray, failed: np.ndarray, *, hypotheses: int, alpha: float,
                    min_size: int, max_proposals: int = 5) -> list[FoundSlice]:
    """Every candidate of testable size, tested and ranked (smallest adjusted p first, then the larger
    failure rate); the significant ones that are not the same samples as a better one are proposed."""
    n = len(failed)
    unique = {c.name: c for c in found if min_size <= c.mask.sum() <= n // 2}
    tested = list(unique.values())
    if not tested:
        return []
    log_p = log_p_values([c.mask for c in tested], failed)
    adjusted = holm(log_p, hypotheses)
    rows = []
    for c, lp, adj in zip(tested, log_p, adjusted):
        rest = ~c.mask
        rows.append(FoundSlice(
            c.name, c.source, c.description, int(c.mask.sum()), int(failed[c.mask].sum()),
            round(float(failed[c.mask].mean()), 6), round(float(failed[rest].mean()), 6),
            round(float(errors[c.mask].mean()), 6), round(float(errors[rest].mean()), 6),
            float(np.exp(lp)), float(adj), bool(adj <= alpha), typical=c.typical))
    masks = {c.name: c.mask for c in tested}
    rows.sort(key=lambda r: (r.p_adjusted, -r.error_rate, r.name))
    chosen: list[str] = []
    for rank, row in enumerate(rows, 1):
        row.rank = rank
        if row.significant and len(chosen) < max_proposals:
            row.same_as = _explained_by(row, masks, chosen, failed, alpha)
            row.proposed = not row.same_as
            chosen += [row.name] if row.proposed else []
    return rows


def _explained_by(row: FoundSlice, masks: dict, chosen: list[str], failed: np.ndarray, alpha: float) -> str:
    """The proposed slice that explains this one: mostly the same samples (Jaccard >= 0.5), or, with
    the proposed slices' samples left out, no longer significant (at its own correction factor): a
    slice that holds a found one is not a finding of its own."""
    mask = masks[row.name]
    if not chosen:
        return ""
    overlaps = {p: _jaccard(masks[p], mask) for p in chosen}
    best = max(overlaps, key=overlaps.__getitem__)
    if overlaps[best] >= JACCARD_SAME:
        return best
    covered = np.logical_or.reduce([masks[p] for p in chosen])
    keep = ~covered
    if (mask & keep).sum() == 0:
        return best
    factor = row.p_adjusted / max(row.p_value, 1e-300)
    residual = float(np.exp(log_p_values([mask[keep]], failed[keep])[0]))
    covering = max(chosen, key=lambda p: (masks[p] & mask).sum())
    return "" if min(1.0, residual * factor) <= alpha else covering


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@dataclass
class Evidence:
    """What discovery looks at, per evaluation sample (every array one value, or row, per sample)."""

    errors: np.ndarray  # the output kind's per-sample error of the subject against the reference
    features: np.ndarray | None = None  # the reference's outputs (logits, embeddings): clustered
    probabilities: np.ndarray | None = None  # the reference's class probabilities: its margin's bands
    labels: np.ndarray | None = None
    predicted: np.ndarray | None = None  # the reference's top-1 class
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # metadata
    class_names: list[str] | None = None
    cosine: bool = False  # the features are embeddings: clustered by direction (cluster_features)


@dataclass
class Settings:
    seed: int = 0
    alpha: float = 0.01  # family-wise, over every hypothesis searched
    min_size: int = 20
    clusters: int = 32
    bins: int = 4
    max_l: int = 2
    max_proposals: int = 5
    fail_above: float | None = None  # a continuous error's failure threshold (default: failures_of's)
    sources: tuple[str, ...] = SOURCES  # which of them to search


def null_rate(evidence: Evidence, settings: Settings, seeds: int) -> tuple[int, float]:
    """The search's false-positive rate on this very data: with the errors shuffled (so no slice is real),
    in how many of `seeds` shuffles does it find a significant slice; and the smallest adjusted p seen."""
    hits, smallest = 0, 1.0
    for seed in range(seeds):
        shuffled = dataclasses.replace(evidence, errors=np.random.default_rng(seed).permutation(evidence.errors))
        rows = search(shuffled, dataclasses.replace(settings, seed=settings.seed + seed))[0]
        hits += any(r.significant for r in rows)
        smallest = min([smallest] + [r.p_adjusted for r in rows])
    return hits, smallest


def search(evidence: Evidence, settings: Settings = Settings()) -> tuple[list[FoundSlice], dict, dict, str, int, int]:
    """(ranked slices, the proposed slices' masks, what each source searched, the failure rule, failures,
    hypotheses in all)."""
    errors = np.asarray(evidence.errors, np.float64)
    failed, rule = failures_of(errors, settings.fail_above)
    s = settings
    sources: dict[str, Searched] = {}
    if evidence.columns and "metadata" in s.sources:
        sources["metadata"] = metadata_candidates(evidence.columns, failed, min_size=s.min_size, bins=s.bins,
                                                  max_l=s.max_l)
    if evidence.features is not None and "clusters" in s.sources:
        sources["clusters"] = cluster_candidates(evidence.features, seed=s.seed, min_size=s.min_size, k=s.clusters,
                                                 cosine=evidence.cosine, composition=evidence.predicted,
                                                 names=evidence.class_names)
    if evidence.probabilities is not None and "confidence" in s.sources:
        top2 = np.sort(np.asarray(evidence.probabilities, np.float64), axis=1)[:, -2:]
        sources["confidence"] = confidence_candidates(top2[:, 1] - top2[:, 0])
    labelled = [(evidence.labels, "label", "label"), (evidence.predicted, "ref_top1", "reference's top-1 class")]
    for values, prefix, what in labelled:
        if values is not None and "labels" in s.sources:
            sources[prefix] = class_candidates(np.asarray(values), prefix, what, evidence.class_names)
    hypotheses = sum(x.hypotheses for x in sources.values())
    found = [c for x in sources.values() for c in x.candidates]
    rows = rank_candidates(found, errors, failed, hypotheses=hypotheses, alpha=s.alpha, min_size=s.min_size,
                           max_proposals=s.max_proposals)
    proposed = {r.name for r in rows if r.proposed}
    masks = {c.name: c.mask for c in found if c.name in proposed}
    return rows, masks, {k: v.note for k, v in sources.items()}, rule, int(failed.sum()), hypotheses


def discover(evidence: Evidence, settings: Settings = Settings(), **who) -> tuple[SliceDiscovery, dict]:
    """The search, timed, as the result the reports render, and the proposed slices' masks by name.
    `who`: subject, reference, output, kind."""
    import scipy.stats  # noqa: F401 - imported before the clock starts: the time is the search's own
    import sklearn.cluster  # noqa: F401
    import sliceline.slicefinder  # noqa: F401

    start = time.perf_counter()
    who = {"subject": "", "reference": "", "output": "", "kind": "", **who}
    rows, masks, searched, rule, failures, hypotheses = search(evidence, settings)
    return SliceDiscovery(samples=len(evidence.errors), failure_rule=rule, failures=failures, alpha=settings.alpha,
                          correction="Holm over every hypothesis searched, one-sided Fisher exact test",
                          hypotheses=hypotheses, min_size=settings.min_size, seed=settings.seed,
                          seconds=round(time.perf_counter() - start, 3), searched=searched, candidates=rows, **who), masks

