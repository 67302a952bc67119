// edgekd_runner (native C++): time one .pte or .tflite file on the machine it runs on and print
// JSON lines on stdout, speaking exactly the protocol of runtimes/python/edgekd_runner.py
// (runtimes/README.md, "Protocol"): same arguments, same JSON fields, same exit codes.
//
//   edgekd_runner --model M --inputs X.npz --warmup W --runs R --threads T [--eval E.npz]
//       [--layout auto|NCHW|NHWC] [--cpus 0,1] [--keep-samples] [--min-duration S] [--profile P]
//
// The runtime is a plugin next to the binary (libedgekd_backend_executorch.so for .pte,
// libedgekd_backend_litert.so for .tflite), opened with dlopen when the file needs it: a missing
// runtime library is then a JSON error (exit 5) naming the library, not a loader message.
#include <dlfcn.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "formats.h"
#include "images.h"
#include "json.h"
#include "npz.h"
#include "runner.h"

namespace edgekd {
namespace {

// -- arguments ---------------------------------------------------------------------------------
struct Args {
  std::string model, inputs, eval, layout = "auto", cpus, profile, save_output;
  int warmup = 10, runs = 50, threads = 1;
  double min_duration = 0.0;
  bool keep_samples = false;
};

[[noreturn]] void arg_error(const std::string& message) {
  throw RunnerError(kExitArgs, "bad_arguments", message, "run edgekd_runner --help");
}

const char* kUsage =
    "usage: edgekd_runner --model MODEL [--inputs INPUTS] [--warmup WARMUP] [--runs RUNS]\n"
    "                     [--min-duration SECONDS] [--threads THREADS] [--eval EVAL]\n"
    "                     [--layout {auto,NCHW,NHWC}] [--cpus CPUS] [--keep-samples] [--profile PATH]\n"
    "                     [--save-output OUT.npy]\n\n"
    "Time one .pte/.tflite model and print JSON lines on stdout (edgekd's native runner).\n";

bool is_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return static_cast<bool>(f) && access(p.c_str(), R_OK) == 0 && std::ifstream(p + "/.").fail();
}

std::string suffix_of(const std::string& path) {
  const size_t slash = path.find_last_of('/'), dot = path.find_last_of('.');
  return dot == std::string::npos || (slash != std::string::npos && dot < slash) ? "" : path.substr(dot);
}

int parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || errno) arg_error("argument " + flag + ": invalid int value: '" + v + "'");
  return static_cast<int>(x);
}

double parse_float(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end) arg_error("argument " + flag + ": invalid float value: '" + v + "'");
  return x;
}

// The row of formats.h (generated from edgekd/formats.py) for a suffix; nullptr when it names none.
const FormatRow* format_row(const std::string& suffix) {
  for (const FormatRow& r : kFormats)
    if (suffix == r.suffix) return &r;
  return nullptr;
}

std::string known_suffixes() {
  std::string out;
  for (const FormatRow& r : kFormats) out += (out.empty() ? "" : ", ") + std::string(r.suffix);
  return out;
}

