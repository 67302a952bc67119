// .npz = zip of .npy. Stored entries are read directly; deflated ones (np.savez_compressed) through
// zlib, opened with dlopen only when such an entry appears, so the runner never needs libz otherwise.
#include "npz.h"

#include <dlfcn.h>

#include <algorithm>
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

// The archive is read piecewise (tail, central directory, then each wanted entry straight into its
// array), so an eval set is held once in memory, as numpy's own reader does.
struct ZipFile {
  std::ifstream f;
  uint64_t size = 0;
  std::string path;

  std::vector<uint8_t> read(uint64_t at, uint64_t n) {
    if (at > size || n > size - at) bad(path, "truncated zip file");
    std::vector<uint8_t> out(n);
    f.seekg(static_cast<std::streamoff>(at));
    f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n));
    if (!f) bad(path, "cannot read it");
    return out;
  }
};

std::vector<Entry> central_directory(ZipFile& zf) {
  const std::string& path = zf.path;
  if (zf.size < 22) bad(path, "too short for a zip file");
  const uint64_t tail_n = std::min<uint64_t>(zf.size, 22 + 65535 + 20);
  const uint64_t tail_at = zf.size - tail_n;
  const std::vector<uint8_t> t = zf.read(tail_at, tail_n);
  size_t eocd = std::string::npos;
  for (size_t i = t.size() - 22 + 1; i-- > 0;) {
    if (u32(&t[i]) == 0x06054b50u) { eocd = i; break; }
  }
  if (eocd == std::string::npos) bad(path, "not a zip file: no end-of-directory record");
  uint64_t count = u16(&t[eocd + 10]);
  uint64_t cd_size = u32(&t[eocd + 12]);
  uint64_t cd_off = u32(&t[eocd + 16]);
  if (cd_off == 0xffffffffu || count == 0xffffu || cd_size == 0xffffffffu) {  // zip64: via its locator
    if (eocd < 20 || u32(&t[eocd - 20]) != 0x07064b50u) bad(path, "zip64 locator missing");
    const std::vector<uint8_t> rec = zf.read(u64(&t[eocd - 20 + 8]), 56);
    if (u32(&rec[0]) != 0x06064b50u) bad(path, "zip64 end record missing");
    count = u64(&rec[32]);
    cd_size = u64(&rec[40]);
    cd_off = u64(&rec[48]);
  }
  const std::vector<uint8_t> z = zf.read(cd_off, cd_size);
  std::vector<Entry> out;
  size_t p = 0;
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

// Where an entry's data starts (after its local header).
uint64_t entry_start(ZipFile& zf, const Entry& e) {
  const std::vector<uint8_t> h = zf.read(e.offset, 30);
  if (u32(&h[0]) != 0x04034b50u) bad(zf.path, "broken local header for " + e.name);
  const uint64_t start = e.offset + 30 + u16(&h[26]) + u16(&h[28]);
  if (start > zf.size || e.csize > zf.size - start) bad(zf.path, "entry " + e.name + " is truncated");
  return start;
}

std::string py_list(const std::vector<std::string>& names) {
  std::string s = "[";
  for (size_t i = 0; i < names.size(); ++i) s += (i ? ", '" : "'") + names[i] + "'";
  return s + "]";
}

}  // namespace

