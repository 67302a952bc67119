package dev.edgekd.core;

import java.util.Arrays;
import java.util.Locale;

/**
 * Latency summary from raw samples (milliseconds), computed as the Python harness does
 * ({@code edgekd/bench/stats.py}): percentiles by numpy's default linear interpolation
 * (virtual index {@code q/100 * (n-1)}, numpy's two-sided lerp), population standard deviation.
 */
public final class LatencyStats {
    public final int n;
    public final double p50;
    public final double p90;
    public final double p99;
    public final double mean;
    public final double std;
    public final double min;
    public final double max;

    private LatencyStats(int n, double p50, double p90, double p99, double mean, double std, double min, double max) {
        this.n = n;
        this.p50 = p50;
        this.p90 = p90;
        this.p99 = p99;
        this.mean = mean;
        this.std = std;
        this.min = min;
        this.max = max;
    }

    public static LatencyStats fromSamples(double[] samplesMs) {
        if (samplesMs.length == 0) {
            throw new IllegalArgumentException("cannot summarise 0 latency samples; run at least one timed inference");
        }
        double[] a = samplesMs.clone();
        for (double v : a) {
            if (!Double.isFinite(v)) {
                throw new IllegalArgumentException("latency samples must be finite, got " + v);
            }
        }
        Arrays.sort(a);
        double sum = 0;
        for (double v : a) {
            sum += v;
        }
        double mean = sum / a.length;
        double ss = 0;
        for (double v : a) {
            double d = v - mean;
            ss += d * d;
        }
        return new LatencyStats(a.length, percentileSorted(a, 50), percentileSorted(a, 90), percentileSorted(a, 99),
                mean, Math.sqrt(ss / a.length), a[0], a[a.length - 1]);
    }

    /** numpy.percentile(a, q) with the default "linear" method, for an ascending-sorted array. */
    public static double percentileSorted(double[] sorted, double q) {
        int n = sorted.length;
        double vi = (n - 1) * (q / 100.0);
        if (vi >= n - 1) {
            return sorted[n - 1];
        }
        if (vi <= 0) {
            return sorted[0];
        }
        int lo = (int) Math.floor(vi);
        double t = vi - lo;
        double a = sorted[lo];
        double b = sorted[lo + 1];
        double diff = b - a;
        return t >= 0.5 ? b - diff * (1 - t) : a + diff * t; // numpy's _lerp
    }

    /** Time {@code body}: {@code warmup} untimed calls, then {@code runs} timed ones; returns samples in ms. */
    public static double[] measure(Runnable body, int warmup, int runs) {
        if (runs < 1) {
            throw new IllegalArgumentException("runs must be >= 1, not " + runs);
        }
        for (int k = 0; k < warmup; k++) {
            body.run();
        }
        double[] ms = new double[runs];
        for (int k = 0; k < runs; k++) {
            long t0 = System.nanoTime();
            body.run();
            ms[k] = (System.nanoTime() - t0) / 1e6;
        }
        return ms;
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "p50 %.3f ms  p90 %.3f ms  (n=%d, mean %.3f, std %.3f, min %.3f, max %.3f)",
                p50, p90, n, mean, std, min, max);
    }
}
