package dev.edgekd.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

public class PreprocessorTest {
    private static Image gray(int w, int h, int... px) {
        byte[] d = new byte[px.length];
        for (int k = 0; k < px.length; k++) {
            d[k] = (byte) px[k];
        }
        return new Image(w, h, 1, d);
    }

    private static double norm(int p, double mean, double std) {
        return (p / 255.0 - mean) / std;
    }

    @Test
    public void floatNchwNormalisesWithMeanAndStd() {
        Manifest m = Fixtures.gray(2, 2);
        Tensor t = Preprocessor.preprocess(gray(2, 2, 0, 51, 102, 255), m, m.file("pte/fp32/executorch"));
        assertEquals("float32", t.dtype);
        assertArrayEquals(new long[] {1, 1, 2, 2}, t.shape);
        float[] want = {(float) norm(0, .5, .25), (float) norm(51, .5, .25), (float) norm(102, .5, .25), (float) norm(255, .5, .25)};
        assertArrayEquals(want, t.floats, 1e-6f);
    }

    @Test
    public void nhwcInterleavesChannels() {
        Manifest m = Manifest.parse(Fixtures.manifest("RGB", 1, 2, "0", "1", 3));
        Image img = new Image(2, 1, 3, new byte[] {10, 20, 30, 40, 50, 60});
        Tensor nchw = Preprocessor.preprocess(img, m, m.file("pte/fp32/executorch"));
        Tensor nhwc = Preprocessor.preprocess(img, m, m.file("tflite/fp32/onnx2tf"));
        assertArrayEquals(new long[] {1, 3, 1, 2}, nchw.shape);
        assertArrayEquals(new long[] {1, 1, 2, 3}, nhwc.shape);
        int[] nchwOrder = {10, 40, 20, 50, 30, 60};
        for (int k = 0; k < 6; k++) {
            assertEquals(nchwOrder[k] / 255.0, nchw.floats[k], 1e-6);
            assertEquals((10 * (k + 1)) / 255.0, nhwc.floats[k], 1e-6);
        }
    }

    @Test
    public void bgrReversesChannelsAndGrayUsesLuma() {
        Manifest bgr = Manifest.parse(Fixtures.manifest("BGR", 1, 1, "0", "1", 3));
        Tensor t = Preprocessor.preprocess(new Image(1, 1, 3, new byte[] {10, 20, 30}), bgr, bgr.file("pte/fp32/executorch"));
        assertArrayEquals(new float[] {30 / 255f, 20 / 255f, 10 / 255f}, t.floats, 1e-6f);

        Manifest g = Manifest.parse(Fixtures.manifest("GRAY", 1, 1, "0", "1", 3));
        Tensor y = Preprocessor.preprocess(new Image(1, 1, 3, new byte[] {(byte) 255, 0, 0}), g, g.file("pte/fp32/executorch"));
        assertEquals(76 / 255.0, y.floats[0], 1e-6);
        assertEquals(76, Image.luma(255, 0, 0));
        assertEquals(255, Image.luma(255, 255, 255));
    }

    @Test
    public void int8InputIsQuantizedWithTheFilesScaleAndZeroPoint() {
        Manifest m = Fixtures.gray(2, 2);
        Image img = gray(2, 2, 0, 51, 102, 255);
        Tensor q = Preprocessor.preprocess(img, m, m.file("tflite/int8/litert-torch"));
        assertEquals("int8", q.dtype);
        double s = (double) 0.023529412f;
        for (int k = 0; k < 4; k++) {
            long want = Math.round(norm(new int[] {0, 51, 102, 255}[k], .5, .25) / s) - 3;
            assertEquals(want, q.bytes[k]);
        }
        Tensor u = Preprocessor.preprocess(img, m, m.file("tflite/int8/onnx2tf"));
        assertEquals("uint8", u.dtype);
        assertArrayEquals(new long[] {1, 2, 2, 1}, u.shape);
        assertEquals(28, u.bytes[0] & 0xff); // -2 / 0.02 + 128
        assertEquals(228, u.bytes[3] & 0xff); // 2 / 0.02 + 128
    }

