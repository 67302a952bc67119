package dev.edgekd.demo;

import android.content.Context;
import android.content.res.AssetManager;
import dev.edgekd.core.Manifest;
import dev.edgekd.core.Sha256;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** The bundle in the APK's assets: edgekd.json, model files (copied out once), sample images. */
final class BundleAssets {
    static final String MANIFEST = "edgekd.json";
    static final String SAMPLES = "samples";

    private BundleAssets() {
    }

    static Manifest manifest(AssetManager assets) throws IOException {
        try (InputStream in = assets.open(MANIFEST)) {
            return Manifest.read(in);
        }
    }

    /**
     * The model file on internal storage (runtimes want a path to memory-map), copied from the
     * assets when missing or different, and checked against the manifest's size and sha256.
     */
    static File materialize(Context ctx, Manifest.ModelFile f) throws IOException {
        File out = new File(new File(ctx.getFilesDir(), "bundle"), f.path);
        if (out.length() == f.bytes && sha256(out).equals(f.sha256)) {
            return out;
        }
        File dir = out.getParentFile();
        if (dir != null && !dir.isDirectory() && !dir.mkdirs()) {
            throw new IOException("cannot create " + dir);
        }
        File tmp = new File(out.getPath() + ".tmp");
        try (InputStream in = ctx.getAssets().open(f.path); OutputStream os = new FileOutputStream(tmp)) {
            byte[] buf = new byte[1 << 16];
            int n;
            while ((n = in.read(buf)) > 0) {
                os.write(buf, 0, n);
            }
        }
        String got = sha256(tmp);
        if (tmp.length() != f.bytes || !got.equals(f.sha256)) {
            tmp.delete();
            throw new IOException(f.path + " in the APK does not match edgekd.json (sha256 " + got
                    + "); copy the bundle in again with `edgekd export ... --android-assets`");
        }
        if (!tmp.renameTo(out)) {
            throw new IOException("cannot move " + tmp + " to " + out);
        }
        return out;
    }

    private static String sha256(File f) throws IOException {
        if (!f.isFile()) {
            return "";
        }
        try (InputStream in = new FileInputStream(f)) {
            return Sha256.hex(in);
        }
    }

    /** Sample image names under assets/samples (e.g. "03_digit_3.png"), sorted. */
    static List<String> samples(AssetManager assets) throws IOException {
        String[] names = assets.list(SAMPLES);
        List<String> out = new ArrayList<>();
        if (names != null) {
            Arrays.sort(names);
            for (String n : names) {
                String lower = n.toLowerCase(java.util.Locale.ROOT);
                if (lower.endsWith(".png") || lower.endsWith(".jpg") || lower.endsWith(".jpeg")) {
                    out.add(n);
                }
            }
        }
        return out;
    }
}
