"""The Android guide quotes the exported file's signature; check every quoted name against a
freshly exported demo model, so the guide cannot drift from what the exporter writes."""

import math
import pathlib
import re

import keras

import tfprune
from tfprune import cli
from tfprune.zoo import digits_cnn

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "android"


def exported_signature(tmp_path):
    keras.utils.set_random_seed(0)
    # The demo's shrunk model has fewer filters but the same inputs and outputs.
    path = tfprune.export_tflite(digits_cnn(width=0.5), tmp_path / "pruned_shrunk.tflite")
    return path, tfprune.inspect_tflite(path)["signatures"]


def test_guide_signature_block_is_what_inspect_prints(tmp_path, capsys):
    path, _ = exported_signature(tmp_path)
    assert cli.main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    readme = (GUIDE / "README.md").read_text()
    (block,) = re.findall(
        r"```text\n\$ tfprune inspect out/pruned_shrunk.tflite\n(.*?)```", readme, re.S
    )
    quoted = block.strip().splitlines()
    assert quoted and all(line in printed for line in quoted), (quoted, printed)


def test_kotlin_constants_match_the_exported_file(tmp_path):
    _, signatures = exported_signature(tmp_path)
    kotlin = (GUIDE / "DigitClassifier.kt").read_text()
    constants = dict(re.findall(r'const val (\w+) = "([^"]+)"', kotlin))
    sizes = dict(re.findall(r"const val (\w+) = ([\d *]+)\n", kotlin))
    signature = signatures[constants["SIGNATURE"]]
    assert constants["MODEL_FILE"] == "pruned_shrunk.tflite"
    image = signature["inputs"][constants["INPUT"]]
    probabilities = signature["outputs"][constants["OUTPUT"]]
    assert image["dtype"] == "float32" and probabilities["dtype"] == "float32"
    assert math.prod(int(p) for p in sizes["INPUT_SIZE"].split("*")) == math.prod(
        image["shape"][1:]
    )
    assert int(sizes["CLASSES"]) == probabilities["shape"][-1]
    assert f'{constants["INPUT"]}"          // float32 {image["shape"]}' in kotlin
    assert f'{constants["OUTPUT"]}"      // float32 {probabilities["shape"]}' in kotlin
