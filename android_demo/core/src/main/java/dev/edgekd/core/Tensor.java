package dev.edgekd.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A dense tensor in the exact form a model file takes or gives: float32 data in {@link #floats},
 * or int8/uint8 data in {@link #bytes} (raw two's-complement bytes; read uint8 with {@code & 0xff}).
 */
public final class Tensor {
    public final long[] shape;
    /** "float32", "int8" or "uint8". */
    public final String dtype;
    public final float[] floats;
    public final byte[] bytes;

    private Tensor(long[] shape, String dtype, float[] floats, byte[] bytes) {
        this.shape = shape;
        this.dtype = dtype;
        this.floats = floats;
        this.bytes = bytes;
    }

    public static Tensor ofFloats(long[] shape, float[] data) {
        return new Tensor(shape, "float32", data, null);
    }

    public static Tensor ofBytes(long[] shape, String dtype, byte[] data) {
        if (!dtype.equals("int8") && !dtype.equals("uint8")) {
            throw new IllegalArgumentException("byte tensors are int8 or uint8, not " + dtype);
        }
        return new Tensor(shape, dtype, null, data);
    }

    public int size() {
        return floats != null ? floats.length : bytes.length;
    }

    /** The value at flat index {@code k} as a double (uint8 read unsigned). */
    public double get(int k) {
        if (floats != null) {
            return floats[k];
        }
        return dtype.equals("uint8") ? (bytes[k] & 0xff) : bytes[k];
    }

    /** Raw little-endian bytes (what numpy's {@code tobytes()} gives on a little-endian machine). */
    public byte[] toLittleEndian() {
        if (bytes != null) {
            return bytes.clone();
        }
        ByteBuffer b = ByteBuffer.allocate(4 * floats.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : floats) {
            b.putFloat(f);
        }
        return b.array();
    }

    /** Read raw little-endian bytes of {@code dtype} (float32, int8 or uint8). */
    public static Tensor fromLittleEndian(long[] shape, String dtype, byte[] raw) {
        if (dtype.equals("float32")) {
            if (raw.length % 4 != 0) {
                throw new IllegalArgumentException(raw.length + " bytes is not a whole number of float32 values");
            }
            float[] f = new float[raw.length / 4];
            ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(f);
            return ofFloats(shape, f);
        }
        return ofBytes(shape, dtype, raw.clone());
    }
}
