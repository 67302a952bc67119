package dev.edgekd.core;

/**
 * Turns an 8-bit image into the exact input tensor one model file of a bundle takes, driven only by
 * {@code edgekd.json}. The Python reference is {@code edgekd.android.preprocess}; the two agree bit
 * for bit (checked by {@code tests/test_android_core.py}).
 *
 * <ol>
 *   <li>Channels: to the model's channel count (RGB → gray by {@link Image#luma}, gray → RGB by
 *       repetition); {@code BGR} reverses the three channels.</li>
 *   <li>Resize, bilinear with half-pixel centres ({@code align_corners=False}) and edge clamping, no
 *       antialiasing (OpenCV {@code INTER_LINEAR}), in double precision, never rounded: straight to
 *       {@code preprocessing.size} = [h, w] ({@code resize} "exact"), or the shorter side to {@code resize_to}
 *       ("shorter_side", {@link Manifest.Preprocessing#resized}) followed by a centre crop of [h, w]
 *       ({@link Manifest.Preprocessing#cropBox}); only the cropped window is computed.</li>
 *   <li>In float32: {@code x = r * scale; x = (x - mean[c]) / std[c]} (a one-element mean/std applies to
 *       every channel).</li>
 *   <li>Lay out as the file's input says (NCHW or NHWC; batch 1).</li>
 *   <li>If that input is int8/uint8 with a quantization: {@code q = clamp(rint(x / scale) + zero_point)}
 *       (round half to even, as numpy).</li>
 * </ol>
 */
public final class Preprocessor {
    private Preprocessor() {
    }

    /** The input tensor for {@code file} (one of {@code manifest.files}). */
    public static Tensor preprocess(Image image, Manifest manifest, Manifest.ModelFile file) {
        Manifest.Preprocessing pre = manifest.preprocessingOrDefault();
        Manifest.TensorSpec spec = file.inputs.get(0);
        int c = pre.channels();
        int h = pre.height;
        int w = pre.width;
        String layout = layoutOf(spec, c, h, w, file.key());
        float[] nchw = normalize(resizeAndCrop(channels(image, pre), pre), pre);
        float[] laid = layout.equals("NHWC") ? toNhwc(nchw, c, h, w) : nchw;
        long[] shape = layout.equals("NHWC") ? new long[] {1, h, w, c} : new long[] {1, c, h, w};
        if (spec.dtype.equals("float32")) {
            return Tensor.ofFloats(shape, laid);
        }
        if (spec.isQuantizedInt()) {
            return Tensor.ofBytes(shape, spec.dtype, quantize(laid, spec.quantization, spec.dtype));
        }
        throw new Manifest.ManifestException(file.key() + " takes " + spec.dtype
                + " input without a quantization scale; an image cannot feed it");
    }

    /** The file's input layout, checked against the preprocessing's channels and size. */
    static String layoutOf(Manifest.TensorSpec spec, int c, int h, int w, String key) {
        long[] s = spec.shape;
        String problem = null;
        String layout = spec.layout;
        if (s.length != 4) {
            problem = "is not a 4-D image tensor";
        } else {
            if (layout == null) {
                layout = (s[1] == c && s[2] == h && s[3] == w) ? "NCHW" : "NHWC";
            }
            boolean fits = layout.equals("NCHW") ? (s[1] == c && s[2] == h && s[3] == w)
                    : layout.equals("NHWC") && (s[1] == h && s[2] == w && s[3] == c);
            if (!fits) {
                problem = "does not fit the preprocessing (" + c + " channels, " + h + "x" + w + ")";
            } else if (s[0] > 1) {
                problem = "takes batch " + s[0] + "; the app runs one image at a time (export with batch 1)";
            }
        }
        if (problem != null) {
            throw new Manifest.ManifestException(key + " input " + spec + " " + problem);
        }
        return layout;
    }

    /** The image's pixels as planes [C][H*W] of ints, in the model's channel order. */
    static Planes channels(Image image, Manifest.Preprocessing pre) {
        Image im = image.withChannels(pre.channels());
        int c = im.channels;
        int n = im.width * im.height;
        int[][] planes = new int[c][n];
        boolean bgr = pre.channelOrder.equals("BGR");
        for (int p = 0; p < n; p++) {
            for (int k = 0; k < c; k++) {
                planes[bgr ? c - 1 - k : k][p] = im.data[p * c + k] & 0xff;
            }
        }
        return new Planes(planes, im.height, im.width);
    }

    /** Integer pixel planes and their size. */
    static final class Planes {
        final int[][] data;
        final int height;
        final int width;

        Planes(int[][] data, int height, int width) {
            this.data = data;
            this.height = height;
            this.width = width;
        }
    }

    static double[][] resize(Planes planes, int oh, int ow) {
        return resize(planes.data, planes.height, planes.width, oh, ow);
    }

