"""How fast LiteRT runs depthwise convolutions by kernel size, whole and cut into tiles.

One depthwise layer per model (channels last, "same" padding, stride 1) at the given map and
channels, exported with `split_depthwise=False` (one op) and `True` (kernels over 5x5 as tiles
of at most 5x5, `tfprune.layers.split_depthwise`), float and int8, all timed in turn in the
LiteRT interpreter (1 thread, XNNPACK). Reports microseconds and GMAC/s (multiply-adds of the
whole kernel per second). BENCHMARKS.md section 17.

    python tools/bench_depthwise.py [--size 24] [--channels 96] [--kernels 3 5 7 9]
"""

import argparse
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402


def depthwise_model(kernel, size, channels):
    inputs = keras.Input((size, size, channels))
    layer = keras.layers.DepthwiseConv2D(kernel, padding="same", name=f"dw{kernel}")
    return keras.Model(inputs, layer(inputs))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=24, help="the map's height and width")
    parser.add_argument("--channels", type=int, default=96)
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7, 9])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", default="out/bench_depthwise.json")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    data = np.random.default_rng(0).random(
        (64, args.size, args.size, args.channels), dtype=np.float32
    )
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench_depthwise_"))
    files = {}
    for kernel in args.kernels:
        model = depthwise_model(kernel, args.size, args.channels)
        for quantize in (None, "int8"):
            for split in (False, True):
                key = (kernel, quantize or "float", "tiled" if split else "whole")
                path = workdir / f"{kernel}_{key[1]}_{key[2]}.tflite"
                files[key] = tfprune.export_tflite(
                    model,
                    path,
                    quantize=quantize,
                    representative_data=data,
                    split_depthwise=split,
                    verbose=False,
                )
    latency = tfprune.compare_latency(list(files.values()), args.rounds, args.runs)
    rows = []
    for (kernel, precision, form), path in files.items():
        seconds = latency[path]
        macs = args.size * args.size * args.channels * kernel * kernel
        ops = tfprune.inspect_tflite(path)["operators"].count("DEPTHWISE_CONV_2D")
        rows.append(
            {
                "kernel": kernel,
                "precision": precision,
                "form": form,
                "depthwise_ops": ops,
                "latency_us": seconds * 1e6,
                "gmac_per_s": macs / seconds / 1e9,
            }
        )
        print(
            f"  {kernel}x{kernel} {precision:5s} {form:5s} ({ops} op{'s' if ops > 1 else ''}): "
            f"{seconds * 1e6:8.1f} us  {macs / seconds / 1e9:6.1f} GMAC/s",
            flush=True,
        )
    write_report(args.json, {"size": args.size, "channels": args.channels, "rows": rows})


if __name__ == "__main__":
    main()
