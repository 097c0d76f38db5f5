"""Distillation inside fit: the loss it minimises, what it trains, and how it composes."""

import keras
import numpy as np
import pytest

import tfprune


def classifier(name, softmax=False, width=8):
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(width, activation="relu", name="fc"),
            keras.layers.Dense(3, activation="softmax" if softmax else None, name="head"),
        ],
        name=name,
    )


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.random((32, 6), dtype=np.float32), rng.integers(0, 3, 32)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("teacher_softmax", [False, True])
def test_the_soft_term_is_hintons_scaled_kl_divergence(batch, teacher_softmax):
    x, _ = batch
    keras.utils.set_random_seed(1)
    student, teacher = classifier("student"), classifier("teacher", softmax=teacher_softmax)
    trainer = tfprune.methods.Distillation(student, teacher, temperature=3.0, alpha=0.25)
    teacher_scores = np.asarray(teacher(x))
    if teacher_softmax:
        teacher_scores = np.log(teacher_scores)
    p = log_softmax(teacher_scores / 3.0)
    q = log_softmax(np.asarray(student(x)) / 3.0)
    expected = 9.0 * np.mean(np.sum(np.exp(p) * (p - q), axis=1))
    assert float(trainer.distillation_loss(x, student(x))) == pytest.approx(expected, rel=1e-5)
    blended = trainer.blend_loss(x, student(x), keras.ops.convert_to_tensor(2.0))
    assert float(blended) == pytest.approx(0.75 * 2.0 + 0.25 * expected, rel=1e-5)


def test_alpha_zero_trains_exactly_as_the_labels_alone(batch):
    x, y = batch
    keras.utils.set_random_seed(2)
    student, teacher = classifier("student"), classifier("teacher")
    twin = keras.models.clone_model(student)
    twin.set_weights(student.get_weights())
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trainer = tfprune.methods.Distillation(student, teacher, alpha=0.0)
    trainer.compile(keras.optimizers.SGD(0.1), loss)
    twin.compile(keras.optimizers.SGD(0.1), loss)
    trainer.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    twin.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(student.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_distillation_prunes_logs_trains_only_the_student_and_saves(batch, tmp_path):
    x, y = batch
    keras.utils.set_random_seed(3)
    teacher = classifier("teacher", width=16)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    pruned = tfprune.prune(classifier("student", width=16), schedule=tfprune.OneShot(0.5))
    trainer = tfprune.methods.Distillation(pruned, teacher, temperature=2.0, alpha=1.0)
    trainer.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trainer.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[tfprune.PruningCallback(), keras.callbacks.CSVLogger(tmp_path / "log.csv")],
    )
    logged = history.history
    assert logged["sparsity"][-1] == pytest.approx(0.5)
    # alpha 1: the loss is the distillation term alone, and it falls as the student learns.
    np.testing.assert_allclose(logged["loss"], logged["distillation_loss"], rtol=1e-5)
    assert logged["distillation_loss"][-1] < logged["distillation_loss"][0]
    assert "distillation_loss" in (tmp_path / "log.csv").read_text().splitlines()[0]
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    tfprune.save_model(trainer, tmp_path / "trainer.keras")
    restored = keras.saving.load_model(tmp_path / "trainer.keras")
    assert (restored.temperature, restored.alpha) == (2.0, 1.0)
    np.testing.assert_allclose(restored(x), trainer(x), atol=1e-6)
    np.testing.assert_allclose(restored.teacher(x), teacher(x), atol=1e-6)
    assert not restored.teacher.trainable_weights and teacher.trainable  # the copy is frozen


def test_adversarial_training_around_distillation_distils_both_terms(batch):
    x, y = batch
    keras.utils.set_random_seed(4)
    teacher = classifier("teacher")
    pruned = tfprune.prune(classifier("student"), schedule=tfprune.OneShot(0.5))
    distillation = tfprune.methods.Distillation(pruned, teacher, alpha=0.5)
    trainer = tfprune.AdversarialTraining(distillation, tfprune.FGSM(eps=0.05), weight=0.5)
    trainer.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trainer.fit(
        x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()]
    )
    assert history.history["sparsity"][-1] == pytest.approx(0.5)
    # The inner model's soft term is logged: it blended it into the clean and adversarial loss.
    assert np.all(np.asarray(history.history["distillation_loss"]) > 0)


def test_bad_arguments_are_named(batch):
    student, teacher = classifier("student"), classifier("teacher")
    with pytest.raises(ValueError, match="temperature"):
        tfprune.methods.Distillation(student, teacher, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        tfprune.methods.Distillation(student, teacher, alpha=1.5)
    with pytest.raises(TypeError, match="teacher must be a keras.Model"):
        tfprune.methods.Distillation(student, "teacher")
    with pytest.raises(ValueError, match="PruneWrapper.*strip"):
        tfprune.methods.Distillation(student, tfprune.prune(teacher))
    four = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)], name="four")
    with pytest.raises(ValueError, match="3 classes and teacher 'four' 4"):
        tfprune.methods.Distillation(student, four)
