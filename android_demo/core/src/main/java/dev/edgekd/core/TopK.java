package dev.edgekd.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;

/**
 * Model output → classes: dequantize (int8/uint8 outputs), softmax, top-k. The Python reference is
 * {@code edgekd.android.dequantize / softmax / topk}.
 *
 * <p>Ranking uses the logits themselves (softmax is monotonic), highest first, ties broken by the
 * lower class index, NaN last — the order of numpy's {@code argsort(-logits, kind="stable")}.
 */
public final class TopK {
    private TopK() {
    }

    /** One ranked class. */
    public static final class Prediction {
        public final int index;
        public final String label;
        public final float logit;
        public final double probability;

        public Prediction(int index, String label, float logit, double probability) {
            this.index = index;
            this.label = label;
            this.logit = logit;
            this.probability = probability;
        }

        @Override
        public String toString() {
            return String.format(java.util.Locale.ROOT, "%s (#%d) %.2f%%", label, index, 100 * probability);
        }
    }

    /** Float32 logits from a raw output: {@code (q - zero_point) * scale} in float32 for int8/uint8. */
    public static float[] dequantize(Tensor raw, Manifest.TensorSpec spec) {
        float[] out = new float[raw.size()];
        if (raw.floats != null) {
            System.arraycopy(raw.floats, 0, out, 0, out.length);
            return out;
        }
        if (spec.quantization == null || spec.quantization.scale == 0.0) {
            throw new Manifest.ManifestException("output " + spec + " is " + raw.dtype
                    + " without a quantization scale; cannot turn it into logits");
        }
        float scale = (float) spec.quantization.scale;
        long zp = spec.quantization.zeroPoint;
        for (int k = 0; k < out.length; k++) {
            out[k] = (float) ((long) raw.get(k) - zp) * scale;
        }
        return out;
    }

    /** Softmax in double precision: exp(x - max) / sum. */
    public static double[] softmax(float[] logits) {
        double m = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            if (v > m) {
                m = v;
            }
        }
        double[] e = new double[logits.length];
        double sum = 0;
        for (int k = 0; k < logits.length; k++) {
            e[k] = StrictMath.exp(logits[k] - m);
            sum += e[k];
        }
        for (int k = 0; k < e.length; k++) {
            e[k] /= sum;
        }
        return e;
    }

    /** Class indices by descending logit (ties: lower index first; NaN last). */
    public static int[] ranking(float[] logits) {
        Integer[] idx = new Integer[logits.length];
        for (int k = 0; k < idx.length; k++) {
            idx[k] = k;
        }
        Comparator<Integer> byLogit = (a, b) -> {
            float x = logits[a];
            float y = logits[b];
            boolean nx = Float.isNaN(x);
            boolean ny = Float.isNaN(y);
            if (nx || ny) {
                return nx == ny ? 0 : (nx ? 1 : -1);
            }
            return x > y ? -1 : (x < y ? 1 : 0);
        };
        Arrays.sort(idx, byLogit); // stable (TimSort), so equal logits keep index order
        int[] out = new int[idx.length];
        for (int k = 0; k < out.length; k++) {
            out[k] = idx[k];
        }
        return out;
    }

    /** The {@code k} best classes (fewer when there are fewer classes); labels from the manifest if given. */
    public static List<Prediction> topk(float[] logits, int k, Manifest manifest) {
        if (k < 1) {
            throw new IllegalArgumentException("k must be >= 1, not " + k);
        }
        double[] p = softmax(logits);
        int[] order = ranking(logits);
        List<Prediction> out = new ArrayList<>();
        for (int r = 0; r < Math.min(k, order.length); r++) {
            int i = order[r];
            String label = manifest != null ? manifest.label(i) : "class " + i;
            out.add(new Prediction(i, label, logits[i], p[i]));
        }
        return Collections.unmodifiableList(out);
    }

    /** Dequantize a file's raw output, then rank: the whole post-processing in one call. */
    public static List<Prediction> classify(Tensor rawOutput, Manifest manifest, Manifest.ModelFile file, int k) {
        return topk(dequantize(rawOutput, file.outputs.get(0)), k, manifest);
    }
}
