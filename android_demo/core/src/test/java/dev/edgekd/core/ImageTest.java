package dev.edgekd.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.junit.Test;

public class ImageTest {
    private static byte[] concat(String header, byte[] body) {
        byte[] h = header.getBytes(StandardCharsets.US_ASCII);
        byte[] out = new byte[h.length + body.length];
        System.arraycopy(h, 0, out, 0, h.length);
        System.arraycopy(body, 0, out, h.length, body.length);
        return out;
    }

    @Test
    public void readsPgmWithAComment() throws IOException {
        byte[] body = {0, (byte) 128, (byte) 255, 32, 10, 9}; // 10 and 9 are whitespace bytes: must stay pixels
        Image im = Image.readPnm(new ByteArrayInputStream(concat("P5\n# made by a test\n3 2\n255\n", body)));
        assertEquals(3, im.width);
        assertEquals(2, im.height);
        assertEquals(1, im.channels);
        assertArrayEquals(body, im.data);
    }

    @Test
    public void readsPpm() throws IOException {
        byte[] body = {1, 2, 3, 4, 5, 6};
        Image im = Image.readPnm(new ByteArrayInputStream(concat("P6 2 1 255\n", body)));
        assertEquals(3, im.channels);
        assertArrayEquals(body, im.data);
    }

    @Test(expected = IOException.class)
    public void rejectsTruncatedFiles() throws IOException {
        Image.readPnm(new ByteArrayInputStream(concat("P5\n4 4\n255\n", new byte[3])));
    }

    @Test
    public void fromArgbDropsAlphaAndKeepsRgbOrder() {
        Image im = Image.fromArgb(new int[] {0xff102030, 0x80ffffff}, 2, 1);
        assertArrayEquals(new byte[] {0x10, 0x20, 0x30, (byte) 255, (byte) 255, (byte) 255}, im.data);
        Image g = im.withChannels(1);
        assertEquals(Image.luma(0x10, 0x20, 0x30), g.data[0] & 0xff);
        assertEquals(3, g.withChannels(3).channels);
    }
}
