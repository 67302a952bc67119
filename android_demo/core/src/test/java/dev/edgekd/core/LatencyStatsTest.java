package dev.edgekd.core;

import static org.junit.Assert.assertEquals;

import org.junit.Test;

public class LatencyStatsTest {
    @Test
    public void percentilesInterpolateLinearlyLikeNumpy() {
        // numpy.percentile(range(1, 11), [50, 90, 99]) == [5.5, 9.1, 9.91]
        double[] a = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
        LatencyStats s = LatencyStats.fromSamples(a);
        assertEquals(5.5, s.p50, 1e-12);
        assertEquals(9.1, s.p90, 1e-12);
        assertEquals(9.91, s.p99, 1e-12);
        assertEquals(5.5, s.mean, 0.0);
        assertEquals(Math.sqrt(8.25), s.std, 1e-12); // population std of 1..10
        assertEquals(1, s.min, 0.0);
        assertEquals(10, s.max, 0.0);
        assertEquals(10, s.n);
    }

    @Test
    public void oneSampleIsEveryStatistic() {
        LatencyStats s = LatencyStats.fromSamples(new double[] {3.25});
        assertEquals(3.25, s.p50, 0.0);
        assertEquals(3.25, s.p99, 0.0);
        assertEquals(0.0, s.std, 0.0);
    }

    @Test(expected = IllegalArgumentException.class)
    public void noSamplesIsAnError() {
        LatencyStats.fromSamples(new double[0]);
    }

    @Test
    public void measureRunsWarmupThenTimedCalls() {
        int[] calls = {0};
        double[] ms = LatencyStats.measure(() -> calls[0]++, 3, 5);
        assertEquals(8, calls[0]);
        assertEquals(5, ms.length);
        for (double v : ms) {
            assertEquals(true, v >= 0);
        }
    }
}
