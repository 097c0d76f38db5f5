"""Where do LiteRT's sparse FULLY_CONNECTED kernels start to pay? The numbers behind
`tfprune.sparse_storage.BREAK_EVEN`.

Two 1024x1024 Dense layers with a given share of zero blocks (1x4 for float32, 1x16 for
int8, along the input axis, the blocks TFLite's sparse kernels skip), every layer stored
sparse (`sparse=True`) against dense-stored, timed in alternating rounds (1 thread).
Writes `bench_sparse_breakeven.json`.

    python tools/bench_sparse_breakeven.py [--sparsities 0.6 0.7 0.8 0.85 0.9 0.95]
"""

import argparse
import os
import pathlib
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

from tfprune.export import converter, sparse_storage  # noqa: E402
from tfprune.export import interpreter as litert  # noqa: E402


def two_layers(zero_blocks, block, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((1024,))
    model = keras.Model(
        inputs, keras.layers.Dense(1024, name="b")(keras.layers.Dense(1024, name="a")(inputs))
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers[1:]:
        kernel, bias = layer.get_weights()
        dead = rng.random((kernel.shape[0] // block, kernel.shape[1])) < zero_blocks
        layer.set_weights([kernel * ~np.repeat(dead, block, axis=0), bias])
    return model


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sparsities", nargs="+", type=float, default=[0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97]
    )
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    rows = []
    calibration = np.random.default_rng(1).random((50, 1024), dtype=np.float32)
    for quantize, block in ((None, 4), ("int8", 16)):
        for zero_blocks in args.sparsities:
            dense = converter.convert(two_layers(zero_blocks, block), quantize, calibration)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sparse = sparse_storage.encode(dense, sparse_storage.plan(dense, "forced"))
            sparse_s, dense_s, ratio = litert.latency_ratio(sparse, dense, rounds=10, runs=50)
            rows.append(
                {
                    "type": quantize or "float32",
                    "block": f"1x{block}",
                    "zero_blocks": zero_blocks,
                    "sparse_us": sparse_s * 1e6,
                    "dense_us": dense_s * 1e6,
                    "ratio": ratio,
                    "size_ratio": len(sparse) / len(dense),
                }
            )
            print(
                f"{rows[-1]['type']:>7} 1x{block} {zero_blocks:.0%} zero blocks: {ratio:.2f}x "
                f"latency, {len(sparse) / len(dense):.2f}x size",
                flush=True,
            )
    write_report(pathlib.Path(args.out) / "bench_sparse_breakeven.json", {"rows": rows})


if __name__ == "__main__":
    main()
