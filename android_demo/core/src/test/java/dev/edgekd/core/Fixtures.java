package dev.edgekd.core;

import java.util.Locale;

/** Manifests shaped like those edgekd/bundle.py writes, built from a few parameters. */
final class Fixtures {
    private Fixtures() {
    }

    static String tensor(String name, String shape, String dtype, String layout, String quant) {
        return "{\"name\": \"" + name + "\", \"shape\": [" + shape + "], \"dtype\": \"" + dtype + "\", \"layout\": "
                + (layout == null ? "null" : "\"" + layout + "\"") + ", \"quantization\": "
                + (quant == null ? "null" : quant) + "}";
    }

    static String quant(double scale, int zp) {
        return String.format(Locale.ROOT, "{\"scale\": %s, \"zero_point\": %d}", Double.toString(scale), zp);
    }

    static String file(String path, String format, String precision, String converter, String in, String out) {
        return "{\"path\": \"" + path + "\", \"format\": \"" + format + "\", \"precision\": \"" + precision
                + "\", \"converter\": \"" + converter + "\", \"bytes\": 1234, \"sha256\": \"ab12\", \"inputs\": [" + in
                + "], \"outputs\": [" + out + "], \"parity\": {\"n_samples\": 16, \"max_abs_error\": 1.5e-06,"
                + " \"mean_abs_error\": 2e-07, \"top1_agreement\": 1.0, \"accuracy\": null, \"accuracy_eager\": NaN,"
                + " \"thresholds\": {\"max_abs_error\": 0.001}, \"passed\": true}, \"extra\": {\"ops\": [\"conv\"]}}";
    }

    /**
     * A bundle with channel order {@code order} (GRAY → 1 channel, else 3), size h×w, and four files:
     * pte fp32 (NCHW float), tflite fp32 onnx2tf (NHWC float), tflite int8 litert-torch (NCHW int8 in/out),
     * tflite int8 onnx2tf (NHWC uint8 in, int8 out).
     */
    static String manifest(String order, int h, int w, String mean, String std, int classes) {
        int c = order.equals("GRAY") ? 1 : 3;
        String nchw = "1, " + c + ", " + h + ", " + w;
        String nhwc = "1, " + h + ", " + w + ", " + c;
        String out = "1, " + classes;
        String logical = tensor("input", nchw, "float32", "NCHW", null);
        String logits = tensor("output", out, "float32", null, null);
        StringBuilder labels = new StringBuilder();
        for (int k = 0; k < classes; k++) {
            labels.append(k == 0 ? "" : ", ").append("\"digit ").append(k).append("\"");
        }
        return "{\n  \"schema_version\": 1,\n  \"model_name\": \"tiny\",\n  \"inputs\": [" + logical + "],\n"
                + "  \"outputs\": [" + logits + "],\n  \"files\": [\n"
                + file("model_fp32.pte", "pte", "fp32", "executorch", logical, logits) + ",\n"
                + file("model_fp32.tflite", "tflite", "fp32", "onnx2tf",
                        tensor("serving_default_input:0", nhwc, "float32", "NHWC", null), logits) + ",\n"
                + file("model_int8.tflite", "tflite", "int8", "litert-torch",
                        tensor("args_0", nchw, "int8", "NCHW", quant(0.0235294122248888, -3)),
                        tensor("out", out, "int8", null, quant(0.125, 5))) + ",\n"
                + file("model_int8_onnx2tf.tflite", "tflite", "int8", "onnx2tf",
                        tensor("in", nhwc, "uint8", "NHWC", quant(0.02, 128)),
                        tensor("out", out, "int8", null, quant(0.25, -2))) + "\n"
                + "  ],\n  \"preprocessing\": {\"size\": [" + h + ", " + w + "], \"mean\": [" + mean + "], \"std\": ["
                + std + "], \"channel_order\": \"" + order + "\", \"scale\": 0.00392156862745098},\n"
                + "  \"labels\": [" + labels + "],\n  \"edgekd_version\": \"0.1.0\",\n"
                + "  \"extra\": {\"calibration_samples\": 64, \"parity_samples\": 16}\n}\n";
    }

    static Manifest gray(int h, int w) {
        return Manifest.parse(manifest("GRAY", h, w, "0.5", "0.25", 4));
    }
}
