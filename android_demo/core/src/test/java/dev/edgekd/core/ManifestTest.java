package dev.edgekd.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.junit.Test;

public class ManifestTest {
    @Test
    public void readsEveryField() throws IOException {
        String text = Fixtures.manifest("RGB", 32, 24, "0.485, 0.456, 0.406", "0.229, 0.224, 0.225", 10);
        Manifest m = Manifest.read(new ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8)));
        assertEquals(1, m.schemaVersion);
        assertEquals("tiny", m.modelName);
        assertEquals("0.1.0", m.edgekdVersion);
        assertArrayEquals(new long[] {1, 3, 32, 24}, m.inputs.get(0).shape);
        assertEquals(4, m.files.size());
        Manifest.ModelFile f = m.file("tflite/int8/litert-torch");
        assertEquals("model_int8.tflite", f.path);
        assertEquals(1234, f.bytes);
        assertEquals("int8", f.inputs.get(0).dtype);
        assertEquals("NCHW", f.inputs.get(0).layout);
        assertEquals((double) 0.023529412f, f.inputs.get(0).quantization.scale, 1e-12);
        assertEquals(-3, f.inputs.get(0).quantization.zeroPoint);
        assertNull(m.file("model_fp32.pte").inputs.get(0).quantization);
        assertEquals("NHWC", m.file("tflite/fp32/onnx2tf").inputs.get(0).layout);
        Manifest.Preprocessing p = m.preprocessing;
        assertEquals(32, p.height);
        assertEquals(24, p.width);
        assertArrayEquals(new double[] {0.485, 0.456, 0.406}, p.mean, 0.0);
        assertEquals("RGB", p.channelOrder);
        assertEquals(3, p.channels());
        assertEquals("digit 7", m.label(7));
        assertEquals("class 12", m.label(12));
        assertEquals(3, m.filesOfFormat("tflite").size());
    }

    @Test
    public void unknownFileListsTheKnownKeys() {
        try {
            Fixtures.gray(8, 8).file("pte/int8/executorch");
            fail();
        } catch (Manifest.ManifestException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("pte/fp32/executorch, tflite/fp32/onnx2tf"));
        }
    }

    @Test
    public void refusesANewerSchema() {
        try {
            Manifest.parse(Fixtures.manifest("GRAY", 8, 8, "0", "1", 2).replace("\"schema_version\": 1", "\"schema_version\": 2"));
            fail();
        } catch (Manifest.ManifestException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("schema_version 2"));
        }
    }

    @Test
    public void missingKeysAreNamed() {
        try {
            Manifest.parse("{\"schema_version\": 1, \"model_name\": \"m\", \"inputs\": [], \"outputs\": []}");
            fail();
        } catch (Manifest.ManifestException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("\"files\""));
        }
    }

    @Test
    public void defaultPreprocessingComesFromTheLogicalInput() {
        String text = Fixtures.manifest("RGB", 16, 12, "0", "1", 3);
        text = text.substring(0, text.indexOf("  \"preprocessing\"")) + text.substring(text.indexOf("  \"labels\""));
        Manifest m = Manifest.parse(text);
        assertNull(m.preprocessing);
        Manifest.Preprocessing p = m.preprocessingOrDefault();
        assertEquals(16, p.height);
        assertEquals(12, p.width);
        assertEquals("RGB", p.channelOrder);
        assertArrayEquals(new double[] {1, 1, 1}, p.std, 0.0);
    }
}