void check_header(const std::string& path) {
  // Reject files that are clearly not of their format before a native loader sees them.
  unsigned char head[8] = {0};
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(head), 8);
  const std::streamsize n = f.gcount();
  const std::string sfx = suffix_of(path);
  const FormatRow* row = format_row(sfx);
  bool ok = n == 8 && row != nullptr;  // magic: '?' any byte, '#' an ASCII digit, else that byte
  for (size_t i = 0; ok && row && i < row->magic_len; ++i) {
    const unsigned char m = static_cast<unsigned char>(row->magic[i]);
    ok = m == '?' || (m == '#' && std::isdigit(head[i])) || m == head[i];
  }
  if (!ok) {
    std::string shown = "b'";
    for (std::streamsize i = 0; i < n; ++i) {
      char buf[8];
      if (head[i] >= 0x20 && head[i] < 0x7f && head[i] != '\'' && head[i] != '\\') {
        shown += static_cast<char>(head[i]);
      } else {
        std::snprintf(buf, sizeof buf, "\\x%02x", head[i]);
        shown += buf;
      }
    }
    throw RunnerError(kExitModel, "corrupt_model", path + " does not start like a " + sfx + " file (header " + shown + "')",
                      "re-export the model or copy it again; compare its sha256 with edgekd.json");
  }
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::set<std::string> seen;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    const size_t eq = flag.find('=');
    bool has_value = false;
    if (flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    if (flag == "-h" || flag == "--help") {
      std::fputs(kUsage, stderr);
      throw RunnerError(0, "help", "");
    }
    if (flag == "--keep-samples") {
      a.keep_samples = true;
      continue;
    }
    static const std::set<std::string> with_value = {"--model", "--inputs", "--warmup", "--runs", "--threads", "--eval",
                                                     "--layout", "--cpus", "--min-duration", "--profile",
                                                     "--save-output"};
    if (!with_value.count(flag)) arg_error("unrecognized arguments: " + std::string(argv[i]));
    if (!has_value) {
      if (i + 1 >= argc) arg_error("argument " + flag + ": expected one argument");
      value = argv[++i];
    }
    seen.insert(flag);
    if (flag == "--model") a.model = value;
    else if (flag == "--inputs") a.inputs = value;
    else if (flag == "--eval") a.eval = value;
    else if (flag == "--cpus") a.cpus = value;
    else if (flag == "--profile") a.profile = value;
    else if (flag == "--save-output") a.save_output = value;
    else if (flag == "--warmup") a.warmup = parse_int(flag, value);
    else if (flag == "--runs") a.runs = parse_int(flag, value);
    else if (flag == "--threads") a.threads = parse_int(flag, value);
    else if (flag == "--min-duration") a.min_duration = parse_float(flag, value);
    else if (flag == "--layout") {
      if (value != "auto" && value != "NCHW" && value != "NHWC")
        arg_error("argument --layout: invalid choice: '" + value + "' (choose from 'auto', 'NCHW', 'NHWC')");
      a.layout = value;
    }
  }
  if (!seen.count("--model")) arg_error("the following arguments are required: --model");
  if (a.warmup < 0 || a.runs < 1 || a.threads < 1 || !(a.min_duration >= 0))
    arg_error("need --warmup >= 0, --runs >= 1, --threads >= 1, --min-duration >= 0 (got " + std::to_string(a.warmup) +
              ", " + std::to_string(a.runs) + ", " + std::to_string(a.threads) + ", " + Json::num(a.min_duration) + ")");
  for (const auto& [flag, path] : {std::pair<std::string, std::string>{"model", a.model}, {"inputs", a.inputs},
                                   {"eval", a.eval}})
    if (!path.empty() && !is_file(path)) arg_error("--" + flag + " " + path + ": no such file");
  const std::string sfx = suffix_of(a.model);
  const FormatRow* row = format_row(sfx);
  if (!row) arg_error("--model " + a.model + ": unknown format; expected one of " + known_suffixes());
  if (!row->plugin)
    throw RunnerError(kExitRuntime, "runtime_missing",
                      "the native runner has no " + std::string(row->backend) + " backend for " + sfx + " files",
                      "time " + sfx + " files with the Python runner (runner=python)");
  check_header(a.model);
  return a;
}

// -- machine facts and measuring ---------------------------------------------------------------
int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

double ms_since(int64_t t0) { return static_cast<double>(now_ns() - t0) / 1e6; }

double peak_rss_mb() {
  // VmHWM of this process in MB; ru_maxrss where /proc is absent.
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");  // Linux >= 4.0: "5" resets VmHWM to the current RSS
  if (f) f << "5";
}

std::vector<int> pin_cpus(const std::string& spec) {
  std::vector<int> cpus;
  if (spec.empty()) return cpus;
  const long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
  auto fail = [&](const std::string& why) {
    throw RunnerError(kExitArgs, "bad_arguments", "cannot pin to CPUs '" + spec + "' (" + why + ")",
                      "pass CPUs this machine has, e.g. 0-" + std::to_string(std::max(1L, n_cpu) - 1));
  };
  std::set<int> s;
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, ',')) {
    try {
      const size_t dash = part.find('-');
      const int lo = std::stoi(part.substr(0, dash)), hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
      for (int c = lo; c <= hi; ++c) s.insert(c);
    } catch (const std::exception&) {
      fail("invalid literal: '" + part + "'");
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : s) {
    if (c < 0 || c >= CPU_SETSIZE) fail("CPU " + std::to_string(c) + " out of range");
    CPU_SET(c, &set);
  }
  if (s.empty() || sched_setaffinity(0, sizeof set, &set) != 0) fail(std::strerror(errno ? errno : EINVAL));
  cpus.assign(s.begin(), s.end());
  return cpus;
}

