package dev.edgekd.demo;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.provider.MediaStore;
import android.util.Log;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.ImageView;
import android.widget.Spinner;
import android.widget.TextView;
import dev.edgekd.core.Image;
import dev.edgekd.core.LatencyStats;
import dev.edgekd.core.Manifest;
import dev.edgekd.core.Preprocessor;
import dev.edgekd.core.Tensor;
import dev.edgekd.core.TopK;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Thin Android glue: pick a model file of the bundle and an image, then run the core's
 * preprocessing, the file's runtime (warm-up + timed runs) and the core's top-k. Everything that is
 * not Android lives in :core and is unit-tested on the JVM.
 */
public class MainActivity extends Activity {
    private static final String TAG = "edgekd";
    private static final int REQ_PICK = 1;
    private static final int REQ_CAMERA = 2;
    private static final int TOP_K = 3;
    private static final int THREADS = 2;

    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final Handler ui = new Handler(Looper.getMainLooper());
    private final Map<String, ModelRunner> runners = new HashMap<>(); // touched on the worker thread only

    private Manifest manifest;
    private final List<Manifest.ModelFile> files = new ArrayList<>();
    private Bitmap bitmap;
    private String imageName = "";

    private Spinner fileSpinner;
    private ImageView preview;
    private TextView result;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        setContentView(R.layout.activity_main);
        TextView info = findViewById(R.id.bundle_info);
        fileSpinner = findViewById(R.id.model_file);
        Spinner sampleSpinner = findViewById(R.id.sample);
        preview = findViewById(R.id.preview);
        result = findViewById(R.id.result);
        Button classify = findViewById(R.id.classify);