    @Test
    public void quantizeRoundsHalfToEvenAndClamps() {
        byte[] q = Preprocessor.quantize(new float[] {0.5f, 1.5f, 2.5f, -0.5f, 1000f, -1000f}, new Manifest.Quantization(1.0, 0), "int8");
        assertArrayEquals(new byte[] {0, 2, 2, 0, 127, -128}, q);
        byte[] u = Preprocessor.quantize(new float[] {-5f, 300f, 3.5f}, new Manifest.Quantization(1.0, 10), "uint8");
        assertEquals(5, u[0] & 0xff);
        assertEquals(255, u[1] & 0xff);
        assertEquals(14, u[2] & 0xff);
    }

    @Test
    public void bilinearUpscaleUsesHalfPixelCentres() {
        double[][] r = Preprocessor.resize(new int[][] {{0, 100, 200, 255}}, 2, 2, 4, 4);
        assertArrayEquals(new double[] {
            0, 25, 75, 100,
            50, 72.1875, 116.5625, 138.75,
            150, 166.5625, 199.6875, 216.25,
            200, 213.75, 241.25, 255}, r[0], 1e-12);
    }

    @Test
    public void bilinearDownscaleByTwoAveragesBlocks() {
        int[] p = new int[16];
        for (int k = 0; k < 16; k++) {
            p[k] = k * 10;
        }
        double[][] r = Preprocessor.resize(new int[][] {p}, 4, 4, 2, 2);
        assertArrayEquals(new double[] {25, 45, 105, 125}, r[0], 1e-12);
        double[][] same = Preprocessor.resize(new int[][] {p}, 4, 4, 4, 4);
        for (int k = 0; k < 16; k++) {
            assertEquals(p[k], same[0][k], 0.0); // identity is exact
        }
    }

    @Test
    public void preprocessResizesToTheManifestSize() {
        Manifest m = Fixtures.gray(2, 2);
        int[] px = new int[16];
        for (int k = 0; k < 16; k++) {
            px[k] = k * 10;
        }
        Tensor t = Preprocessor.preprocess(gray(4, 4, px), m, m.file("pte/fp32/executorch"));
        assertArrayEquals(new long[] {1, 1, 2, 2}, t.shape);
        assertEquals(norm(25, .5, .25), t.floats[0], 1e-6);
    }

    @Test
    public void aFileThatDoesNotFitThePreprocessingIsRefused() {
        String text = Fixtures.manifest("GRAY", 8, 8, "0", "1", 3).replace("\"size\": [8, 8]", "\"size\": [8, 9]");
        Manifest m = Manifest.parse(text);
        try {
            Preprocessor.preprocess(gray(1, 1, 0), m, m.file("pte/fp32/executorch"));
            fail();
        } catch (Manifest.ManifestException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("does not fit the preprocessing (1 channels, 8x9)"));
        }
    }

    @Test
    public void shorterSideResizeThenCentreCropAsTorchvision() {
        Manifest.Preprocessing pre = new Manifest.Preprocessing(4, 4, new double[] {0}, new double[] {1}, "GRAY",
                1.0, "shorter_side", 5, "center");
        assertArrayEquals(new int[] {5, 8}, pre.resized(10, 17)); // int(5 * 17 / 10) = 8
        assertArrayEquals(new int[] {9, 5}, pre.resized(19, 10)); // portrait
        assertArrayEquals(new int[] {0, 2}, pre.cropBox(5, 8)); // round(0.5) = 0 (half to even), round(2) = 2
        assertArrayEquals(new int[] {2, 0}, pre.cropBox(9, 5)); // round(2.5) = 2
        // cropping the resized image = computing only the crop window
        int[][] planes = new int[1][10 * 17];
        for (int k = 0; k < planes[0].length; k++) {
            planes[0][k] = (k * 37) % 251;
        }
        double[][] full = Preprocessor.resize(planes, 10, 17, 5, 8);
        double[][] window = Preprocessor.resize(planes, 10, 17, 5, 8, 0, 2, 4, 4);
        for (int y = 0; y < 4; y++) {
            for (int x = 0; x < 4; x++) {
                assertEquals(full[0][y * 8 + x + 2], window[0][y * 4 + x], 0.0);
            }
        }
    }
}