std::string machine_json() {
  utsname u{};
  uname(&u);
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string platform = std::string(u.sysname) + "-" + u.release + "-" + u.machine;
#if defined(__GLIBC__)
  platform += std::string("-with-glibc") + gnu_get_libc_version();
#endif
  Json m;
  m.add("hostname", Json::str(host)).add("platform", Json::str(platform)).add("machine", Json::str(u.machine));
  m.add("cpu_count", Json::integer(sysconf(_SC_NPROCESSORS_ONLN)));
  return m.dump();
}

// numpy's linear-interpolation percentile (including its lerp that is exact at both ends).
double percentile(const std::vector<double>& sorted, double q) {
  const double idx = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(idx));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double t = idx - static_cast<double>(lo), a = sorted[lo], b = sorted[hi], d = b - a;
  return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

std::string summarize(const std::vector<double>& samples) {
  // p50/p90/p99 (numpy linear interpolation), mean, population std, min, max: as edgekd.bench.stats.
  std::vector<double> s = samples;
  std::sort(s.begin(), s.end());
  double sum = 0.0;
  for (double x : samples) sum += x;
  const double mean = sum / static_cast<double>(samples.size());
  double ss = 0.0;
  for (double x : samples) ss += (x - mean) * (x - mean);
  Json j;
  j.add("p50", Json::num(percentile(s, 50))).add("p90", Json::num(percentile(s, 90)))
      .add("p99", Json::num(percentile(s, 99))).add("mean", Json::num(mean))
      .add("std", Json::num(std::sqrt(ss / static_cast<double>(samples.size()))))
      .add("min", Json::num(s.front())).add("max", Json::num(s.back()));
  return j.dump();
}

// -- input adaptation: the Python runner's to_model_input / from_model_output ------------------
std::string shape_str(const std::vector<int64_t>& shape) {
  return Json::list(shape, [](int64_t d) { return Json::integer(d); });
}

bool shape_fits(const std::vector<int64_t>& shape, const std::vector<int64_t>& want) {
  if (shape.size() != want.size()) return false;
  for (size_t i = 0; i < shape.size(); ++i)
    if (want[i] >= 0 && shape[i] != want[i]) return false;
  return true;
}

std::string choose_layout(const std::vector<int64_t>& x_shape, const TensorInfo& info, const std::string& layout) {
  if (layout != "auto") return layout;
  if (shape_fits(x_shape, info.shape)) return "NCHW";
  if (x_shape.size() == 4 && shape_fits({x_shape[0], x_shape[2], x_shape[3], x_shape[1]}, info.shape)) return "NHWC";
  throw RunnerError(kExitInput, "input_mismatch",
                    "input of shape " + shape_str(x_shape) + " fits the model's input " + shape_str(info.shape) +
                        " neither as NCHW nor as NHWC",
                    "write the logical input (float32, NCHW, the model's batch size) under key 'x'");
}

Array nchw_to_nhwc(const Array& x) {
  const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
  Array y = Array::zeros({n, h, w, c}, x.dtype);
  const size_t es = dtype_size(x.dtype);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < w; ++iw)
          std::memcpy(&y.data[((((in * h) + ih) * w + iw) * c + ic) * es], &x.data[((((in * c) + ic) * h + ih) * w + iw) * es], es);
  return y;
}

void int_limits(DType t, double& lo, double& hi) {
  switch (t) {
    case DType::kInt8: lo = -128; hi = 127; return;
    case DType::kUInt8: lo = 0; hi = 255; return;
    case DType::kInt16: lo = -32768; hi = 32767; return;
    case DType::kInt32: lo = -2147483648.0; hi = 2147483647.0; return;
    default: lo = -9.2233720368547758e18; hi = 9.2233720368547758e18; return;
  }
}

