package dev.edgekd.demo;

import dev.edgekd.core.Manifest;
import dev.edgekd.core.Tensor;
import java.io.File;

/** One loaded model file: takes the core's input tensor, gives the file's raw first output. */
interface ModelRunner extends AutoCloseable {
    Tensor run(Tensor input);

    /** e.g. "executorch 1.0.1" (the Gradle-configured artifact version). */
    String runtime();

    @Override
    void close();

    /** Open {@code path} with the runtime its format needs (pte → ExecuTorch, tflite → LiteRT). */
    static ModelRunner open(Manifest.ModelFile file, File path, int threads) {
        switch (file.format) {
            case "pte":
                return new ExecuTorchRunner(path);
            case "tflite":
                return new LiteRtRunner(path, threads);
            default:
                throw new IllegalArgumentException(file.key() + ": the app runs .pte and .tflite files only");
        }
    }
}