namespace {

// The .npy header at the start of `b` (at least its first 12 bytes, or all of it): the array's
// dtype and shape, an empty data buffer, and the offset of the data and whether it is Fortran order.
Array npy_header(const uint8_t* b, size_t n, const std::string& what, size_t& data_at, bool& fortran,
                 size_t& header_end) {
  auto fail = [&](const std::string& why) -> void { bad(what, why); };
  if (n < 10 || std::memcmp(b, "\x93NUMPY", 6) != 0) fail("not a .npy entry");
  const int major = b[6];
  size_t hlen = 0, hstart = 0;
  if (major == 1) { hlen = u16(&b[8]); hstart = 10; }
  else if (n >= 12) { hlen = u32(&b[8]); hstart = 12; }
  else fail("truncated .npy header");
  header_end = hstart + hlen;
  data_at = header_end;
  if (hstart + hlen > n) return Array{};  // the caller reads more and asks again
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
  fortran = value_of("fortran_order").rfind("True", 0) == 0;
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
  return a;
}

void to_c_order(Array& a) {
  if (a.shape.size() < 2) return;
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

// A stored (uncompressed) entry: the header first, then the data read straight into the array.
Array read_stored_npy(ZipFile& zf, uint64_t start, uint64_t len, const std::string& what) {
  std::vector<uint8_t> head = zf.read(start, std::min<uint64_t>(len, 12));
  size_t data_at = 0, header_end = 0;
  bool fortran = false;
  npy_header(head.data(), head.size(), what, data_at, fortran, header_end);
  if (header_end > len) bad(what, "truncated .npy header");
  head = zf.read(start, header_end);
  Array a = npy_header(head.data(), head.size(), what, data_at, fortran, header_end);
  const size_t nbytes = a.numel() * dtype_size(a.dtype);
  if (data_at + nbytes > len) bad(what, "the array data is truncated");
  a.data.resize(nbytes);
  zf.f.seekg(static_cast<std::streamoff>(start + data_at));
  zf.f.read(reinterpret_cast<char*>(a.data.data()), static_cast<std::streamsize>(nbytes));
  if (!zf.f) bad(what, "cannot read the array data");
  if (fortran) to_c_order(a);
  return a;
}

}  // namespace

Array parse_npy(const std::vector<uint8_t>& b, const std::string& what) {
  size_t data_at = 0, header_end = 0;
  bool fortran = false;
  Array a = npy_header(b.data(), b.size(), what, data_at, fortran, header_end);
  if (header_end > b.size()) bad(what, "truncated .npy header");
  const size_t nbytes = a.numel() * dtype_size(a.dtype);
  if (data_at + nbytes > b.size()) bad(what, "the array data is truncated");
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(data_at), b.begin() + static_cast<std::ptrdiff_t>(data_at + nbytes));
  if (fortran) to_c_order(a);
  return a;
}

std::vector<std::string> npz_names(const std::string& path) {
  ZipFile zf;
  zf.path = path;
  zf.f.open(path, std::ios::binary | std::ios::ate);
  if (!zf.f) bad(path, "cannot open it");
  zf.size = static_cast<uint64_t>(zf.f.tellg());
  std::vector<std::string> names;
  for (const auto& e : central_directory(zf))
    names.push_back(e.name.size() > 4 && e.name.substr(e.name.size() - 4) == ".npy" ? e.name.substr(0, e.name.size() - 4)
                                                                                      : e.name);
  return names;
}

std::map<std::string, Array> load_npz(const std::string& path, const std::vector<std::string>& keys) {
  ZipFile zf;
  zf.path = path;
  zf.f.open(path, std::ios::binary | std::ios::ate);
  if (!zf.f) bad(path, "cannot open it");
  zf.size = static_cast<uint64_t>(zf.f.tellg());
  const std::vector<Entry> entries = central_directory(zf);
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
  for (size_t i = 0; i < entries.size(); ++i) {
    for (const auto& k : keys) {
      if (files[i] != k) continue;
      const Entry& e = entries[i];
      const uint64_t start = entry_start(zf, e);
      if (e.method == 0) {
        out[k] = read_stored_npy(zf, start, e.csize, path);
      } else if (e.method == 8) {
        const std::vector<uint8_t> packed = zf.read(start, e.csize);
        out[k] = parse_npy(inflate_raw(packed.data(), packed.size(), e.usize, path), path);
      } else {
        bad(path, "entry " + e.name + " uses zip compression method " + std::to_string(e.method));
      }
    }
  }
  return out;
}

}  // namespace edgekd
