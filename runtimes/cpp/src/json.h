// A minimal JSON writer: one object per line, as the protocol wants.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace edgekd {

class Json {
 public:
  static std::string str(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += static_cast<char>(c);
          }
      }
    }
    return out + "\"";
  }
  // Shortest text that reads back as the same double (like Python's repr); NaN/inf as null.
  static std::string num(double v) {
    if (!std::isfinite(v)) return "null";
    char buf[32];
    for (int prec = 15; prec <= 17; ++prec) {
      std::snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
    std::string s = buf;
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // a float stays a float
    return s;
  }
  static std::string integer(int64_t v) { return std::to_string(v); }
  template <typename T, typename F>
  static std::string list(const std::vector<T>& xs, F each) {
    std::string out = "[";
    for (size_t i = 0; i < xs.size(); ++i) out += (i ? ", " : "") + each(xs[i]);
    return out + "]";
  }

  Json& add(const std::string& key, const std::string& raw_value) {
    body_ += (body_.empty() ? "" : ", ") + str(key) + ": " + raw_value;
    return *this;
  }
  std::string dump() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

}  // namespace edgekd
