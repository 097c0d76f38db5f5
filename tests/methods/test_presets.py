"""The IPLT and PFWT schedule presets."""

import keras
import pytest

import tfprune


def test_presets_are_equal_steps_at_the_right_epochs():
    iplt = tfprune.methods.iplt(0.6, pretrain_epochs=2, prune_epochs=3)
    assert iplt.epochs == [2, 3, 4] and iplt.targets == pytest.approx([0.2, 0.4, 0.6])
    assert iplt(step=0, epoch=1, epoch_start=True) is None and iplt(
        step=50, epoch=3, epoch_start=True
    ) == pytest.approx(0.4)
    pfwt = tfprune.methods.pfwt(0.5, every=3, events=2, first_epoch=1)
    assert pfwt.epochs == [1, 4] and pfwt.final_target == 0.5
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pfwt))
    assert restored.targets == pfwt.targets
    with pytest.raises(ValueError):
        tfprune.methods.iplt(1.2)
