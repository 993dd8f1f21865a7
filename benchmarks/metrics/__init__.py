"""Metrics of generated video sets: Fréchet distance (FID/FVD), KID, and bootstrap intervals.

Each metric is mergeable sufficient statistics (:class:`FeatureStats`) plus pure functions
(:func:`frechet_distance`, :func:`kid`), with a thin stateful class where useful (:class:`FrechetDistance`).
Feature extractors (Inception, I3D, CLIP) and protocols live elsewhere; everything here takes feature
matrices [N, d] or their statistics, as numpy arrays or torch tensors, and computes in float64.
"""
from benchmarks.metrics.bootstrap import bootstrap_frechet, bootstrap_mean, interval
from benchmarks.metrics.frechet import (FrechetDistance, MatrixRoot, RankDeficientWarning, frechet_distance,
                                        matrix_root, matrix_sqrt_psd, trace_sqrt_product)
from benchmarks.metrics.kid import kid, kid_per_subset, kid_subset_indices
from benchmarks.metrics.stats import FeatureStats

__all__ = ["FeatureStats", "FrechetDistance", "MatrixRoot", "RankDeficientWarning", "bootstrap_frechet",
           "bootstrap_mean", "frechet_distance", "interval", "kid", "kid_per_subset", "kid_subset_indices",
           "matrix_root", "matrix_sqrt_psd", "trace_sqrt_product"]
