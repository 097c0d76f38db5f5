// Runs the model that `make demo` exports (out/pruned_shrunk.tflite) with the LiteRT
// CompiledModel API. Put the file in app/src/main/assets/ and add to build.gradle:
//     implementation("com.google.ai.edge.litert:litert:2.3.0")
// The names below are the ones `tfprune inspect out/pruned_shrunk.tflite` prints; a test
// (tests/test_android_guide.py) checks them against a freshly exported file.
package com.example.tfprune

import android.content.res.AssetManager
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel

class DigitClassifier(assets: AssetManager, threads: Int = 2) : AutoCloseable {
    companion object {
        const val MODEL_FILE = "pruned_shrunk.tflite"
        const val SIGNATURE = "serving_default"
        const val INPUT = "image"          // float32 [-1, 16, 16, 1]; the batch is 1 on the phone
        const val OUTPUT = "output_0"      // float32 [-1, 10]: class probabilities
        const val INPUT_SIZE = 16 * 16 * 1
        const val CLASSES = 10
    }

    // XNNPACK runs the CPU accelerator; the thread count is the main knob (see README).
    private val model = CompiledModel.create(
        assets,
        MODEL_FILE,
        CompiledModel.Options(Accelerator.CPU).apply {
            cpuOptions = CompiledModel.CpuOptions(numThreads = threads)
        },
    )
    private val input = model.createInputBuffer(INPUT, SIGNATURE)
    private val output = model.createOutputBuffer(OUTPUT, SIGNATURE)

    /** Pixels scaled as in training (0..1, row-major 16x16); returns the 10 probabilities. */
    fun classify(pixels: FloatArray): FloatArray {
        require(pixels.size == INPUT_SIZE) { "expected $INPUT_SIZE pixels, got ${pixels.size}" }
        input.writeFloat(pixels)
        model.run(mapOf(INPUT to input), mapOf(OUTPUT to output), SIGNATURE)
        return output.readFloat().also { check(it.size == CLASSES) }
    }

    override fun close() {
        input.close()
        output.close()
        model.close()
    }
}