Array to_model_input(const Array& x_in, const TensorInfo& info, const std::string& layout) {
  const Array& x = layout == "NHWC" && x_in.shape.size() == 4 ? nchw_to_nhwc(x_in) : x_in;
  if (!shape_fits(x.shape, info.shape))
    throw RunnerError(kExitInput, "input_mismatch",
                      "input of shape " + shape_str(x.shape) + " (" + layout + ") does not fit the model's input " +
                          shape_str(info.shape),
                      "check the input shape, or pass --layout NCHW|NHWC");
  if (x.dtype == info.dtype) return x;
  Array y = Array::zeros(x.shape, info.dtype);
  const size_t n = x.numel();
  if (dtype_is_integer(x.dtype) && dtype_is_integer(info.dtype) && !info.quantized) {
    double lo, hi;  // token ids: int64 in the .npz, int32 in a litert-torch file
    int_limits(info.dtype, lo, hi);
    for (size_t i = 0; i < n; ++i) {
      const double v = x.get(i);
      if (v < lo || v > hi)
        throw RunnerError(kExitInput, "input_mismatch", std::string("integer input out of the model's ") +
                          dtype_name(info.dtype) + " range", "write ids that fit the model's input dtype");
      y.set(i, v);
    }
    return y;
  }
  if (!dtype_is_float(x.dtype))
    throw RunnerError(kExitInput, "input_mismatch", std::string("input dtype ") + dtype_name(x.dtype) +
                      " cannot feed the model's " + dtype_name(info.dtype) + " input", "write the logical input as float32");
  if (info.quantized && dtype_is_integer(info.dtype)) {
    double lo, hi;
    int_limits(info.dtype, lo, hi);
    // np.round is half-to-even, as nearbyint in the default rounding mode; numpy computes in the
    // input's precision (float32 input: float32 arithmetic), so the same here
    const bool f32 = x.dtype != DType::kFloat64;
    for (size_t i = 0; i < n; ++i) {
      const double v = std::isnan(x.get(i)) ? 0.0 : x.get(i);  // an integer cannot hold NaN: fed as the zero point
      const double q = f32 ? static_cast<double>(std::nearbyint(static_cast<float>(v) / static_cast<float>(info.scale)) +
                                                 static_cast<float>(info.zero_point))
                           : std::nearbyint(v / info.scale) + static_cast<double>(info.zero_point);
      y.set(i, std::min(hi, std::max(lo, q)));
    }
    return y;
  }
  if (dtype_is_float(info.dtype)) {
    for (size_t i = 0; i < n; ++i) y.set(i, x.get(i));
    return y;
  }
  throw RunnerError(kExitInput, "input_mismatch", std::string("the model takes ") + dtype_name(info.dtype) +
                    " input without a quantization scale; float input cannot feed it", "pass the input already in the model's dtype");
}

// What the runner did to the given input: the Python runner's input_notes (fields of "input" and sentences).
struct InputNotes {
  std::string given_dtype;
  int64_t nan = 0, inf = 0;
  std::vector<std::string> notes;
};

InputNotes input_notes(const Array& x, const Array& feed, const TensorInfo& info) {
  InputNotes r;
  r.given_dtype = dtype_name(x.dtype);
  if (x.dtype != feed.dtype && x.dtype != DType::kFloat32)  // float32 -> int8 quantization is the protocol's path
    r.notes.push_back(std::string("input x is ") + dtype_name(x.dtype) + "; converted to " + dtype_name(feed.dtype) +
                      ", the model's input dtype" +
                      (info.quantized ? " (quantized with the file's scale and zero point)" : ""));
  if (dtype_is_float(x.dtype)) {
    const size_t n = x.numel();
    for (size_t i = 0; i < n; ++i) {
      const double v = x.get(i);
      if (std::isnan(v)) ++r.nan;
      else if (std::isinf(v)) ++r.inf;
    }
    const std::string of = " of " + std::to_string(n) + " values; ";
    if (r.nan)
      r.notes.push_back("input x holds " + std::to_string(r.nan) + " NaN" + of +
                        (info.quantized ? "fed as the zero point (0.0): the quantized input cannot hold NaN"
                                        : "fed as they are"));
    if (r.inf)
      r.notes.push_back("input x holds " + std::to_string(r.inf) + " infinite" + of +
                        (info.quantized ? "clipped to the quantized input's range" : "fed as they are"));
  }
  return r;
}

