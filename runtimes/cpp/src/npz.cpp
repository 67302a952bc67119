// .npz = zip of .npy. Stored entries are read directly; deflated ones (np.savez_compressed) through
// zlib, opened with dlopen only when such an entry appears, so the runner never needs libz otherwise.
#include "npz.h"

#include <dlfcn.h>

#include <cstring>
#include <fstream>
#include <sstream>

#if __has_include(<zlib.h>)
#include <zlib.h>
#define EDGEKD_HAVE_ZLIB_HEADER 1
#endif

namespace edgekd {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& why) {
  throw RunnerError(kExitArgs, "bad_arguments", "cannot read " + path + " as .npz (" + why + ")",
                    "write it with np.savez");
}

uint32_t u16(const uint8_t* p) { return p[0] | (p[1] << 8); }
uint32_t u32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }
uint64_t u64(const uint8_t* p) { return u32(p) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

struct Entry {
  std::string name;
  uint32_t method = 0;
  uint64_t csize = 0, usize = 0, offset = 0;
};

std::vector<uint8_t> inflate_raw(const uint8_t* src, size_t n, size_t out_size, const std::string& path) {
#ifdef EDGEKD_HAVE_ZLIB_HEADER
  void* lib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libz.so", RTLD_NOW | RTLD_LOCAL);
  using InitFn = int (*)(z_streamp, int, const char*, int);
  using InflateFn = int (*)(z_streamp, int);
  using EndFn = int (*)(z_streamp);
  auto init = lib ? reinterpret_cast<InitFn>(dlsym(lib, "inflateInit2_")) : nullptr;
  auto inf = lib ? reinterpret_cast<InflateFn>(dlsym(lib, "inflate")) : nullptr;
  auto end = lib ? reinterpret_cast<EndFn>(dlsym(lib, "inflateEnd")) : nullptr;
  if (init && inf && end) {
    std::vector<uint8_t> out(out_size);
    z_stream zs;
    std::memset(&zs, 0, sizeof zs);
    zs.next_in = const_cast<Bytef*>(src);
    zs.avail_in = static_cast<uInt>(n);
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out_size);
    int rc = init(&zs, -MAX_WBITS, ZLIB_VERSION, static_cast<int>(sizeof(z_stream)));
    if (rc == Z_OK) rc = inf(&zs, Z_FINISH);
    end(&zs);
    if (rc != Z_STREAM_END || zs.total_out != out_size) bad(path, "a compressed entry does not inflate");
    return out;
  }
#else
  (void)src; (void)n; (void)out_size;
#endif
  throw RunnerError(kExitArgs, "bad_arguments",
                    "cannot read " + path + ": it is compressed (np.savez_compressed) and this runner has no zlib",
                    "write it with np.savez (uncompressed), not np.savez_compressed");
}

std::vector<Entry> central_directory(const std::vector<uint8_t>& z, const std::string& path) {
  if (z.size() < 22) bad(path, "too short for a zip file");
  size_t eocd = std::string::npos;
  for (size_t i = z.size() - 22 + 1; i-- > 0 && z.size() - i <= 22 + 65535;) {
    if (u32(&z[i]) == 0x06054b50u) { eocd = i; break; }
  }
  if (eocd == std::string::npos) bad(path, "not a zip file: no end-of-directory record");
  uint64_t count = u16(&z[eocd + 10]);
  uint64_t cd_off = u32(&z[eocd + 16]);
  if (cd_off == 0xffffffffu || count == 0xffffu) {  // zip64: find the zip64 end record via its locator
    if (eocd < 20 || u32(&z[eocd - 20]) != 0x07064b50u) bad(path, "zip64 locator missing");
    const uint64_t rec = u64(&z[eocd - 20 + 8]);
    if (rec + 56 > z.size() || u32(&z[rec]) != 0x06064b50u) bad(path, "zip64 end record missing");
    count = u64(&z[rec + 32]);
    cd_off = u64(&z[rec + 48]);
  }
  std::vector<Entry> out;
  size_t p = cd_off;
  for (uint64_t k = 0; k < count; ++k) {
    if (p + 46 > z.size() || u32(&z[p]) != 0x02014b50u) bad(path, "broken central directory");
    Entry e;
    e.method = u16(&z[p + 10]);
    e.csize = u32(&z[p + 20]);
    e.usize = u32(&z[p + 24]);
    const size_t name_len = u16(&z[p + 28]), extra_len = u16(&z[p + 30]), comment_len = u16(&z[p + 32]);
    e.offset = u32(&z[p + 42]);
    if (p + 46 + name_len + extra_len > z.size()) bad(path, "broken central directory");
    e.name.assign(reinterpret_cast<const char*>(&z[p + 46]), name_len);
    // zip64 extra field: the 0xffffffff fields, in order usize, csize, offset
    for (size_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
      const uint32_t id = u16(&z[x]), len = u16(&z[x + 2]);
      if (id == 1) {
        size_t q = x + 4;
        if (e.usize == 0xffffffffu && q + 8 <= x + 4 + len) { e.usize = u64(&z[q]); q += 8; }
        if (e.csize == 0xffffffffu && q + 8 <= x + 4 + len) { e.csize = u64(&z[q]); q += 8; }
        if (e.offset == 0xffffffffu && q + 8 <= x + 4 + len) { e.offset = u64(&z[q]); }
      }
      x += 4 + len;
    }
    out.push_back(e);
    p += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

std::vector<uint8_t> entry_bytes(const std::vector<uint8_t>& z, const Entry& e, const std::string& path) {
  if (e.offset + 30 > z.size() || u32(&z[e.offset]) != 0x04034b50u) bad(path, "broken local header for " + e.name);
  const size_t start = e.offset + 30 + u16(&z[e.offset + 26]) + u16(&z[e.offset + 28]);
  if (start + e.csize > z.size()) bad(path, "entry " + e.name + " is truncated");
  if (e.method == 0) return std::vector<uint8_t>(z.begin() + start, z.begin() + start + e.csize);
  if (e.method == 8) return inflate_raw(&z[start], e.csize, e.usize, path);
  bad(path, "entry " + e.name + " uses zip compression method " + std::to_string(e.method));
}

std::string py_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", '" : "'") + names[i] + "'";
  return s + "]";
}

}  // namespace

