// edgekd native runner: the types the runner core and its backend plugins share.
//
// The core (main.cpp) parses the protocol's arguments, reads .npz files, adapts the logical input
// to the file (layout, dtype, quantization), times the runs and writes the JSON lines. A backend
// (one shared library per runtime, loaded with dlopen) only loads a file and runs it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgekd {

// Exit codes and error types: exactly those of runtimes/python/edgekd_runner.py.
enum ExitCode { kExitOther = 1, kExitArgs = 2, kExitModel = 3, kExitInput = 4, kExitRuntime = 5 };

// A failure with its exit code, a short type, a message naming the thing at fault and a fix.
struct RunnerError : std::runtime_error {
  RunnerError(int code, std::string type, const std::string& message, std::string hint = "")
      : std::runtime_error(message), code(code), type(std::move(type)), hint(std::move(hint)) {}
  int code;
  std::string type;
  std::string hint;
};

// Element types, named as numpy names them (the JSON says "float32", "int8", ...).
enum class DType { kUnknown, kFloat32, kFloat64, kFloat16, kInt8, kUInt8, kInt16, kInt32, kInt64, kBool };

const char* dtype_name(DType t);
size_t dtype_size(DType t);
bool dtype_is_integer(DType t);
bool dtype_is_float(DType t);

// A dense C-order array: shape, element type and the raw bytes.
struct Array {
  std::vector<int64_t> shape;
  DType dtype = DType::kUnknown;
  std::vector<uint8_t> data;

  size_t numel() const;
  double get(size_t i) const;         // element i as a double (any dtype)
  void set(size_t i, double v);       // store v (already rounded/clipped for integer types)
  static Array zeros(const std::vector<int64_t>& shape, DType dtype);
};

// The file's own view of a tensor: shape (-1 = any size), dtype, per-tensor (scale, zero point).
struct TensorInfo {
  std::vector<int64_t> shape;
  DType dtype = DType::kFloat32;
  bool quantized = false;
  double scale = 0.0;
  int64_t zero_point = 0;
};

// One runtime. The core calls load() (maybe twice, with close() between), then run() many times.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* runtime() const = 0;       // "executorch" | "tflite": the Python runner's names
  virtual const char* version() const = 0;       // the runtime's version (the wheel it was built from)
  virtual const char* interpreter() const = 0;   // how it was driven, e.g. "edgekd_runner (native C++) ..."
  // Load `path` with `threads` CPU threads. A non-empty `profile_path` asks for a per-operator
  // profile, written by write_profile(). Throws RunnerError (kExitModel for a file the runtime refuses).
  virtual void load(const std::string& path, int threads, const std::string& profile_path) = 0;
  virtual void close() = 0;  // free what load() made
  // Called once before measuring: throw RunnerError(kExitModel) for a file the runtime would crash on.
  virtual void vet(const std::string& path, int threads) { (void)path; (void)threads; }
  virtual const TensorInfo& input() const = 0;
  virtual const TensorInfo& output() const = 0;
  // Set the input (already in the file's shape and dtype; `x` outlives the runs that use it).
  virtual void set_input(const Array& x) = 0;
  // Run once on the input set last; nothing else (this is what the timed loop measures).
  virtual void invoke() = 0;
  // Copy the first output into `out` (the file's dtype and the output's actual shape).
  virtual void read_output(Array& out) = 0;
  // set_input + invoke + read_output: the first inference and the eval set.
  void run(const Array& x, Array& out) {
    set_input(x);
    invoke();
    read_output(out);
  }
  // Write the profile asked for in load() and return a line describing it (empty: no profile).
  virtual std::string write_profile() { return ""; }
};

}  // namespace edgekd

// Every backend plugin exports this one C symbol.
extern "C" {
typedef edgekd::Backend* (*EdgekdCreateBackendFn)();
}
#define EDGEKD_BACKEND_ENTRY "edgekd_create_backend"
