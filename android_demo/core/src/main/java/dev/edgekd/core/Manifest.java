package dev.edgekd.core;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The bundle manifest {@code edgekd.json}, as written by {@code edgekd/bundle.py}.
 *
 * <p>{@link #inputs}/{@link #outputs} are the logical view (float32, NCHW); each {@link ModelFile}
 * carries its own view (layout NCHW/NHWC, dtype, quantization). Unknown keys are ignored so that
 * later additive schema changes do not break old apps; a newer {@code schema_version} is refused.
 */
public final class Manifest {
    /** The newest {@code schema_version} this reader understands (same as bundle.py). */
    public static final int SCHEMA_VERSION = 1;

    public final int schemaVersion;
    public final String modelName;
    public final String edgekdVersion;
    public final List<TensorSpec> inputs;
    public final List<TensorSpec> outputs;
    public final List<ModelFile> files;
    /** May be null when the bundle was exported without preprocessing; see {@link #preprocessingOrDefault}. */
    public final Preprocessing preprocessing;
    /** May be null. */
    public final List<String> labels;

    private Manifest(int schemaVersion, String modelName, String edgekdVersion, List<TensorSpec> inputs,
                     List<TensorSpec> outputs, List<ModelFile> files, Preprocessing preprocessing,
                     List<String> labels) {
        this.schemaVersion = schemaVersion;
        this.modelName = modelName;
        this.edgekdVersion = edgekdVersion;
        this.inputs = inputs;
        this.outputs = outputs;
        this.files = files;
        this.preprocessing = preprocessing;
        this.labels = labels;
    }

    // -- parsing ---------------------------------------------------------------------------------

    public static Manifest parse(String json) {
        try {
            return fromMap(Json.obj(Json.parse(json), "edgekd.json"));
        } catch (Json.JsonException e) {
            throw new ManifestException("edgekd.json: " + e.getMessage());
        }
    }

    public static Manifest read(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] chunk = new byte[8192];
        int n;
        while ((n = in.read(chunk)) > 0) {
            buf.write(chunk, 0, n);
        }
        return parse(new String(buf.toByteArray(), StandardCharsets.UTF_8));
    }

    private static Manifest fromMap(Map<String, Object> d) {
        int version = d.containsKey("schema_version") ? (int) Json.integer(d.get("schema_version"), "schema_version") : 0;
        if (version > SCHEMA_VERSION) {
            throw new ManifestException("edgekd.json has schema_version " + version
                    + ", newer than this app reads (" + SCHEMA_VERSION + "); update the app's edgekd core");
        }
        List<ModelFile> files = new ArrayList<>();
        for (Object f : Json.arr(Json.req(d, "files", "edgekd.json"), "files")) {
            files.add(ModelFile.fromMap(Json.obj(f, "files[]")));
        }
        Object pre = d.get("preprocessing");
        Object labels = d.get("labels");
        List<String> labelList = null;
        if (labels != null) {
            labelList = new ArrayList<>();
            for (Object l : Json.arr(labels, "labels")) {
                labelList.add(Json.str(l, "labels[]"));
            }
            labelList = Collections.unmodifiableList(labelList);
        }
        Object ver = d.get("edgekd_version");
        return new Manifest(
                version,
                Json.str(Json.req(d, "model_name", "edgekd.json"), "model_name"),
                ver == null ? "" : Json.str(ver, "edgekd_version"),
                specs(Json.req(d, "inputs", "edgekd.json"), "inputs"),
                specs(Json.req(d, "outputs", "edgekd.json"), "outputs"),
                Collections.unmodifiableList(files),
                pre == null ? null : Preprocessing.fromMap(Json.obj(pre, "preprocessing")),
                labelList);
    }

    static List<TensorSpec> specs(Object v, String what) {
        List<TensorSpec> out = new ArrayList<>();
        for (Object t : Json.arr(v, what)) {
            out.add(TensorSpec.fromMap(Json.obj(t, what + "[]")));
        }
        return Collections.unmodifiableList(out);
    }

    // -- queries ---------------------------------------------------------------------------------

    /** Look a file up by its key ({@code pte/int8/executorch}) or its relative path. */
    public ModelFile file(String keyOrPath) {
        for (ModelFile f : files) {
            if (f.key().equals(keyOrPath) || f.path.equals(keyOrPath)) {
                return f;
            }
        }
        StringBuilder known = new StringBuilder();
        for (ModelFile f : files) {
            known.append(known.length() == 0 ? "" : ", ").append(f.key());
        }
        throw new ManifestException("the bundle has no file '" + keyOrPath + "'; it has: " + known);
    }

    /** Files of one format ("pte" or "tflite"), in manifest order. */
    public List<ModelFile> filesOfFormat(String format) {
        List<ModelFile> out = new ArrayList<>();
        for (ModelFile f : files) {
            if (f.format.equals(format)) {
                out.add(f);
            }
        }
        return out;
    }

    /** The label of class {@code index}, or {@code "class <index>"} when the bundle has none. */
    public String label(int index) {
        if (labels != null && index >= 0 && index < labels.size()) {
            return labels.get(index);
        }
        return "class " + index;
    }

    /**
     * The manifest's preprocessing, or — when absent — one derived from the logical input: its
     * spatial size, mean 0, std 1, GRAY for one channel else RGB, scale 1/255.
     */
    public Preprocessing preprocessingOrDefault() {
        if (preprocessing != null) {
            return preprocessing;
        }
        long[] s = inputs.get(0).shape;
        if (s.length != 4) {
            throw new ManifestException("the bundle has no preprocessing and its input is not an image (shape "
                    + TensorSpec.shapeString(s) + ")");
        }
        int c = (int) s[1];
        double[] zeros = new double[c];
        double[] ones = new double[c];
        java.util.Arrays.fill(ones, 1.0);
        return new Preprocessing((int) s[2], (int) s[3], zeros, ones, c == 1 ? "GRAY" : "RGB", 1.0 / 255.0);
    }

    // -- value classes -----------------------------------------------------------------------------

    /** Affine int quantization: real = (q - zeroPoint) * scale. */
    public static final class Quantization {
        public final double scale;
        public final long zeroPoint;

        public Quantization(double scale, long zeroPoint) {
            this.scale = scale;
            this.zeroPoint = zeroPoint;
        }
    }

    /** One tensor as a file (or the logical model) sees it. */
    public static final class TensorSpec {
        public final String name;
        public final long[] shape;
        /** numpy dtype name: float32, int8, uint8, int32, int64. */
        public final String dtype;
        /** "NCHW", "NHWC" or null (not an image tensor). */
        public final String layout;
        /** May be null. */
        public final Quantization quantization;

        public TensorSpec(String name, long[] shape, String dtype, String layout, Quantization quantization) {
            this.name = name;
            this.shape = shape;
            this.dtype = dtype;
            this.layout = layout;
            this.quantization = quantization;
        }

        static TensorSpec fromMap(Map<String, Object> d) {
            List<Object> sh = Json.arr(Json.req(d, "shape", "tensor"), "shape");
            long[] shape = new long[sh.size()];
            for (int k = 0; k < shape.length; k++) {
                shape[k] = Json.integer(sh.get(k), "shape[]");
            }
            Object q = d.get("quantization");
            Quantization quant = null;
            if (q != null) {
                Map<String, Object> qm = Json.obj(q, "quantization");
                quant = new Quantization(Json.num(Json.req(qm, "scale", "quantization"), "scale"),
                        Json.integer(Json.req(qm, "zero_point", "quantization"), "zero_point"));
            }
            Object layout = d.get("layout");
            Object name = d.get("name");
            return new TensorSpec(name == null ? "" : Json.str(name, "name"), shape,
                    Json.str(Json.req(d, "dtype", "tensor"), "dtype"),
                    layout == null ? null : Json.str(layout, "layout"), quant);
        }

        public long numel() {
            long n = 1;
            for (long s : shape) {
                n *= s;
            }
            return n;
        }

        public boolean isQuantizedInt() {
            return quantization != null && quantization.scale != 0.0 && ("int8".equals(dtype) || "uint8".equals(dtype));
        }

        static String shapeString(long[] s) {
            StringBuilder b = new StringBuilder("[");
            for (int k = 0; k < s.length; k++) {
                b.append(k == 0 ? "" : ", ").append(s[k]);
            }
            return b.append(']').toString();
        }

        @Override
        public String toString() {
            return name + " " + dtype + shapeString(shape) + (layout == null ? "" : " " + layout)
                    + (quantization == null ? "" : " q(scale=" + quantization.scale + ", zp=" + quantization.zeroPoint + ")");
        }
    }

    /** One model file of the bundle. */
    public static final class ModelFile {
        public final String path;
        public final String format;
        public final String precision;
        public final String converter;
        public final long bytes;
        public final String sha256;
        public final List<TensorSpec> inputs;
        public final List<TensorSpec> outputs;

        ModelFile(String path, String format, String precision, String converter, long bytes, String sha256,
                  List<TensorSpec> inputs, List<TensorSpec> outputs) {
            this.path = path;
            this.format = format;
            this.precision = precision;
            this.converter = converter;
            this.bytes = bytes;
            this.sha256 = sha256;
            this.inputs = inputs;
            this.outputs = outputs;
        }

        static ModelFile fromMap(Map<String, Object> d) {
            String where = "files[]";
            return new ModelFile(
                    Json.str(Json.req(d, "path", where), "path"),
                    Json.str(Json.req(d, "format", where), "format"),
                    Json.str(Json.req(d, "precision", where), "precision"),
                    Json.str(Json.req(d, "converter", where), "converter"),
                    Json.integer(Json.req(d, "bytes", where), "bytes"),
                    Json.str(Json.req(d, "sha256", where), "sha256"),
                    specs(Json.req(d, "inputs", where), "inputs"),
                    specs(Json.req(d, "outputs", where), "outputs"));
        }

        /** A short unique label, e.g. {@code tflite/int8/litert-torch} (same as bundle.py). */
        public String key() {
            return format + "/" + precision + "/" + converter;
        }

        @Override
        public String toString() {
            return key() + " (" + path + ", " + bytes + " bytes)";
        }
    }

    /**
     * What an app does to a decoded image before the model: channels, resize ({@code resize} "exact": straight to
     * height×width; "shorter_side": the shorter side to {@code resizeTo}, keeping the aspect ratio), a centre crop
     * of height×width ({@code crop} "center"), to [0, 1] by {@code scale}, then (x - mean) / std.
     */
    public static final class Preprocessing {
        public final int height;
        public final int width;
        public final double[] mean;
        public final double[] std;
        /** "GRAY", "RGB" or "BGR": the channel order the model takes. */
        public final String channelOrder;
        /** raw pixel → [0, 1] before mean/std. */
        public final double scale;
        /** "exact" or "shorter_side". */
        public final String resize;
        /** The shorter side's length before the crop ("shorter_side"); 0 otherwise. */
        public final int resizeTo;
        /** "none" or "center". */
        public final String crop;

        public Preprocessing(int height, int width, double[] mean, double[] std, String channelOrder, double scale) {
            this(height, width, mean, std, channelOrder, scale, "exact", 0, "none");
        }

        public Preprocessing(int height, int width, double[] mean, double[] std, String channelOrder, double scale,
                             String resize, int resizeTo, String crop) {
            this.height = height;
            this.width = width;
            this.mean = mean;
            this.std = std;
            this.channelOrder = channelOrder;
            this.scale = scale;
            this.resize = resize;
            this.resizeTo = resizeTo;
            this.crop = crop;
        }

        static Preprocessing fromMap(Map<String, Object> d) {
            String where = "preprocessing";
            List<Object> size = Json.arr(Json.req(d, "size", where), "preprocessing.size");
            if (size.size() != 2) {
                throw new ManifestException("preprocessing.size must be [height, width]");
            }
            Object order = d.get("channel_order");
            Object scale = d.get("scale");
            String co = order == null ? "GRAY" : Json.str(order, "channel_order");
            if (!co.equals("GRAY") && !co.equals("RGB") && !co.equals("BGR")) {
                throw new ManifestException("preprocessing.channel_order '" + co + "' is not GRAY, RGB or BGR");
            }
            String resize = d.get("resize") == null ? "exact" : Json.str(d.get("resize"), "resize");
            String crop = d.get("crop") == null ? "none" : Json.str(d.get("crop"), "crop");
            String interpolation = d.get("interpolation") == null ? "bilinear" : Json.str(d.get("interpolation"), "interpolation");
            int resizeTo = d.get("resize_to") == null ? 0 : (int) Json.integer(d.get("resize_to"), "resize_to");
            int h = (int) Json.integer(size.get(0), "size[0]");
            int w = (int) Json.integer(size.get(1), "size[1]");
            if (!resize.equals("exact") && !(resize.equals("shorter_side") && crop.equals("center")
                    && resizeTo >= Math.max(h, w))) {
                throw new ManifestException("preprocessing.resize '" + resize + "' (resize_to " + resizeTo + ", crop '"
                        + crop + "') is not 'exact', or 'shorter_side' with crop 'center' and resize_to >= the size");
            }
            if (!crop.equals("none") && !crop.equals("center")) {
                throw new ManifestException("preprocessing.crop '" + crop + "' is not none or center");
            }
            if (!interpolation.equals("bilinear")) {
                throw new ManifestException("preprocessing.interpolation '" + interpolation + "' is not bilinear");
            }
            return new Preprocessing(h, w,
                    doubles(Json.req(d, "mean", where), "mean"),
                    doubles(Json.req(d, "std", where), "std"),
                    co,
                    scale == null ? 1.0 / 255.0 : Json.num(scale, "scale"),
                    resize, resizeTo, crop);
        }

        /** {height, width} an image of {@code h}×{@code w} is resized to before the crop (as torchvision's Resize). */
        public int[] resized(int h, int w) {
            if (resize.equals("exact")) {
                return new int[] {height, width};
            }
            int shortSide = Math.min(h, w);
            int longSide = Math.max(h, w);
            int newLong = (int) (resizeTo * (double) longSide / shortSide);
            return w <= h ? new int[] {newLong, resizeTo} : new int[] {resizeTo, newLong};
        }

        /** {top, left} of the height×width crop in a resized image of {@code h}×{@code w} (round half to even). */
        public int[] cropBox(int h, int w) {
            if (crop.equals("none")) {
                return new int[] {0, 0};
            }
            return new int[] {(int) Math.rint((h - height) / 2.0), (int) Math.rint((w - width) / 2.0)};
        }

        private static double[] doubles(Object v, String what) {
            List<Object> a = Json.arr(v, what);
            double[] out = new double[a.size()];
            for (int k = 0; k < out.length; k++) {
                out[k] = Json.num(a.get(k), what + "[]");
            }
            return out;
        }

        /** The number of channels the model takes: 1 for GRAY, else 3. */
        public int channels() {
            return channelOrder.equals("GRAY") ? 1 : 3;
        }
    }

    /** The manifest is malformed or asks for something this reader cannot do. */
    public static final class ManifestException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public ManifestException(String message) {
            super(message);
        }
    }
}