std::vector<float> from_model_output(const Array& y, const TensorInfo& info) {
  std::vector<float> out(y.numel());
  for (size_t i = 0; i < out.size(); ++i) {
    const double v = y.get(i);
    out[i] = info.quantized ? static_cast<float>((static_cast<float>(v) - static_cast<float>(info.zero_point)) *
                                                 static_cast<float>(info.scale))
                            : static_cast<float>(v);
  }
  return out;
}

Array slice_batch(const Array& x, size_t start, size_t batch) {
  // rows [start, start + batch) of x; rows past the end repeat the last one (the Python runner's pad)
  Array c;
  c.shape = x.shape;
  c.shape[0] = static_cast<int64_t>(batch);
  c.dtype = x.dtype;
  const size_t row = x.numel() / static_cast<size_t>(x.shape[0]) * dtype_size(x.dtype);
  c.data.resize(row * batch);
  for (size_t i = 0; i < batch; ++i) {
    const size_t src = std::min(start + i, static_cast<size_t>(x.shape[0]) - 1);
    std::memcpy(&c.data[i * row], &x.data[src * row], row);
  }
  return c;
}

double evaluate(Backend& backend, const Array& x, const Array& y, const std::string& layout, std::vector<int64_t>& preds) {
  if (x.shape.size() < 2 || y.shape.empty() || x.shape[0] != y.shape[0])
    throw RunnerError(kExitInput, "input_mismatch", "eval x " + shape_str(x.shape) + " and y " + shape_str(y.shape) +
                      " do not pair up", "write x (N,C,H,W) float32 and y (N,) int labels");
  const int64_t b0 = backend.input().shape.empty() ? 1 : backend.input().shape[0];
  const size_t batch = b0 > 0 ? static_cast<size_t>(b0) : 1, n = static_cast<size_t>(x.shape[0]);
  Array out;
  size_t correct = 0;
  for (size_t i = 0; i < n; i += batch) {
    const size_t real = std::min(batch, n - i);
    backend.run(to_model_input(slice_batch(x, i, batch), backend.input(), layout), out);
    const std::vector<float> o = from_model_output(out, backend.output());
    const size_t per = o.size() / batch;
    for (size_t r = 0; r < real; ++r) {
      size_t best = 0;
      for (size_t k = 1; k < per; ++k)
        if (o[r * per + k] > o[r * per + best] || (std::isnan(o[r * per + k]) && !std::isnan(o[r * per + best]))) best = k;
      preds.push_back(static_cast<int64_t>(best));
      if (static_cast<int64_t>(best) == static_cast<int64_t>(y.get(i + r))) ++correct;
    }
  }
  return n ? static_cast<double>(correct) / static_cast<double>(n) : std::nan("");
}

void save_npy(const std::string& path, const std::vector<float>& values, const std::vector<int64_t>& shape) {
  // The first inference's output as float32 (dequantized), for parity checks against other runtimes.
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.erase(dims.size() - 2);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  const uint16_t len = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  f.put(static_cast<char>(len & 0xff));
  f.put(static_cast<char>(len >> 8));
  f << header;
  f.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
  if (!f) throw RunnerError(kExitArgs, "bad_arguments", "cannot write --save-output " + path, "pass a writable path");
}

