import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from trading_assets.ml import metrics


def reference_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """torchmetrics' binning, written independently: bucketize on the bin edges, value 1.0 in a bin of its own."""
    conf, acc = torch.tensor(probs, dtype=torch.float64), torch.tensor(labels, dtype=torch.float64)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = torch.bucketize(conf, edges, right=True) - 1
    total = 0.0
    for b in index.unique():
        members = index == b
        total += (
            members.sum().item() / len(conf) * abs(conf[members].mean().item() - acc[members].mean().item())
        )
    return total


def test_ece_matches_torchmetrics_docstring_example():
    probs, labels = np.array([0.25, 0.25, 0.55, 0.75, 0.75]), np.array([0, 0, 1, 1, 1.0])
    assert metrics.expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.29, abs=1e-12)
    assert reference_ece(probs, labels, 2) == pytest.approx(0.29, abs=1e-12)


def test_ece_equals_independent_implementation_with_15_bins():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 0.999, 2000)
    labels = (rng.uniform(size=2000) < probs**2).astype(float)
    assert metrics.expected_calibration_error(probs, labels, 15) == pytest.approx(
        reference_ece(probs, labels, 15), abs=1e-12
    )


def test_reliability_table_counts_and_frequencies():
    table = metrics.reliability_table(np.array([0.1, 0.12, 0.9]), np.array([0, 1, 1.0]), n_bins=10)
    assert [(row["count"], row["observed_frequency"]) for row in table] == [(2, 0.5), (1, 1.0)]
    assert table[0]["mean_predicted"] == pytest.approx(0.11)


def test_classification_metrics_agree_with_sklearn():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=500)
    labels = (rng.uniform(size=500) < metrics.sigmoid(logits)).astype(float)
    result = metrics.classification_metrics(logits, labels)
    probs = metrics.sigmoid(logits)
    assert result["brier"] == pytest.approx(brier_score_loss(labels, probs))
    assert result["log_loss"] == pytest.approx(log_loss(labels, probs))
    assert result["log_loss"] == pytest.approx(metrics.bce_from_logits(logits, labels), rel=1e-6)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    assert tn + fp + fn + tp == result["samples"] == 500
    assert result["accuracy"] == pytest.approx((tn + tp) / 500)
    assert result["base_rate"] == pytest.approx(max(labels.mean(), 1 - labels.mean()))


def test_roc_auc_counts_tied_scores_half_as_scikit_learn_does():
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
    scores = np.array([0.1, 0.4, 0.4, 0.4, 0.9, 0.2, 0.2, 0.9])
    assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.roc_auc(labels, labels.astype(float)) == 1.0


def test_temperature_scaling_recovers_the_true_temperature():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=4.0, size=20_000)
    labels = (rng.uniform(size=logits.size) < metrics.sigmoid(logits / 2.0)).astype(float)
    assert metrics.fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.08)
