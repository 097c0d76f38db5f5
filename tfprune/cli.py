"""The `tfprune` command: inspect, time, convert and summarise models, and run the demo.

    tfprune inspect model.tflite [--json]
    tfprune bench model.tflite [other.tflite] [--threads N] [--runs N]
    tfprune convert model.keras out.tflite [--sparse {off,auto,force}]
                    [--int8 --calibration data.npz]
    tfprune summary model.keras
    tfprune demo [--out DIR]

Every command exits 0 on success, 1 with a one-line error on a bad file, and 2 with a one-line
error on bad flags.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with its usage dump replaced by one line, so scripts can read the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _existing(path: str) -> pathlib.Path:
    result = pathlib.Path(path)
    if not result.is_file():
        raise CommandError(f"no such file: {path}")
    return result


def _load_keras(path: str):
    import keras

    import tfprune  # noqa: F401  (registers tfprune's layers for loading)

    source = _existing(path)
    if source.suffix != ".keras":
        raise CommandError(f"{path}: expected a Keras 3 '.keras' file (model.save('model.keras'))")
    if not zipfile.is_zipfile(source):
        raise CommandError(
            f"{path} is not a .keras archive (corrupt or truncated); save the model again"
        )
    try:
        return keras.saving.load_model(source)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"cannot load {path}: {first}") from error


def _format_inspection(info: dict) -> str:
    lines = [
        f"{info['bytes']:,} bytes, {len(info['operators'])} operators, {info['flops'] / 1e6:.3f} "
        "MFLOPs (2 per multiply-add)"
    ]
    for key, signature in info["signatures"].items():
        lines.append(f"signature '{key}':")
        for side in ("inputs", "outputs"):
            for name, spec in signature[side].items():
                lines.append(f"  {side[:-1]:6} {name}: {spec['dtype']} {spec['shape']}")
    lines.append("operators:")
    for index, op in enumerate(info["ops"]):
        flops = "" if op["flops"] is None else f"  {op['flops'] / 1e6:.3f} MFLOPs"
        lines.append(f"  {index:3d} {op['op']}{flops}")
    lines.append("constant tensors (zeros = fraction of zero elements):")
    for tensor in info["tensors"]:
        if tensor["constant"] and len(tensor["shape"]) > 1:
            storage = (
                f"sparse, blocks {'x'.join(map(str, tensor['block_shape']))}"
                if tensor["sparse"]
                else "dense"
            )
            if tensor["sparse"] and not tensor["block_shape"]:
                storage = "sparse, unblocked"
            lines.append(
                f"  {tensor['name']}: {tensor['type']} {tensor['shape']}, {tensor['zeros']:.1%} "
                f"zeros, {storage}"
            )
    return "\n".join(lines)


def _inspect(args):
    from tfprune.export.tflite_file import inspect_tflite

    info = inspect_tflite(_existing(args.model))
    print(json.dumps(info, indent=2) if args.json else _format_inspection(info))


def _bench(args):
    from tfprune.export import interpreter as litert
    from tfprune.export.tflite_file import read_flatbuffer

    paths = [_existing(p) for p in [args.model] + ([args.other] if args.other else [])]
    for path in paths:
        print(
            litert.benchmark_tflite(path, threads=args.threads, runs=args.runs, warmup=args.warmup)
        )
    if len(paths) == 2:
        # Alternating rounds, so that a burst of load on a shared machine hits both files.
        first, second, ratio = litert.latency_ratio(
            read_flatbuffer(paths[0]),
            read_flatbuffer(paths[1]),
            threads=args.threads,
            rounds=10,
            runs=max(1, args.runs // 10),
        )
        print(
            f"side by side: {paths[0].name} {first * 1e6:.1f} us / {paths[1].name} "
            f"{second * 1e6:.1f} us = {ratio:.2f}x ({args.threads} thread(s))"
        )


def _calibration(path, model):
    import numpy as np

    if path is None:
        raise CommandError(
            "--int8 needs --calibration data.npz: a few hundred typical inputs, one array per "
            "model input"
        )
    try:
        with np.load(_existing(path)) as archive:
            arrays = [archive[name] for name in archive.files]
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise CommandError(f"cannot read {path} as an .npz archive: {error}") from error
    if len(arrays) != len(model.inputs):
        raise CommandError(
            f"{path} holds {len(arrays)} arrays; the model has {len(model.inputs)} input(s), one "
            "array each"
        )
    return arrays


def _convert(args):
    from tfprune.export.converter import export_tflite

    model = _load_keras(args.model)
    if args.calibration and not args.int8:
        raise CommandError("--calibration is only used with --int8")
    data = _calibration(args.calibration, model) if args.int8 else None
    sparse = {"off": False, "auto": "auto", "force": True}[args.sparse]
    out = pathlib.Path(args.output)
    if out.suffix != ".tflite":
        raise CommandError(f"{args.output}: the output should end in .tflite")
    export_tflite(
        model,
        out,
        sparse=sparse,
        quantize="int8" if args.int8 else None,
        representative_data=data,
        verbose=True,
    )
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


def _summary(args):
    from tfprune.inspection.summary import summary

    print(summary(_load_keras(args.model)))


def _demo(args):
    from tfprune import demo

    demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    """The `tfprune` argument parser, one sub-command per job.

    Returns:
        An `argparse.ArgumentParser`; `parse_args` gives a namespace with `.run`.

    Example:

    >>> build_parser().parse_args(["inspect", "m.tflite"]).model
    'm.tflite'
    """
    from tfprune import __version__, demo

    parser = _Parser(prog="tfprune", description="Prune Keras 3 models and ship them to LiteRT.")
    parser.add_argument("--version", action="version", version=f"tfprune {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inspect = commands.add_parser(
        "inspect", help="signature, operators, FLOPs and per-tensor sparsity of a .tflite file"
    )
    inspect.add_argument("model", help="a .tflite file")
    inspect.add_argument("--json", action="store_true", help="print everything as JSON")
    inspect.set_defaults(run=_inspect)

    bench = commands.add_parser(
        "bench", help="median LiteRT latency of one file, or two side by side"
    )
    bench.add_argument("model", help="a .tflite file")
    bench.add_argument("other", nargs="?", help="a second .tflite file to compare with")
    bench.add_argument(
        "--threads", type=_positive, default=1, help="interpreter threads (default: 1)"
    )
    bench.add_argument("--runs", type=_positive, default=200, help="timed invokes (default: 200)")
    bench.add_argument(
        "--warmup", type=_positive, default=20, help="untimed invokes first (default: 20)"
    )
    bench.set_defaults(run=_bench)

    convert = commands.add_parser("convert", help="export a .keras model to .tflite")
    convert.add_argument("model", help="a .keras file (pruned or not)")
    convert.add_argument("output", help="the .tflite file to write")
    convert.add_argument(
        "--sparse",
        choices=["off", "auto", "force"],
        default="off",
        help="sparse weight storage (default: off)",
    )
    convert.add_argument("--int8", action="store_true", help="full-integer quantization")
    convert.add_argument(
        "--calibration", help="an .npz with typical inputs for --int8, one array per model input"
    )
    convert.set_defaults(run=_convert)

    summary = commands.add_parser("summary", help="the per-layer table of a .keras model")
    summary.add_argument("model", help="a .keras file")
    summary.set_defaults(run=_summary)

    demo_parser = commands.add_parser(
        "demo", help="the end-to-end digits demo (same as `make demo`)"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=_demo)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def main(argv=None) -> int:
    """Run the `tfprune` command.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Returns:
        The exit status: 0 on success, 1 for a bad or missing file, 2 for bad flags.

    Example:

    >>> main(["inspect", "no-such-file.tflite"])  # the error goes to stderr, one line
    1
    """
    from tfprune.export.tflite_file import TFLiteFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (CommandError, TFLiteFileError) as error:
        print(f"tfprune {args.command}: error: {error}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"tfprune {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
