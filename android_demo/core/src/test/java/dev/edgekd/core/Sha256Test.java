package dev.edgekd.core;

import static org.junit.Assert.assertEquals;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.junit.Test;

public class Sha256Test {
    @Test
    public void knownDigest() throws IOException {
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                Sha256.hex(new ByteArrayInputStream("abc".getBytes(StandardCharsets.US_ASCII))));
    }
}
