package dev.edgekd.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small recursive-descent JSON reader (RFC 8259) using only the JDK.
 *
 * <p>Values map to: object → {@code LinkedHashMap<String, Object>}, array → {@code ArrayList<Object>},
 * string → {@code String}, integer literal → {@code Long}, other number → {@code Double},
 * {@code true}/{@code false} → {@code Boolean}, {@code null} → {@code null}. Python's
 * {@code json.dumps} also writes {@code NaN}, {@code Infinity} and {@code -Infinity}; they are
 * accepted as doubles.
 */
public final class Json {
    private final String s;
    private int i;

    private Json(String text) {
        this.s = text;
    }

    /** Parse one JSON document; trailing non-whitespace is an error. */
    public static Object parse(String text) {
        Json p = new Json(text);
        p.ws();
        Object v = p.value();
        p.ws();
        if (p.i != p.s.length()) {
            throw p.error("trailing characters after the JSON value");
        }
        return v;
    }

    private JsonException error(String what) {
        int line = 1;
        int col = 1;
        for (int k = 0; k < i && k < s.length(); k++) {
            if (s.charAt(k) == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return new JsonException(what + " at line " + line + ", column " + col);
    }

    private void ws() {
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
                i++;
            } else {
                break;
            }
        }
    }

    private Object value() {
        if (i >= s.length()) {
            throw error("unexpected end of input");
        }
        char c = s.charAt(i);
        switch (c) {
            case '{':
                return object();
            case '[':
                return array();
            case '"':
                return string();
            case 't':
                return literal("true", Boolean.TRUE);
            case 'f':
                return literal("false", Boolean.FALSE);
            case 'n':
                return literal("null", null);
            case 'N':
                return literal("NaN", Double.NaN);
            case 'I':
                return literal("Infinity", Double.POSITIVE_INFINITY);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) {
                    return number();
                }
                throw error("unexpected character '" + c + "'");
        }
    }

    private Object literal(String word, Object v) {
        if (!s.startsWith(word, i)) {
            throw error("expected '" + word + "'");
        }
        i += word.length();
        return v;
    }

    private Map<String, Object> object() {
        Map<String, Object> m = new LinkedHashMap<>();
        i++; // {
        ws();
        if (peek() == '}') {
            i++;
            return m;
        }
        while (true) {
            ws();
            if (peek() != '"') {
                throw error("expected a string key");
            }
            String k = string();
            ws();
            expect(':');
            ws();
            m.put(k, value());
            ws();
            char c = next();
            if (c == '}') {
                return m;
            }
            if (c != ',') {
                i--;
                throw error("expected ',' or '}'");
            }
        }
    }

    private List<Object> array() {
        List<Object> a = new ArrayList<>();
        i++; // [
        ws();
        if (peek() == ']') {
            i++;
            return a;
        }
        while (true) {
            ws();
            a.add(value());
            ws();
            char c = next();
            if (c == ']') {
                return a;
            }
            if (c != ',') {
                i--;
                throw error("expected ',' or ']'");
            }
        }
    }

    private String string() {
        i++; // opening quote
        StringBuilder b = new StringBuilder();
        while (true) {
            if (i >= s.length()) {
                throw error("unterminated string");
            }
            char c = s.charAt(i++);
            if (c == '"') {
                return b.toString();
            }
            if (c < 0x20) {
                i--;
                throw error("control character in string");
            }
            if (c != '\\') {
                b.append(c);
                continue;
            }
            char e = next();
            switch (e) {
                case '"': b.append('"'); break;
                case '\\': b.append('\\'); break;
                case '/': b.append('/'); break;
                case 'b': b.append('\b'); break;
                case 'f': b.append('\f'); break;
                case 'n': b.append('\n'); break;
                case 'r': b.append('\r'); break;
                case 't': b.append('\t'); break;
                case 'u':
                    if (i + 4 > s.length()) {
                        throw error("truncated \\u escape");
                    }
                    try {
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                    } catch (NumberFormatException ex) {
                        throw error("bad \\u escape");
                    }
                    i += 4;
                    break;
                default:
                    i--;
                    throw error("bad escape '\\" + e + "'");
            }
        }
    }

    private Object number() {
        int start = i;
        if (peek() == '-') {
            i++;
            if (s.startsWith("Infinity", i)) {
                i += "Infinity".length();
                return Double.NEGATIVE_INFINITY;
            }
        }
        boolean integral = true;
        digits();
        if (i < s.length() && s.charAt(i) == '.') {
            integral = false;
            i++;
            digits();
        }
        if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            integral = false;
            i++;
            if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) {
                i++;
            }
            digits();
        }
        String lex = s.substring(start, i);
        if (integral) {
            try {
                return Long.parseLong(lex);
            } catch (NumberFormatException ex) {
                return Double.parseDouble(lex); // too big for a long
            }
        }
        return Double.parseDouble(lex);
    }

    private void digits() {
        int start = i;
        while (i < s.length() && Character.isDigit(s.charAt(i))) {
            i++;
        }
        if (i == start) {
            throw error("expected a digit");
        }
    }

    private char peek() {
        if (i >= s.length()) {
            throw error("unexpected end of input");
        }
        return s.charAt(i);
    }

    private char next() {
        char c = peek();
        i++;
        return c;
    }

    private void expect(char c) {
        if (next() != c) {
            i--;
            throw error("expected '" + c + "'");
        }
    }

    // -- typed accessors used by Manifest ------------------------------------------------------

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(Object v, String what) {
        if (!(v instanceof Map)) {
            throw new JsonException(what + " must be a JSON object");
        }
        return (Map<String, Object>) v;
    }

    @SuppressWarnings("unchecked")
    static List<Object> arr(Object v, String what) {
        if (!(v instanceof List)) {
            throw new JsonException(what + " must be a JSON array");
        }
        return (List<Object>) v;
    }

    static Object req(Map<String, Object> m, String key, String where) {
        if (!m.containsKey(key)) {
            throw new JsonException(where + " has no \"" + key + "\"");
        }
        return m.get(key);
    }

    static String str(Object v, String what) {
        if (!(v instanceof String)) {
            throw new JsonException(what + " must be a string");
        }
        return (String) v;
    }

    static double num(Object v, String what) {
        if (!(v instanceof Number)) {
            throw new JsonException(what + " must be a number");
        }
        return ((Number) v).doubleValue();
    }

    static long integer(Object v, String what) {
        if (v instanceof Long) {
            return (Long) v;
        }
        if (v instanceof Double && ((Double) v) == Math.rint((Double) v)) {
            return ((Double) v).longValue();
        }
        throw new JsonException(what + " must be an integer");
    }

    /** Thrown on malformed JSON or a value of the wrong type. */
    public static final class JsonException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        public JsonException(String message) {
            super(message);
        }
    }
}
