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