// -- backends: plugins next to the binary ------------------------------------------------------
std::string self_dir(const char* argv0) {
  std::string p = argv0 ? argv0 : "";
  if (p.find('/') == std::string::npos) {
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    p = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  const size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::unique_ptr<Backend> open_backend(const std::string& suffix, const char* argv0) {
  const FormatRow* row = format_row(suffix);  // parse_args accepted only suffixes with a plugin
  const std::string lib = row->plugin;
  const std::string runtime = row->engine;
  std::string first_error;
  void* h = nullptr;
  for (const std::string& candidate : {self_dir(argv0) + "/" + lib, lib}) {
    dlerror();
    h = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) break;
    const char* e = dlerror();
    if (first_error.empty() && e) first_error = e;
  }
  if (!h)
    throw RunnerError(kExitRuntime, "runtime_missing",
                      "the native runner cannot load its " + runtime + " backend for " + suffix + " files (" + first_error + ")",
                      "keep " + lib + " and the " + runtime + " libraries it needs next to edgekd_runner, or point "
                      "LD_LIBRARY_PATH at them (runtimes/README.md, native runner)");
  auto create = reinterpret_cast<EdgekdCreateBackendFn>(dlsym(h, EDGEKD_BACKEND_ENTRY));
  if (!create)
    throw RunnerError(kExitRuntime, "runtime_missing", lib + " is not an edgekd backend (no " EDGEKD_BACKEND_ENTRY ")",
                      "rebuild the native runner (make native)");
  return std::unique_ptr<Backend>(create());
}

// -- one measurement ---------------------------------------------------------------------------
std::string measure(const Args& args, const char* argv0) {
  const std::vector<int> cpus = pin_cpus(args.cpus);
  int64_t t0 = now_ns();
  std::unique_ptr<Backend> backend = open_backend(suffix_of(args.model), argv0);
  const double import_ms = ms_since(t0);
  backend->vet(args.model, args.threads);
  reset_peak_rss();
  const double baseline = peak_rss_mb();

  t0 = now_ns();
  backend->load(args.model, args.threads, args.profile);
  const double load_ms = ms_since(t0);
  backend->close();  // free the first load, then time a second one of the same file: the warm load
  t0 = now_ns();
  backend->load(args.model, args.threads, args.profile);
  const double warm_load_ms = ms_since(t0);

  Array x;
  std::string layout = "native";
  if (!args.inputs.empty()) {
    x = load_npz(args.inputs, {"x"})["x"];
    layout = choose_layout(x.shape, backend->input(), args.layout);
  } else {
    std::vector<int64_t> shape;
    for (int64_t d : backend->input().shape) shape.push_back(d > 0 ? d : 1);
    x = Array::zeros(shape, backend->input().dtype);
  }
  const Array feed = to_model_input(x, backend->input(), layout);
  InputNotes given = input_notes(x, feed, backend->input());

  Array out;
  t0 = now_ns();
  backend->run(feed, out);
  const double first_ms = ms_since(t0);
  const std::vector<int64_t> output_shape = out.shape;
  int64_t out_nan = 0;
  for (float v : from_model_output(out, backend->output())) out_nan += std::isnan(v) ? 1 : 0;
  if (out_nan)
    given.notes.push_back("the output holds " + std::to_string(out_nan) + " NaN of " + std::to_string(out.numel()) +
                          " values");
  if (!args.save_output.empty()) save_npy(args.save_output, from_model_output(out, backend->output()), out.shape);
  // The timed call: the input does not change, so it is set once and each run is invoke() alone
  // (as the Python runner's timed_call) -- allowed where running again on the same input leaves the
  // output unchanged (no planned buffer reuses the input's memory); otherwise every run sets it again.
  Array again;
  backend->set_input(feed);
  backend->invoke();
  backend->read_output(out);
  backend->invoke();
  backend->read_output(again);
  const bool set_each_run = again.data != out.data || again.shape != out.shape;
  if (set_each_run) backend->set_input(feed);
  auto call = [&]() {
    if (set_each_run) backend->set_input(feed);
    backend->invoke();
  };
  std::vector<double> warm, samples;
  for (int i = 0; i < args.warmup; ++i) {
    t0 = now_ns();
    call();
    warm.push_back(ms_since(t0));
  }
  const int64_t start = now_ns(), min_ns = static_cast<int64_t>(args.min_duration * 1e9);
  t0 = start;
  while (static_cast<int>(samples.size()) < args.runs || t0 - start < min_ns) {  // --min-duration: go on past --runs
    t0 = now_ns();
    call();
    samples.push_back(ms_since(t0));
  }

  std::optional<double> accuracy;
  size_t n_eval = 0;
  std::vector<int64_t> preds;
  bool have_preds = false;
  if (!args.eval.empty()) {
    const bool images = has_images(args.eval);  // decoded images: apply the bundle's preprocessing here
    auto ev = images ? load_npz(args.eval, image_eval_keys()) : load_npz(args.eval, {"x", "y"});
    if (images) ev["x"] = preprocess_images(ev, args.eval);
    const int64_t b0 = backend->input().shape.empty() ? 1 : backend->input().shape[0];
    std::vector<int64_t> probe = ev["x"].shape;
    if (!probe.empty()) probe[0] = b0 > 0 ? b0 : 1;
    const std::string ev_layout = choose_layout(probe, backend->input(), args.layout);
    accuracy = evaluate(*backend, ev["x"], ev["y"], ev_layout, preds);
    n_eval = ev["y"].shape.empty() ? 0 : static_cast<size_t>(ev["y"].shape[0]);
    have_preds = true;
  }
  const double peak = peak_rss_mb();
  const std::string profile_line = args.profile.empty() ? "" : backend->write_profile();

  auto nums = [](const std::vector<double>& v) { return Json::list(v, [](double d) { return Json::num(d); }); };
  std::ifstream mf(args.model, std::ios::binary | std::ios::ate);
  Json in;
  in.add("shape", shape_str(feed.shape)).add("dtype", Json::str(dtype_name(feed.dtype))).add("layout", Json::str(layout))
      .add("given_dtype", Json::str(given.given_dtype)).add("nan", Json::integer(given.nan))
      .add("inf", Json::integer(given.inf));
  Json r;
  r.add("event", Json::str("result")).add("runtime", Json::str(backend->runtime()))
      .add("runtime_version", Json::str(backend->version())).add("interpreter", Json::str(backend->interpreter()))
      .add("machine", machine_json()).add("model", Json::str(args.model))
      .add("model_bytes", Json::integer(static_cast<int64_t>(mf.tellg()))).add("threads", Json::integer(args.threads))
      .add("cpus", cpus.empty() ? "null" : Json::list(cpus, [](int c) { return Json::integer(c); }))
      .add("warmup", Json::integer(args.warmup)).add("runs", Json::integer(static_cast<int64_t>(samples.size())))
      .add("min_duration_s", Json::num(args.min_duration))
      .add("import_ms", Json::num(import_ms)).add("load_ms", Json::num(load_ms)).add("warm_load_ms", Json::num(warm_load_ms))
      .add("first_inference_ms", Json::num(first_ms)).add("latency_ms", summarize(samples))
      .add("latency_samples_ms", nums(samples)).add("peak_mem_mb", Json::num(std::max(0.0, peak - baseline)))
      .add("baseline_mem_mb", Json::num(baseline)).add("accuracy", accuracy ? Json::num(*accuracy) : "null")
      .add("eval_samples", Json::integer(static_cast<int64_t>(n_eval))).add("input", in.dump())
      .add("output_shape", shape_str(output_shape)).add("output_nan", Json::integer(out_nan))
      .add("notes", Json::list(given.notes, [](const std::string& s) { return Json::str(s); }));
  if (!args.profile.empty()) {
    r.add("profile_dump", profile_line.empty() ? "null" : profile_line);
    if (profile_line.empty())
      r.add("profile_error", Json::str(std::string("the ") + backend->runtime() +
                                       " runtime gave no per-operator events for this file (see the runner's stderr)"));
  }
  if (args.keep_samples) {
    r.add("warmup_samples_ms", nums(warm));
    r.add("eval_predictions", have_preds ? Json::list(preds, [](int64_t p) { return Json::integer(p); }) : "null");
  }
  return r.dump();
}

}  // namespace
}  // namespace edgekd

