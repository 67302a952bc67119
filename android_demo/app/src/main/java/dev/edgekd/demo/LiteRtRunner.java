package dev.edgekd.demo;

import dev.edgekd.core.Tensor;
import java.io.File;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;

/** A .tflite file on LiteRT's Interpreter API (CPU; the litert AAR keeps the org.tensorflow.lite package). */
final class LiteRtRunner implements ModelRunner {
    private final Interpreter interpreter;
    private final ByteBuffer in;
    private final ByteBuffer out;

    LiteRtRunner(File tflite, int threads) {
        interpreter = new Interpreter(tflite, new Interpreter.Options().setNumThreads(threads));
        in = ByteBuffer.allocateDirect(interpreter.getInputTensor(0).numBytes()).order(ByteOrder.nativeOrder());
        out = ByteBuffer.allocateDirect(interpreter.getOutputTensor(0).numBytes()).order(ByteOrder.nativeOrder());
    }

    @Override
    public Tensor run(Tensor input) {
        in.rewind();
        if (input.floats != null) {
            in.asFloatBuffer().put(input.floats);
        } else {
            in.put(input.bytes);
        }
        in.rewind();
        out.rewind();
        interpreter.run(in, out);
        out.rewind();
        int[] s = interpreter.getOutputTensor(0).shape();
        long[] shape = new long[s.length];
        for (int k = 0; k < s.length; k++) {
            shape[k] = s[k];
        }
        DataType dt = interpreter.getOutputTensor(0).dataType();
        if (dt == DataType.FLOAT32) {
            float[] f = new float[out.capacity() / 4];
            out.asFloatBuffer().get(f);
            return Tensor.ofFloats(shape, f);
        }
        byte[] b = new byte[out.capacity()];
        out.get(b);
        if (dt == DataType.INT8 || dt == DataType.UINT8) {
            return Tensor.ofBytes(shape, dt == DataType.INT8 ? "int8" : "uint8", b);
        }
        throw new IllegalStateException("the .tflite returned " + dt + "; expected float32 or int8 logits");
    }

    @Override
    public String runtime() {
        return "litert " + BuildConfig.LITERT_VERSION;
    }

    @Override
    public void close() {
        interpreter.close();
    }
}
