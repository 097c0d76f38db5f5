"""fit_with_rebuilds: training on a smaller model after each event, the optimizer carried."""

import keras
import numpy as np
import pytest

import tfprune

LOSS = "sparse_categorical_crossentropy"


def test_pfwt_rebuild_keeps_training_on_a_smaller_model():
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), _ = load_digits()
    x, y = x[:512], y[:512]
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    result = tfprune.methods.fit_with_rebuilds(
        model,
        tfprune.methods.pfwt(0.5, every=2, events=2, first_epoch=1),
        compile=lambda m: m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy"),
        x=x,
        y=y,
        epochs=5,
        batch_size=32,
        verbose=0,
    )
    losses = result.history["loss"]
    assert [r["epoch"] for r in result.rebuilds] == [1, 3]
    assert all(r["max_abs_diff"] <= 1e-5 for r in result.rebuilds)
    params = [r["params"] for r in result.rebuilds]
    assert params[0] < model.count_params() and params[1] < params[0]
    # Loss keeps falling after each rebuild: the epoch after a rebuild ends lower than it began.
    for rebuild in result.rebuilds:
        assert losses[rebuild["epoch"] + 1] < losses[rebuild["epoch"]]
    assert losses[-1] < losses[0]
    assert not tfprune.wrappers_of(result.model) and result.model.count_params() == params[-1]
    with pytest.raises(TypeError, match="epoch schedule"):
        tfprune.methods.fit_with_rebuilds(
            model, tfprune.OneShot(0.5), compile=lambda m: None, x=x, y=y
        )


@pytest.mark.slow  # 20 s, in `make test-all`; rebuilding during training stays in `make test`
def test_pfwt_rebuild_carries_the_optimizer_so_training_goes_on_as_if_masked():
    """After a rebuild, Adam's step count and moments (cut like the weights) carry over, so
    the shrunk model trains exactly as the masked model would have; a fresh optimizer does not."""
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), _ = load_digits()
    x, y = x[:256], y[:256]

    def losses(**kwargs):
        keras.utils.set_random_seed(0)
        result = tfprune.methods.fit_with_rebuilds(
            digits_cnn(),
            tfprune.methods.pfwt(0.5, every=2, events=1, first_epoch=1),
            compile=lambda m: m.compile(keras.optimizers.Adam(3e-3), LOSS),
            x=x, y=y, epochs=3, batch_size=32, verbose=0, shuffle=False, **kwargs,
        )  # fmt: skip
        return np.array(result.history["loss"]), result.rebuilds

    masked, _ = losses(rebuild=False)
    carried, rebuilds = losses(rebuild=True)
    fresh, _ = losses(rebuild=True, carry_optimizer=False)
    assert rebuilds[0]["slots_carried"] > 0
    np.testing.assert_allclose(carried, masked, atol=1e-4)
    assert np.abs(fresh[1:] - masked[1:]).max() > 1e-3
