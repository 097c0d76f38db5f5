"""Pruning procedures from the literature, built on the data path (may import anything but
`cli` and `demo`).

- `imp`: iterative magnitude pruning with rewinding, and mask similarity;
- `presets`: the IPLT and PFWT schedules;
- `rebuild`: `fit_with_rebuilds`, training that shrinks and recompiles at each pruning event;
- `layerwise`: BPPS's and PwC's layer-wise rates;
- `compensation`: PwC's least-squares compensation;
- `dsp`: Dynamic Structure Pruning (group learning and grouped deployment);
- `leap`: LEAP's learnable masks for transformers.
- `distillation`: `Distillation`, a dense teacher's softened outputs in the pruned model's loss.
"""
