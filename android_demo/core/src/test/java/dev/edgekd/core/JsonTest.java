package dev.edgekd.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.Test;

public class JsonTest {
    @Test
    public void parsesNestedValues() {
        Map<String, Object> m = Json.obj(Json.parse(" {\"a\": [1, -2.5e3, true, false, null], \"b\": {}, \"c\": []} "), "x");
        List<Object> a = Json.arr(m.get("a"), "a");
        assertEquals(Long.valueOf(1), a.get(0));
        assertEquals(-2500.0, (Double) a.get(1), 0.0);
        assertEquals(Boolean.TRUE, a.get(2));
        assertEquals(Boolean.FALSE, a.get(3));
        assertNull(a.get(4));
        assertTrue(Json.obj(m.get("b"), "b").isEmpty());
        assertTrue(Json.arr(m.get("c"), "c").isEmpty());
        assertEquals(Arrays.asList("a", "b", "c"), Arrays.asList(m.keySet().toArray())); // order kept
    }

    @Test
    public void parsesStringEscapes() {
        assertEquals("q\"b\\s/\n\t\u00e9\u20ac", Json.parse("\"q\\\"b\\\\s\\/\\n\\t\\u00e9\u20ac\""));
    }

    @Test
    public void parsesPythonNonFiniteFloats() {
        List<Object> a = Json.arr(Json.parse("[NaN, Infinity, -Infinity]"), "a");
        assertTrue(Double.isNaN((Double) a.get(0)));
        assertEquals(Double.POSITIVE_INFINITY, (Double) a.get(1), 0.0);
        assertEquals(Double.NEGATIVE_INFINITY, (Double) a.get(2), 0.0);
    }

    @Test
    public void doublesRoundTripExactly() {
        // float32 quantization scales are written by Python as the shortest repr of the double.
        double v = (double) 0.023529412f;
        assertEquals(v, (Double) Json.parse(Double.toString(v)), 0.0);
        assertEquals(0.1307, (Double) Json.parse("0.1307"), 0.0);
    }

    @Test
    public void errorsNameTheLineAndColumn() {
        String[] bad = {"{\"a\": 1,}", "[1 2]", "{\"a\" 1}", "\"abc", "tru", "[1] x", "", "{\"a\": -}"};
        for (String s : bad) {
            try {
                Json.parse(s);
                fail("parsed bad JSON: " + s);
            } catch (Json.JsonException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("line 1, column"));
            }
        }
        try {
            Json.parse("{\n  \"a\": [1,\n  ]\n}");
            fail();
        } catch (Json.JsonException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("line 3, column 3"));
        }
    }
}
