package dev.edgekd.core;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/**
 * Command-line entry point of the core, for the cross-language test and for debugging a bundle
 * on a desktop JVM:
 *
 * <pre>
 *   java -cp build/classes dev.edgekd.core.Cli info       edgekd.json
 *   java -cp build/classes dev.edgekd.core.Cli preprocess edgekd.json FILE_KEY image.pgm|ppm|png|jpg out.bin
 *   java -cp build/classes dev.edgekd.core.Cli topk       edgekd.json FILE_KEY output.bin K
 *   java -cp build/classes dev.edgekd.core.Cli stats      samples_ms.txt
 * </pre>
 *
 * {@code out.bin}/{@code output.bin} hold raw little-endian values in the file's own dtype (numpy
 * {@code tobytes()}). Exit code 0 on success, 1 on a bad bundle or input, 2 on bad usage.
 */
public final class Cli {
    private Cli() {
    }

    public static void main(String[] args) {
        try {
            System.exit(run(args));
        } catch (IOException | RuntimeException e) {
            System.err.println("edgekd-core: " + e.getMessage());
            System.exit(1);
        }
    }

    static int run(String[] a) throws IOException {
        String cmd = a.length > 0 ? a[0] : "";
        switch (cmd) {
            case "info":
                if (a.length != 2) {
                    return usage();
                }
                info(manifest(a[1]));
                return 0;
            case "preprocess":
                if (a.length != 5) {
                    return usage();
                }
                return preprocess(manifest(a[1]), a[2], Paths.get(a[3]), Paths.get(a[4]));
            case "topk":
                if (a.length != 5) {
                    return usage();
                }
                return topk(manifest(a[1]), a[2], Paths.get(a[3]), Integer.parseInt(a[4]));
            case "stats":
                if (a.length != 2) {
                    return usage();
                }
                return stats(Paths.get(a[1]));
            default:
                return usage();
        }
    }

    private static int usage() {
        System.err.println("usage: Cli info EDGEKD_JSON\n"
                + "       Cli preprocess EDGEKD_JSON FILE_KEY IMAGE.pgm|ppm|png|jpg|bmp OUT.bin\n"
                + "       Cli topk EDGEKD_JSON FILE_KEY OUTPUT.bin K\n"
                + "       Cli stats SAMPLES_MS.txt");
        return 2;
    }

    private static Manifest manifest(String path) throws IOException {
        try (InputStream in = Files.newInputStream(Paths.get(path))) {
            return Manifest.read(in);
        }
    }

    private static void info(Manifest m) {
        System.out.println("model " + m.modelName + " (schema " + m.schemaVersion + ", edgekd " + m.edgekdVersion + ")");
        for (Manifest.ModelFile f : m.files) {
            System.out.println("  " + f + "  in: " + f.inputs.get(0) + "  out: " + f.outputs.get(0));
        }
    }

    private static int preprocess(Manifest m, String key, Path image, Path out) throws IOException {
        Image img;
        byte[] head = new byte[2];
        try (InputStream in = Files.newInputStream(image)) {
            int n = in.read(head);
            if (n < 2) {
                throw new IOException(image + " is empty or truncated");
            }
        }
        boolean pnm = head[0] == 'P' && (head[1] == '5' || head[1] == '6');
        try (InputStream in = Files.newInputStream(image)) {
            img = pnm ? Image.readPnm(in) : Image.decode(in);
        }
        Tensor t = Preprocessor.preprocess(img, m, m.file(key));
        Files.write(out, t.toLittleEndian());
        StringBuilder shape = new StringBuilder();
        for (long s : t.shape) {
            shape.append(shape.length() == 0 ? "" : ",").append(s);
        }
        System.out.println("shape=" + shape + " dtype=" + t.dtype);
        return 0;
    }

    private static int topk(Manifest m, String key, Path output, int k) throws IOException {
        Manifest.ModelFile f = m.file(key);
        Manifest.TensorSpec spec = f.outputs.get(0);
        Tensor raw = Tensor.fromLittleEndian(spec.shape, spec.dtype, Files.readAllBytes(output));
        for (TopK.Prediction p : TopK.classify(raw, m, f, k)) {
            System.out.println(p.index + "\t" + p.probability + "\t" + p.label);
        }
        return 0;
    }

    private static int stats(Path samples) throws IOException {
        List<Double> v = new ArrayList<>();
        for (String line : new String(Files.readAllBytes(samples), StandardCharsets.UTF_8).split("\\s+")) {
            if (!line.isEmpty()) {
                v.add(Double.parseDouble(line));
            }
        }
        double[] a = new double[v.size()];
        for (int k = 0; k < a.length; k++) {
            a[k] = v.get(k);
        }
        LatencyStats s = LatencyStats.fromSamples(a);
        System.out.println("p50=" + s.p50 + " p90=" + s.p90 + " p99=" + s.p99 + " mean=" + s.mean
                + " std=" + s.std + " min=" + s.min + " max=" + s.max);
        return 0;
    }
}
