"""`UnevenBidirectional`: a concatenating Bidirectional layer whose directions differ in width.

Filter pruning removes a Bidirectional layer's forward and backward units independently
when `merge_mode="concat"`, since each direction writes channels of its own. Keras'
`Bidirectional` infers its output width as twice the forward layer's, so `shrink` puts
this layer where the two directions keep different unit counts.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfprune")
class UnevenBidirectional(keras.layers.Bidirectional):
    """`keras.layers.Bidirectional` with `merge_mode="concat"` and directions of any widths.

    It computes what `Bidirectional` computes (the forward outputs, then the backward ones,
    concatenated on the last axis; with `return_state`, the forward states then the backward
    states); only its shape inference adds the two widths instead of doubling the forward
    one. It saves to and loads from `.keras` files.

    Args:
        layer: the forward recurrent layer.
        backward_layer: the backward recurrent layer (`go_backwards=True`), of the same kind
            and with the same `return_sequences`, `return_state` and `stateful`.
        merge_mode: must be `"concat"`. Defaults to `"concat"`.
        **kwargs: as for `keras.layers.Bidirectional` (`name`, `dtype`, ...).

    Raises:
        ValueError: for a merge mode other than `"concat"` (sum, ave and mul need equal
            widths: use `keras.layers.Bidirectional`), or `backward_layer=None`.

    Example:

    >>> layer = UnevenBidirectional(
    ...     keras.layers.GRU(3, return_sequences=True),
    ...     backward_layer=keras.layers.GRU(5, return_sequences=True, go_backwards=True),
    ... )
    >>> tuple(layer(np.zeros((2, 7, 4))).shape), layer.compute_output_shape((2, 7, 4))
    ((2, 7, 8), (2, 7, 8))
    """

    def __init__(self, layer, backward_layer, merge_mode="concat", **kwargs):
        if merge_mode != "concat":
            raise ValueError(
                f"UnevenBidirectional: merge_mode={merge_mode!r} needs both directions of one "
                "width; use keras.layers.Bidirectional, or merge_mode='concat'."
            )
        if backward_layer is None:
            raise ValueError(
                "UnevenBidirectional needs backward_layer= (its width is what differs); "
                "without it use keras.layers.Bidirectional."
            )
        super().__init__(layer, merge_mode=merge_mode, backward_layer=backward_layer, **kwargs)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        """The output shape: the two directions' widths side by side (and their states).

        Args:
            sequences_shape: the input shape, `(batch, steps, features)`.
            initial_state_shape: unused, as in `Bidirectional`. Defaults to `None`.

        Returns:
            A shape tuple, or with `return_state` a tuple of the output's and the states'
            shapes (forward states first).
        """
        shapes = [
            direction.compute_output_shape(sequences_shape)
            for direction in (self.forward_layer, self.backward_layer)
        ]
        if not self.return_state:
            shapes = [(shape,) for shape in shapes]
        (forward, *forward_states), (backward, *backward_states) = shapes
        output = (*forward[:-1], forward[-1] + backward[-1])
        if self.return_state:
            return (output, *forward_states, *backward_states)
        return output
