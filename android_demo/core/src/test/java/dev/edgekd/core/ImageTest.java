package dev.edgekd.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;

import java.awt.image.BufferedImage;
import java.awt.image.IndexColorModel;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import javax.imageio.ImageIO;
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

    private static Image png(BufferedImage im) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ImageIO.write(im, "png", out);
        return Image.decode(new ByteArrayInputStream(out.toByteArray()));
    }

    @Test
    public void decodesPalette16BitAndAlphaByEdgekdsRules() throws IOException {
        byte[] r = {10, (byte) 200};
        byte[] g = {20, (byte) 100};
        byte[] b = {30, 0};
        BufferedImage pal = new BufferedImage(2, 1, BufferedImage.TYPE_BYTE_INDEXED, new IndexColorModel(1, 2, r, g, b));
        pal.getRaster().setSample(0, 0, 0, 1);
        pal.getRaster().setSample(1, 0, 0, 0);
        Image p = png(pal);
        assertEquals(3, p.channels);
        assertArrayEquals(new byte[] {(byte) 200, 100, 0, 10, 20, 30}, p.data); // expanded, not indices

        BufferedImage wide = new BufferedImage(3, 1, BufferedImage.TYPE_USHORT_GRAY);
        int[] v = {0, 32896, 65535};
        for (int x = 0; x < 3; x++) {
            wide.getRaster().setSample(x, 0, 0, v[x]);
        }
        Image w = png(wide);
        assertEquals(1, w.channels);
        assertArrayEquals(new byte[] {0, (byte) 128, (byte) 255}, w.data); // (v + 128) / 257

        BufferedImage argb = new BufferedImage(1, 1, BufferedImage.TYPE_INT_ARGB);
        argb.setRGB(0, 0, 0x40112233);
        Image a = png(argb);
        assertEquals(3, a.channels);
        assertArrayEquals(new byte[] {0x11, 0x22, 0x33}, a.data); // alpha dropped, colour kept

        BufferedImage gray = new BufferedImage(2, 1, BufferedImage.TYPE_BYTE_GRAY);
        gray.getRaster().setSample(0, 0, 0, 77);
        gray.getRaster().setSample(1, 0, 0, 201);
        assertArrayEquals(new byte[] {77, (byte) 201}, png(gray).data); // raw samples, no colour conversion
    }

    @Test(expected = IOException.class)
    public void decodeRejectsWhatIsNotAnImage() throws IOException {
        Image.decode(new ByteArrayInputStream("not an image".getBytes(StandardCharsets.US_ASCII)));
    }
}
