package dev.edgekd.core;

import java.awt.image.BufferedImage;
import java.awt.image.IndexColorModel;
import java.awt.image.Raster;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import javax.imageio.ImageIO;

/**
 * An 8-bit image, row-major HWC, with 1 (gray) or 3 (R, G, B in that order) channels.
 *
 * <p>Android glue builds one from {@code Bitmap.getPixels} with {@link #fromArgb}; on a desktop JVM
 * {@link #decode} reads JPEG, PNG, BMP and GIF files (javax.imageio) with the same rules as edgekd's Python
 * decoder, and tests read binary PGM/PPM files with {@link #readPnm}. Pixels are unsigned: read them with
 * {@code data[i] & 0xff}.
 */
public final class Image {
    public final int width;
    public final int height;
    public final int channels;
    public final byte[] data;

    public Image(int width, int height, int channels, byte[] data) {
        if (channels != 1 && channels != 3) {
            throw new IllegalArgumentException("an image has 1 or 3 channels, not " + channels);
        }
        if (width <= 0 || height <= 0 || data.length != width * height * channels) {
            throw new IllegalArgumentException("image data of " + data.length + " bytes does not fit "
                    + height + "x" + width + "x" + channels);
        }
        this.width = width;
        this.height = height;
        this.channels = channels;
        this.data = data;
    }

    /** From packed ARGB ints (as {@code android.graphics.Bitmap.getPixels} returns); alpha is dropped. */
    public static Image fromArgb(int[] argb, int width, int height) {
        byte[] d = new byte[width * height * 3];
        for (int p = 0; p < width * height; p++) {
            int c = argb[p];
            d[3 * p] = (byte) ((c >> 16) & 0xff);
            d[3 * p + 1] = (byte) ((c >> 8) & 0xff);
            d[3 * p + 2] = (byte) (c & 0xff);
        }
        return new Image(width, height, 3, d);
    }

    /** ITU-R BT.601 luma in integers: {@code (299 R + 587 G + 114 B + 500) / 1000}. */
    public static int luma(int r, int g, int b) {
        return (299 * r + 587 * g + 114 * b + 500) / 1000;
    }

    /** This image with {@code c} channels: RGB → gray by {@link #luma}, gray → RGB by repetition. */
    public Image withChannels(int c) {
        if (c == channels) {
            return this;
        }
        int n = width * height;
        byte[] d = new byte[n * c];
        for (int p = 0; p < n; p++) {
            if (c == 1) {
                d[p] = (byte) luma(data[3 * p] & 0xff, data[3 * p + 1] & 0xff, data[3 * p + 2] & 0xff);
            } else {
                d[3 * p] = d[3 * p + 1] = d[3 * p + 2] = data[p];
            }
        }
        return new Image(width, height, c, d);
    }

    /**
     * Decode an image file with javax.imageio (not on Android, which uses {@code BitmapFactory} and
     * {@link #fromArgb}) by edgekd's rules ({@code edgekd.data.decode}): gray stays one channel, a palette is
     * expanded to RGB, alpha is dropped, 16-bit samples become {@code (v + 128) / 257}. Samples are read from
     * the raster, never through {@code getRGB}, which would colour-convert gray images.
     */
    public static Image decode(InputStream in) throws IOException {
        BufferedImage im = ImageIO.read(in);
        if (im == null) {
            throw new IOException("not an image javax.imageio can decode (JPEG, PNG, BMP, GIF)");
        }
        int w = im.getWidth();
        int h = im.getHeight();
        Raster r = im.getRaster();
        if (im.getColorModel() instanceof IndexColorModel) {
            IndexColorModel cm = (IndexColorModel) im.getColorModel();
            byte[] d = new byte[w * h * 3];
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    int i = r.getSample(x, y, 0);
                    int p = 3 * (y * w + x);
                    d[p] = (byte) cm.getRed(i);
                    d[p + 1] = (byte) cm.getGreen(i);
                    d[p + 2] = (byte) cm.getBlue(i);
                }
            }
            return new Image(w, h, 3, d);
        }
        int bands = r.getNumBands();
        int c = bands <= 2 ? 1 : 3;
        boolean wide = r.getSampleModel().getSampleSize(0) > 8;
        byte[] d = new byte[w * h * c];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                for (int k = 0; k < c; k++) {
                    int v = r.getSample(x, y, k);
                    d[(y * w + x) * c + k] = (byte) (wide ? (v + 128) / 257 : v);
                }
            }
        }
        return new Image(w, h, c, d);
    }

    /** Read a binary PGM (P5, gray) or PPM (P6, RGB) file with maxval ≤ 255. */
    public static Image readPnm(InputStream raw) throws IOException {
        InputStream in = new BufferedInputStream(raw);
        String magic = token(in);
        int channels;
        if (magic.equals("P5")) {
            channels = 1;
        } else if (magic.equals("P6")) {
            channels = 3;
        } else {
            throw new IOException("not a binary PGM/PPM file (magic '" + magic + "')");
        }
        int w = Integer.parseInt(token(in));
        int h = Integer.parseInt(token(in));
        int maxval = Integer.parseInt(token(in));
        if (maxval <= 0 || maxval > 255) {
            throw new IOException("PGM/PPM maxval " + maxval + " is not 1..255");
        }
        byte[] d = new byte[w * h * channels];
        int off = 0;
        while (off < d.length) {
            int n = in.read(d, off, d.length - off);
            if (n < 0) {
                throw new IOException("PGM/PPM file is truncated");
            }
            off += n;
        }
        return new Image(w, h, channels, d);
    }

    /** A whitespace-separated header token; '#' comments run to the end of the line. */
    private static String token(InputStream in) throws IOException {
        StringBuilder b = new StringBuilder();
        int c;
        while ((c = in.read()) >= 0) {
            if (c == '#' && b.length() == 0) {
                while ((c = in.read()) >= 0 && c != '\n') {
                    // skip the comment
                }
                continue;
            }
            if (Character.isWhitespace(c)) {
                if (b.length() > 0) {
                    return b.toString(); // the single whitespace after maxval is consumed here
                }
                continue;
            }
            b.append((char) c);
        }
        if (b.length() == 0) {
            throw new IOException("PGM/PPM header is truncated");
        }
        return b.toString();
    }
}
