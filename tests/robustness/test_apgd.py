"""APGD: its checkpoints, its budget, and that it is never weaker than PGD on a robust net."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.robustness.apgd import checkpoints, per_example_loss
from tfprune.zoo import digits_cnn

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_apgd")


def test_checkpoints_follow_the_papers_schedule():
    # p0 = 0, p1 = 0.22, p(j+1) = p(j) + max(p(j) - p(j-1) - 0.03, 0.06), at ceil(p * steps).
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9]
    assert checkpoints(1) == [0]


@pytest.fixture(scope="module")
def robust_cnn(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    trainer = tfprune.AdversarialTraining(model, tfprune.FGSM(eps=0.1), weight=0.5)
    trainer.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    trainer.fit(x[:800], y[:800], batch_size=32, epochs=3, verbose=0)
    return model


def test_apgd_stays_in_its_ball_and_raises_the_loss(robust_cnn, digits):
    _, _, x, y = digits
    for loss in ("ce", "dlr"):
        x_adv = tfprune.APGD(eps=0.1, steps=10, loss=loss)(robust_cnn, x, y).numpy()
        assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        before = per_example_loss(robust_cnn, x, y.astype("int32"), "probabilities", loss)
        after = per_example_loss(robust_cnn, x_adv, y.astype("int32"), "probabilities", loss)
        assert float(np.mean(after)) > float(np.mean(before))
    np.testing.assert_array_equal(tfprune.APGD(eps=0.0)(robust_cnn, x, y).numpy(), x)


def test_apgd_is_never_weaker_than_pgd_and_the_worst_case_is_the_lowest(robust_cnn, digits):
    _, _, x, y = digits
    pgd = tfprune.PGD(eps=0.1, steps=10)
    apgd_ce = tfprune.APGD(eps=0.1, steps=10, restarts=2)
    apgd_dlr = tfprune.APGD(eps=0.1, steps=10, loss="dlr")
    accuracy = {
        name: tfprune.robust_accuracy(robust_cnn, x, y, attack)
        for name, attack in (("clean", None), ("pgd", pgd), ("ce", apgd_ce), ("dlr", apgd_dlr))
    }
    assert accuracy["pgd"] < accuracy["clean"]
    assert accuracy["ce"] <= accuracy["pgd"]
    worst = tfprune.robust_accuracy(robust_cnn, x, y, [pgd, apgd_ce, apgd_dlr])
    assert worst <= min(accuracy["pgd"], accuracy["ce"], accuracy["dlr"])


def test_apgd_arguments_are_checked_and_it_saves(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        tfprune.APGD(steps=0)
    with pytest.raises(ValueError, match="loss"):
        tfprune.APGD(loss="hinge")
    two_classes = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x, y = np.random.rand(4, 4).astype("float32"), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="3 classes"):
        tfprune.APGD(loss="dlr", steps=2)(two_classes, x, y)
    with pytest.raises(ValueError, match="empty list"):
        tfprune.robust_accuracy(two_classes, x, y, [])
    attack = tfprune.APGD(eps=0.2, steps=7, restarts=3, loss="dlr", seed=5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack))
    assert restored.get_config() == attack.get_config()
