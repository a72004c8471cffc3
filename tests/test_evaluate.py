import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from digitlab.evaluate import classification_metrics, confusion_matrix, evaluate


def test_confusion_matrix_by_hand():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], n_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 9, 300)  # class 9 never occurs
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 10, 300))
    y_pred[y_pred == 4] = 5  # class 4 is never predicted
    m = classification_metrics(y_true, y_pred)
    labels = list(range(10))
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                    zero_division=0)
    np.testing.assert_allclose(m.precision, p)
    np.testing.assert_allclose(m.recall, r)
    np.testing.assert_allclose(m.f1, f)
    assert m.support == s.tolist()
    assert m.confusion == sk.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert m.accuracy == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert m.n == 300


def test_evaluate_a_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    images = np.random.default_rng(0).random((50, 2, 2), dtype=np.float32)
    logits = model(torch.as_tensor(images))
    labels = logits.argmax(1).numpy().copy()
    labels[:10] = (labels[:10] + 1) % 10  # exactly 10 wrong
    m, proba = evaluate(model, images, labels)
    assert m.accuracy == pytest.approx(0.8)
    assert proba.shape == (50, 10) and np.allclose(proba.sum(1), 1, atol=1e-6)
    expected = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels)).item()
    assert m.loss == pytest.approx(expected, rel=1e-5)