Array parse_npy(const std::vector<uint8_t>& b, const std::string& what) {
  auto fail = [&](const std::string& why) -> void { bad(what, why); };
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) fail("not a .npy entry");
  const int major = b[6];
  size_t hlen, hstart;
  if (major == 1) { hlen = u16(&b[8]); hstart = 10; }
  else if (b.size() >= 12) { hlen = u32(&b[8]); hstart = 12; }
  else { fail("truncated .npy header"); return {}; }
  if (hstart + hlen > b.size()) fail("truncated .npy header");
  const std::string h(reinterpret_cast<const char*>(&b[hstart]), hlen);

  auto value_of = [&](const std::string& key) -> std::string {
    const size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) fail(".npy header has no " + key);
    size_t c = h.find(':', k);
    if (c == std::string::npos) fail("bad .npy header");
    ++c;
    while (c < h.size() && h[c] == ' ') ++c;
    return h.substr(c);
  };
  std::string descr = value_of("descr");
  if (descr.empty() || (descr[0] != '\'' && descr[0] != '"')) fail("bad descr in .npy header");
  descr = descr.substr(1, descr.find(descr[0], 1) - 1);
  const bool fortran = value_of("fortran_order").rfind("True", 0) == 0;
  std::string shape_s = value_of("shape");
  shape_s = shape_s.substr(1, shape_s.find(')') - 1);

  Array a;
  std::stringstream ss(shape_s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos) continue;
    a.shape.push_back(std::stoll(item));
  }
  if (descr.size() < 3 || descr[0] == '>') fail("dtype " + descr + " (big-endian or unknown) is not supported");
  const std::string kind = descr.substr(1);
  static const std::pair<const char*, DType> kinds[] = {
      {"f4", DType::kFloat32}, {"f8", DType::kFloat64}, {"f2", DType::kFloat16}, {"i1", DType::kInt8},
      {"u1", DType::kUInt8}, {"i2", DType::kInt16}, {"i4", DType::kInt32}, {"i8", DType::kInt64},
      {"b1", DType::kBool}};
  for (const auto& [name, t] : kinds)
    if (kind == name) a.dtype = t;
  if (a.dtype == DType::kUnknown) fail("dtype " + descr + " is not supported; write float32, float64 or an integer dtype");
  const size_t nbytes = a.numel() * dtype_size(a.dtype), data_at = hstart + hlen;
  if (data_at + nbytes > b.size()) fail("the array data is truncated");
  a.data.assign(b.begin() + data_at, b.begin() + data_at + nbytes);
  if (fortran && a.shape.size() > 1) {  // reorder to C order
    Array c = Array::zeros(a.shape, a.dtype);
    const size_t nd = a.shape.size(), es = dtype_size(a.dtype), n = a.numel();
    std::vector<int64_t> idx(nd, 0);
    for (size_t ci = 0; ci < n; ++ci) {  // idx = C-order multi-index of ci
      size_t fi = 0, stride = 1;
      for (size_t d = 0; d < nd; ++d) { fi += idx[d] * stride; stride *= a.shape[d]; }
      std::memcpy(&c.data[ci * es], &a.data[fi * es], es);
      for (size_t d = nd; d-- > 0;) { if (++idx[d] < a.shape[d]) break; idx[d] = 0; }
    }
    a = std::move(c);
  }
  return a;
}

std::map<std::string, Array> load_npz(const std::string& path, const std::vector<std::string>& keys) {
  std::ifstream f(path, std::ios::binary);
  if (!f) bad(path, "cannot open it");
  const std::vector<uint8_t> z((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::vector<Entry> entries = central_directory(z, path);
  std::vector<std::string> files;
  for (const auto& e : entries) files.push_back(e.name.size() > 4 && e.name.substr(e.name.size() - 4) == ".npy"
                                                    ? e.name.substr(0, e.name.size() - 4) : e.name);
  std::vector<std::string> missing;
  for (const auto& k : keys) {
    bool found = false;
    for (const auto& n : files) found = found || n == k;
    if (!found) missing.push_back(k);
  }
  if (!missing.empty())
    throw RunnerError(kExitArgs, "bad_arguments",
                      path + " has no key(s) " + py_list(missing) + "; it has " + py_list(files),
                      "write the arrays with np.savez(path, x=..., y=...)");
  std::map<std::string, Array> out;
  for (size_t i = 0; i < entries.size(); ++i)
    for (const auto& k : keys)
      if (files[i] == k) out[k] = parse_npy(entry_bytes(z, entries[i], path), path);
  return out;
}

}  // namespace edgekd
