"""Speakers from voice embeddings: agglomerative clustering with average linkage on cosine distance.

Every embedding starts as its own cluster; the two closest clusters (by the mean distance between their members)
merge until the closest are farther apart than the threshold, then go on merging while there are more than
`max_clusters`, and stop at `min_clusters`; clusters too small to be a speaker then join their nearest neighbour
(MIN_CLUSTER_SIZE). Beyond MAX_CLUSTERED embeddings, an evenly spaced sample of them is clustered and every embedding
joins the cluster whose mean is nearest, so that time and memory stay bounded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

DISTANCE_THRESHOLD = 0.3
"""Cosine distance between two voices' clusters beyond which they are different speakers."""
MIN_CLUSTER_SIZE = 3
"""Windows a speaker needs (about 3 s of speech): a smaller cluster is mostly windows across a change of speaker,
whose voice is a mix of two, and joins the nearest large cluster."""
MAX_CLUSTERED = 1500
"""Embeddings clustered pairwise at most: a distance matrix of 18 MB."""


def cluster(
    embeddings: Array, threshold: float = DISTANCE_THRESHOLD, min_clusters: int = 1, max_clusters: int | None = None
) -> list[int]:
    """A cluster number for each L2-normalised embedding (rows), numbered in order of first appearance."""
    count = len(embeddings)
    if count <= MAX_CLUSTERED:
        labels = _agglomerate(embeddings, threshold, min_clusters, max_clusters)
    else:
        sample = np.linspace(0, count - 1, MAX_CLUSTERED).round().astype(int)
        found = np.array(_agglomerate(embeddings[sample], threshold, min_clusters, max_clusters))
        centroids = np.stack([_centroid(embeddings[sample[found == label]]) for label in np.unique(found)])
        labels = [int(label) for label in (embeddings @ centroids.T).argmax(axis=1)]
    return _numbered(_without_small_clusters(embeddings, labels, min_clusters))


def _centroid(embeddings: Array) -> Array:
    mean: Array = embeddings.mean(axis=0)
    normalised: Array = mean / np.linalg.norm(mean)
    return normalised


def _without_small_clusters(embeddings: Array, labels: list[int], min_clusters: int) -> list[int]:
    """Clusters of fewer than MIN_CLUSTER_SIZE members, smallest first, joined to the nearest large cluster while
    more than `min_clusters` remain."""
    sizes = Counter(labels)
    large = [label for label, size in sizes.items() if size >= MIN_CLUSTER_SIZE]
    small = sorted((label for label, size in sizes.items() if size < MIN_CLUSTER_SIZE), key=sizes.__getitem__)
    if not large:
        return labels
    chosen = np.array(labels)
    centroids = {label: _centroid(embeddings[chosen == label]) for label in large}
    for label in small[: max(0, len(sizes) - min_clusters)]:
        members = chosen == label
        centroid = _centroid(embeddings[members])
        chosen[members] = max(large, key=lambda big: float(centroid @ centroids[big]))
    return [int(label) for label in chosen]


def _agglomerate(embeddings: Array, threshold: float, min_clusters: int, max_clusters: int | None) -> list[int]:
    count = len(embeddings)
    distances = (1 - embeddings @ embeddings.T).astype(np.float64)
    np.fill_diagonal(distances, np.inf)
    sizes = np.ones(count)
    labels = list(range(count))
    clusters = count
    while clusters > max(min_clusters, 1):
        first, second = sorted(int(index) for index in np.unravel_index(np.argmin(distances), distances.shape))
        if distances[first, second] > threshold and (max_clusters is None or clusters <= max_clusters):
            break
        # Average linkage: the merged cluster's mean distance to each other cluster, weighted by their sizes.
        merged = (sizes[first] * distances[first] + sizes[second] * distances[second]) / (sizes[first] + sizes[second])
        distances[first], distances[:, first] = merged, merged
        distances[first, first] = np.inf
        distances[second], distances[:, second] = np.inf, np.inf
        sizes[first] += sizes[second]
        labels = [first if label == second else label for label in labels]
        clusters -= 1
    return labels


def _numbered(labels: list[Any]) -> list[int]:
    order: dict[Any, int] = {}
    return [order.setdefault(label, len(order)) for label in labels]
