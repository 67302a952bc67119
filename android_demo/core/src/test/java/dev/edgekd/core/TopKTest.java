package dev.edgekd.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.util.List;
import org.junit.Test;

public class TopKTest {
    @Test
    public void ranksByLogitWithTiesToTheLowerIndexAndNanLast() {
        float[] z = {1f, 3f, Float.NaN, 3f, -2f, 2f};
        assertArrayEquals(new int[] {1, 3, 5, 0, 4, 2}, TopK.ranking(z));
    }

    @Test
    public void softmaxSumsToOneAndIsStableForLargeLogits() {
        double[] p = TopK.softmax(new float[] {1000f, 1000f, 999f});
        double e = Math.exp(-1);
        assertEquals(1 / (2 + e), p[0], 1e-15);
        assertEquals(e / (2 + e), p[2], 1e-15);
        assertEquals(1.0, p[0] + p[1] + p[2], 1e-15);
    }

    @Test
    public void topkCarriesLabelsAndProbabilities() {
        Manifest m = Fixtures.gray(8, 8);
        List<TopK.Prediction> top = TopK.topk(new float[] {0f, 2f, 1f, -1f}, 2, m);
        assertEquals(2, top.size());
        assertEquals(1, top.get(0).index);
        assertEquals("digit 1", top.get(0).label);
        assertEquals(2, top.get(1).index);
        double sum = Math.exp(0) + Math.exp(2) + Math.exp(1) + Math.exp(-1);
        assertEquals(Math.exp(2) / sum, top.get(0).probability, 1e-12);
        assertEquals(4, TopK.topk(new float[] {0f, 2f, 1f, -1f}, 10, null).size());
    }

    @Test
    public void int8OutputsAreDequantized() {
        Manifest m = Fixtures.gray(8, 8);
        Manifest.ModelFile f = m.file("tflite/int8/litert-torch"); // out: scale 0.125, zero point 5
        Tensor raw = Tensor.ofBytes(new long[] {1, 4}, "int8", new byte[] {5, 13, -3, 127});
        assertArrayEquals(new float[] {0f, 1f, -1f, 15.25f}, TopK.dequantize(raw, f.outputs.get(0)), 0f);
        List<TopK.Prediction> top = TopK.classify(raw, m, f, 1);
        assertEquals(3, top.get(0).index);
    }

    @Test
    public void littleEndianRoundTrip() {
        Tensor t = Tensor.ofFloats(new long[] {2}, new float[] {1.5f, -0.1f});
        Tensor back = Tensor.fromLittleEndian(t.shape, "float32", t.toLittleEndian());
        assertArrayEquals(t.floats, back.floats, 0f);
        assertEquals(0x3f, t.toLittleEndian()[3] & 0xff); // 1.5f = 0x3fc00000, little-endian
    }
}
