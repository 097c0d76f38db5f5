"""Foundations every other subpackage stands on; imports nothing else from tfprune.

- `checks`: argument checks with one wording (numbers, integers, fractions, choices, paths,
  labels, models);
- `keras_internals`: the only module that touches private Keras API;
- `modelwalk`: walking, cloning and copying layers;
- `configurable`: value objects described by their constructor arguments;
- `unionfind`: disjoint sets;
- `classifier`: probabilities or logits;
- `distribution`: which worker of a multi-worker job is the chief;
- `files`: atomic writes that keep the umask's permissions;
- `inference`: calling a model for a check without changing its state;
- `train_step`: what custom train steps share (TensorFlow).
"""
