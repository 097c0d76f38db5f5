"""LiteRT export: the data path's last step.

- `converter`: `tfprune.export_tflite` and `plan_sparse_storage`, Keras to `.tflite` bytes
  (TensorFlow's converter);
- `recurrent`: how recurrent layers are converted (unrolled where their length is fixed);
- `depthwise`: how depthwise kernels over 5x5 are converted (cut into tiles LiteRT runs fast);
- `sparse_storage`: which weights are stored sparse-encoded, chosen per layer by what pays;
- `interpreter`: running, verifying and timing files in the LiteRT interpreter;
- `tflite_file`: reading files through LiteRT's flatbuffer schema, `inspect_tflite`;
- `keras_file`: `tfprune.save_model`, a `.keras` file written atomically.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "converter": ["export_tflite", "plan_sparse_storage"],
        "interpreter": [
            "Latency",
            "benchmark_tflite",
            "compare_latency",
            "load_interpreter",
            "run_tflite",
            "verify_tflite",
        ],
        "tflite_file": ["TFLiteFileError", "TFLiteNotFoundError", "inspect_tflite"],
        "keras_file": ["save_model"],
        "sparse_storage": ["StorageChoice", "StorageReport", "XnnpackSparsePath"],
    },
)
