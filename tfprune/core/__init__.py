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
- `stateless`: calling a layer with some variables read as other values (masked weights);
- `paired_optimizer`: a second optimizer for a method's own variables (LEAP's scores);
- `own_variables`: how a method that learns its masks trains in every backend's step;
- `latest_value`: a metric that logs the latest value a step set;
- `gradients`: gradients on every backend (one module per backend).
- `blending`: how a training wrapper lets the one it wraps add loss terms;
"""
