"""Reading .tflite files: signature, FLOPs, zeros and sparse blocks."""

from helpers import small_cnn

import tfprune


def test_inspect_reads_signature_flops_zeros_and_blocks(tmp_path):
    model = small_cnn()
    path = tfprune.export_tflite(model, tmp_path / "m.tflite")
    info = tfprune.inspect_tflite(path)
    assert info["flops"] == tfprune.count_flops(model)
    assert info["bytes"] == path.stat().st_size
    (signature,) = info["signatures"].values()
    (inputs,) = signature["inputs"].values()
    assert inputs["shape"][1:] == list(model.inputs[0].shape[1:]) and inputs["dtype"] == "float32"
    (outputs,) = signature["outputs"].values()
    assert outputs["shape"][-1] == model.outputs[0].shape[-1]
    constants = [t for t in info["tensors"] if t["constant"]]
    assert constants and all(0 <= t["zeros"] <= 1 for t in constants)
    assert all(t["zeros"] is None for t in info["tensors"] if not t["constant"])