    /** The preprocessing's resize followed by its crop, computing only the cropped window. */
    static double[][] resizeAndCrop(Planes planes, Manifest.Preprocessing pre) {
        int[] r = pre.resized(planes.height, planes.width);
        int[] box = pre.cropBox(r[0], r[1]);
        return resize(planes.data, planes.height, planes.width, r[0], r[1], box[0], box[1], pre.height, pre.width);
    }

    /** Bilinear resize of each plane from ih×iw to oh×ow (half-pixel centres, edge clamp), in double. */
    public static double[][] resize(int[][] planes, int ih, int iw, int oh, int ow) {
        return resize(planes, ih, iw, oh, ow, 0, 0, oh, ow);
    }

    /**
     * The ch×cw window at (cropTop, cropLeft) of each plane resized from ih×iw to rh×rw (half-pixel centres, edge clamp),
     * in double.
     */
    public static double[][] resize(int[][] planes, int ih, int iw, int rh, int rw, int cropTop, int cropLeft, int ch, int cw) {
        int oh = ch;
        int ow = cw;
        int[] y0 = new int[oh];
        int[] y1 = new int[oh];
        double[] wy = new double[oh];
        int[] x0 = new int[ow];
        int[] x1 = new int[ow];
        double[] wx = new double[ow];
        axis(ih, rh, cropTop, y0, y1, wy);
        axis(iw, rw, cropLeft, x0, x1, wx);
        double[][] out = new double[planes.length][oh * ow];
        for (int k = 0; k < planes.length; k++) {
            int[] p = planes[k];
            double[] o = out[k];
            for (int y = 0; y < oh; y++) {
                int r0 = y0[y] * iw;
                int r1 = y1[y] * iw;
                double v = wy[y];
                for (int x = 0; x < ow; x++) {
                    double u = wx[x];
                    double top = (1.0 - u) * p[r0 + x0[x]] + u * p[r0 + x1[x]];
                    double bottom = (1.0 - u) * p[r1 + x0[x]] + u * p[r1 + x1[x]];
                    o[y * ow + x] = (1.0 - v) * top + v * bottom;
                }
            }
        }
        return out;
    }

    /**
     * Source indices and weights along one axis for output positions offset..offset+weight.length-1:
     * s = (d + 0.5) * in / out - 0.5, clamped to [0, in-1].
     */
    static void axis(int in, int out, int offset, int[] i0, int[] i1, double[] weight) {
        for (int k = 0; k < weight.length; k++) {
            int d = offset + k;
            double s = (d + 0.5) * in / out - 0.5;
            if (s < 0) {
                s = 0;
            }
            int lo = (int) Math.floor(s);
            if (lo > in - 1) {
                lo = in - 1;
            }
            i0[k] = lo;
            i1[k] = Math.min(lo + 1, in - 1);
            weight[k] = s - lo;
        }
    }

    /** Flat NCHW float32: x = r * scale, x = (x - mean[c]) / std[c], every step in float32. */
    static float[] normalize(double[][] planes, Manifest.Preprocessing pre) {
        int c = planes.length;
        int n = planes[0].length;
        float scale = (float) pre.scale;
        float[] out = new float[c * n];
        for (int k = 0; k < c; k++) {
            float mean = (float) pick(pre.mean, k, "mean");
            float std = (float) pick(pre.std, k, "std");
            for (int p = 0; p < n; p++) {
                float x = (float) planes[k][p] * scale;
                out[k * n + p] = (x - mean) / std;
            }
        }
        return out;
    }

    private static double pick(double[] v, int k, String what) {
        if (v.length == 1) {
            return v[0];
        }
        if (k >= v.length) {
            throw new Manifest.ManifestException("preprocessing." + what + " has " + v.length
                    + " values; the model takes more channels");
        }
        return v[k];
    }

    static float[] toNhwc(float[] nchw, int c, int h, int w) {
        float[] out = new float[nchw.length];
        for (int k = 0; k < c; k++) {
            for (int p = 0; p < h * w; p++) {
                out[p * c + k] = nchw[k * h * w + p];
            }
        }
        return out;
    }

    /** q = clamp(rint(x / scale) + zero_point) to the int8 or uint8 range, computed in float32 as numpy does. */
    public static byte[] quantize(float[] x, Manifest.Quantization q, String dtype) {
        float scale = (float) q.scale;
        long lo = dtype.equals("uint8") ? 0 : -128;
        long hi = dtype.equals("uint8") ? 255 : 127;
        byte[] out = new byte[x.length];
        for (int k = 0; k < x.length; k++) {
            double r = Math.rint(x[k] / scale); // x / scale rounds to float32 first, as numpy's float32 division
            long v = (long) r + q.zeroPoint;
            out[k] = (byte) Math.max(lo, Math.min(hi, v));
        }
        return out;
    }
}