int main(int argc, char** argv) {
  using edgekd::Json;
  const int out_fd = dup(1);
  dup2(2, 1);  // native libraries print on fd 1: keep stdout for our JSON lines only
  auto emit = [&](const std::string& line) {
    const std::string s = line + "\n";
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = write(out_fd, s.data() + off, s.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  };
  int code = 0;
  try {
    const edgekd::Args args = edgekd::parse_args(argc, argv);
    emit(edgekd::measure(args, argv[0]));
  } catch (const edgekd::RunnerError& e) {
    if (e.type == "help") return 0;
    Json j;
    j.add("event", Json::str("error")).add("error_type", Json::str(e.type)).add("message", Json::str(e.what()))
        .add("hint", Json::str(e.hint)).add("exit_code", Json::integer(e.code));
    emit(j.dump());
    code = e.code;
  } catch (const std::exception& e) {
    Json j;
    j.add("event", Json::str("error")).add("error_type", Json::str("runner_failure"))
        .add("message", Json::str(std::string("native: ") + e.what()))
        .add("hint", Json::str("see the runner's stderr; report it with the model file"))
        .add("exit_code", Json::integer(edgekd::kExitOther));
    emit(j.dump());
    code = edgekd::kExitOther;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  // Leave without running static destructors of the runtimes (some print or join threads at exit).
  _exit(code);
}