        try {
            manifest = BundleAssets.manifest(getAssets());
        } catch (IOException | RuntimeException e) {
            info.setText("No usable edgekd bundle in the APK's assets (" + e.getMessage() + ").\n"
                    + "Run: edgekd export MODEL.pt ... --android-assets android_demo/app/src/main/assets, then rebuild.");
            classify.setEnabled(false);
            return;
        }
        List<String> keys = new ArrayList<>();
        for (Manifest.ModelFile f : manifest.files) {
            if (f.format.equals("pte") || f.format.equals("tflite")) {
                files.add(f);
                keys.add(f.key());
            }
        }
        Manifest.Preprocessing pre = manifest.preprocessingOrDefault();
        info.setText(String.format(Locale.ROOT, "%s  (%s %dx%d, %d classes, edgekd %s)", manifest.modelName,
                pre.channelOrder, pre.height, pre.width, manifest.labels == null ? 0 : manifest.labels.size(),
                manifest.edgekdVersion));
        fileSpinner.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item, keys));

        List<String> samples;
        try {
            samples = BundleAssets.samples(getAssets());
        } catch (IOException e) {
            samples = new ArrayList<>();
        }
        final List<String> sampleNames = samples;
        sampleSpinner.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item, sampleNames));
        sampleSpinner.setOnItemSelectedListener(new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, View view, int pos, long id) {
                String name = sampleNames.get(pos);
                showImage(decode(() -> getAssets().open(BundleAssets.SAMPLES + "/" + name)), name);
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {
            }
        });

        findViewById(R.id.pick).setOnClickListener(v ->
                startActivityForResult(new Intent(Intent.ACTION_GET_CONTENT).setType("image/*"), REQ_PICK));
        findViewById(R.id.camera).setOnClickListener(v -> {
            Intent i = new Intent(MediaStore.ACTION_IMAGE_CAPTURE);
            if (i.resolveActivity(getPackageManager()) != null) {
                startActivityForResult(i, REQ_CAMERA); // returns a small thumbnail: enough for small models
            } else {
                result.setText("No camera app on this device.");
            }
        });
        classify.setOnClickListener(v -> classify());
    }

    @Override
    protected void onActivityResult(int request, int resultCode, Intent data) {
        super.onActivityResult(request, resultCode, data);
        if (resultCode != RESULT_OK || data == null) {
            return;
        }
        if (request == REQ_PICK && data.getData() != null) {
            Uri uri = data.getData();
            showImage(decode(() -> getContentResolver().openInputStream(uri)), uri.getLastPathSegment());
        } else if (request == REQ_CAMERA && data.getExtras() != null) {
            showImage((Bitmap) data.getExtras().get("data"), "camera");
        }
    }

    private void showImage(Bitmap b, String name) {
        if (b == null) {
            result.setText("Could not decode " + name);
            return;
        }
        bitmap = b;
        imageName = name;
        preview.setImageBitmap(b);
        result.setText("");
    }

    private interface StreamOpener {
        InputStream open() throws IOException;
    }

    /** Decode as ARGB_8888, subsampled by a power of two while still ≥ 2× the model's input size. */
    private Bitmap decode(StreamOpener opener) {
        try {
            BitmapFactory.Options bounds = new BitmapFactory.Options();
            bounds.inJustDecodeBounds = true;
            try (InputStream in = opener.open()) {
                BitmapFactory.decodeStream(in, null, bounds);
            }
            Manifest.Preprocessing pre = manifest.preprocessingOrDefault();
            int sample = 1;
            while (bounds.outHeight / (2 * sample) >= 2 * pre.height && bounds.outWidth / (2 * sample) >= 2 * pre.width) {
                sample *= 2;
            }
            BitmapFactory.Options opts = new BitmapFactory.Options();
            opts.inSampleSize = sample;
            opts.inPreferredConfig = Bitmap.Config.ARGB_8888;
            try (InputStream in = opener.open()) {
                return BitmapFactory.decodeStream(in, null, opts);
            }
        } catch (IOException e) {
            Log.w(TAG, "decode failed", e);
            return null;
        }
    }

    private static int intOf(EditText e, int fallback) {
        try {
            return Math.max(0, Integer.parseInt(e.getText().toString().trim()));
        } catch (NumberFormatException ex) {
            return fallback;
        }
    }

    private void classify() {
        if (bitmap == null || files.isEmpty()) {
            result.setText(files.isEmpty() ? "The bundle has no .pte or .tflite file." : "Pick an image first.");
            return;
        }
        Manifest.ModelFile file = files.get(fileSpinner.getSelectedItemPosition());
        int warmup = intOf(findViewById(R.id.warmup), 10);
        int runs = Math.max(1, intOf(findViewById(R.id.runs), 100));
        Bitmap b = bitmap;
        String name = imageName;
        result.setText("Running " + file.key() + " …");
        worker.execute(() -> {
            String text;
            try {
                text = runOnWorker(file, b, name, warmup, runs);
            } catch (Exception e) {
                Log.e(TAG, "classify failed", e);
                text = file.key() + " failed: " + e;
            }
            String shown = text;
            ui.post(() -> result.setText(shown));
        });
    }

    private String runOnWorker(Manifest.ModelFile file, Bitmap b, String name, int warmup, int runs) throws IOException {
        ModelRunner runner = runners.get(file.key());
        if (runner == null) {
            runner = ModelRunner.open(file, BundleAssets.materialize(this, file), THREADS);
            runners.put(file.key(), runner);
        }
        int[] argb = new int[b.getWidth() * b.getHeight()];
        b.getPixels(argb, 0, b.getWidth(), 0, 0, b.getWidth(), b.getHeight());
        Tensor input = Preprocessor.preprocess(Image.fromArgb(argb, b.getWidth(), b.getHeight()), manifest, file);

        final ModelRunner r = runner;
        final Tensor[] last = new Tensor[1];
        double[] samplesMs = LatencyStats.measure(() -> last[0] = r.run(input), warmup, runs);
        LatencyStats stats = LatencyStats.fromSamples(samplesMs);
        List<TopK.Prediction> top = TopK.classify(last[0], manifest, file, TOP_K);

        StringBuilder s = new StringBuilder();
        s.append(file.key()).append(" on ").append(r.runtime()).append(", ").append(THREADS).append(" threads\n");
        s.append("image: ").append(name).append("\n\n");
        for (TopK.Prediction p : top) {
            s.append(String.format(Locale.ROOT, "%-16s %6.2f %%\n", p.label, 100 * p.probability));
        }
        s.append(String.format(Locale.ROOT, "\nlatency over %d runs after %d warm-up:\n  p50 %.3f ms   p90 %.3f ms\n"
                + "  mean %.3f  std %.3f  min %.3f  max %.3f ms", stats.n, warmup, stats.p50, stats.p90,
                stats.mean, stats.std, stats.min, stats.max));
        // One line in the runner protocol's vocabulary, for `adb logcat -s edgekd`.
        Log.i(TAG, String.format(Locale.ROOT, "{\"file\": \"%s\", \"runtime\": \"%s\", \"threads\": %d, \"warmup\": %d,"
                + " \"runs\": %d, \"latency_ms\": {\"p50\": %s, \"p90\": %s, \"p99\": %s, \"mean\": %s, \"std\": %s,"
                + " \"min\": %s, \"max\": %s}, \"top1\": %d}", file.key(), r.runtime(), THREADS, warmup, runs,
                stats.p50, stats.p90, stats.p99, stats.mean, stats.std, stats.min, stats.max, top.get(0).index));
        return s.toString();
    }

    @Override
    protected void onDestroy() {
        worker.execute(() -> {
            for (ModelRunner r : runners.values()) {
                r.close();
            }
            runners.clear();
        });
        worker.shutdown();
        super.onDestroy();
    }
}
