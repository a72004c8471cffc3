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


def test_views_for_test_time_augmentation():
    from digitlab.augment import view
    x = torch.zeros(1, 28, 28)
    x[0, 13:15, 4:24] = 1.0  # a horizontal bar 20 px long
    assert torch.allclose(view(x), x, atol=1e-6)  # as is
    turned = view(x, turn=90.0)
    rows, cols = torch.nonzero(turned[0] > 0.5, as_tuple=True)
    assert cols.max() - cols.min() <= 2 and rows.max() - rows.min() >= 18  # now upright
    smaller, larger = view(x, size=0.5), view(x, size=1.2)
    length = lambda img: int((img[0].sum(0) > 0.25).sum())  # noqa: E731
    assert length(smaller) == pytest.approx(10, abs=1)
    assert length(larger) == pytest.approx(24, abs=1)


def test_evaluate_with_tta_averages_the_views():
    from digitlab.augment import view
    from digitlab.evaluate import TTA_VIEWS
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    images = np.random.default_rng(0).random((40, 8, 8), dtype=np.float32)
    labels = np.random.default_rng(1).integers(0, 10, 40)
    m, proba = evaluate(model, images, labels, tta=True)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(model(view(torch.as_tensor(images), t, s)), 1)
                                for t, s in TTA_VIEWS]).mean(0).numpy()
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert len(TTA_VIEWS) > 1 and not np.allclose(proba, evaluate(model, images, labels)[1])
    assert m.accuracy == pytest.approx((expected.argmax(1) == labels).mean())
    assert m.loss == pytest.approx(-np.log(expected[np.arange(40), labels]).mean(), rel=1e-5)


def test_the_help_names_the_views_used():
    from digitlab.cli import build_parser
    from digitlab.evaluate import TTA_VIEWS
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["evaluate"]
    text = next(a.help for a in sub._actions if a.dest == "tta")
    assert TTA_VIEWS == ((0.0, 1.0), (-4.0, 1.0), (0.0, 0.95))  # update the help with them
    assert "three views" in text and "turned 4 degrees, 5% smaller" in text.replace("%%", "%")
