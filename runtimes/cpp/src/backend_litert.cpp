// LiteRT backend: the C API of ai_edge_litert/libLiteRt.so (the ai-edge-litert wheel), through its
// CompiledModel: environment -> model -> options (CPU accelerator = XNNPACK, with num_threads) ->
// compiled model -> host-memory tensor buffers -> LiteRtRunCompiledModel. Signature 0 is run; its
// input 0 is fed and its output 0 is read (the Python runner reads the interpreter's output 0:
// the same tensor for single-output models, which is what the runner times).
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fstream>

#include "json.h"
#include "litert_c_api.h"
#include "runner.h"

#ifndef EDGEKD_LITERT_VERSION
#define EDGEKD_LITERT_VERSION "unknown"
#endif

namespace edgekd {
namespace {

DType from_element_type(LiteRtElementType t) {
  switch (t) {
    case kLiteRtElementTypeFloat32: return DType::kFloat32;
    case kLiteRtElementTypeFloat64: return DType::kFloat64;
    case kLiteRtElementTypeFloat16: return DType::kFloat16;
    case kLiteRtElementTypeInt8: return DType::kInt8;
    case kLiteRtElementTypeUInt8: return DType::kUInt8;
    case kLiteRtElementTypeInt16: return DType::kInt16;
    case kLiteRtElementTypeInt32: return DType::kInt32;
    case kLiteRtElementTypeInt64: return DType::kInt64;
    case kLiteRtElementTypeBool: return DType::kBool;
    default: return DType::kUnknown;
  }
}

struct HostBuffer {  // 64-byte aligned host memory wrapped as a LiteRtTensorBuffer
  void* mem = nullptr;
  size_t bytes = 0;
  LiteRtTensorBuffer buffer = nullptr;
  LiteRtRankedTensorType type{};
  void release() {
    if (buffer) LiteRtDestroyTensorBuffer(buffer);
    std::free(mem);
    buffer = nullptr;
    mem = nullptr;
  }
};

class LiteRtBackend : public Backend {
 public:
  // The environment is the runtime's start-up (the Python runner's import): made once, before the
  // baseline memory is read, and kept across load()/close().
  LiteRtBackend() {
    if (LiteRtCreateEnvironment(0, nullptr, &env_) != kLiteRtStatusOk)
      throw RunnerError(kExitRuntime, "runtime_missing", "LiteRT could not create its environment",
                        "check that libLiteRt.so matches the runner's build (runtimes/README.md, native runner)");
  }
  ~LiteRtBackend() override {
    close();
    if (env_) LiteRtDestroyEnvironment(env_);
  }
  const char* runtime() const override { return "tflite"; }
  const char* version() const override { return EDGEKD_LITERT_VERSION; }
  const char* interpreter() const override {
    return "edgekd_runner (native C++): LiteRT C API CompiledModel, CPU (XNNPACK), libLiteRt.so";
  }

  void load(const std::string& path, int threads, const std::string& profile_path) override {
    profile_path_ = profile_path;
    profiler_ = nullptr;
    path_ = path;
    name_ = path.substr(path.find_last_of('/') + 1);
    check(LiteRtCreateModelFromFile(env_, path.c_str(), &model_), "read the model", kExitModel);
    LiteRtParamIndex n_sig = 0;
    LiteRtSignature sig = nullptr;
    check(LiteRtGetNumModelSignatures(model_, &n_sig), "list its signatures", kExitModel);
    if (n_sig == 0) fail(kExitModel, "it has no signature to run");
    check(LiteRtGetModelSignature(model_, 0, &sig), "open signature 0", kExitModel);
    LiteRtParamIndex n_in = 0, n_out = 0;
    check(LiteRtGetNumSignatureInputs(sig, &n_in), "count its inputs", kExitModel);
    check(LiteRtGetNumSignatureOutputs(sig, &n_out), "count its outputs", kExitModel);
    if (n_in != 1)
      throw RunnerError(kExitInput, "input_mismatch", name_ + " has " + std::to_string(n_in) + " inputs; the runner feeds one",
                        "export the model with a single image input");
    if (n_out < 1) fail(kExitModel, "it has no output");

    LiteRtOptions options = nullptr;
    check(LiteRtCreateOptions(&options), "create compilation options", kExitOther);
    LiteRtSetOptionsHardwareAccelerators(options, kLiteRtHwAcceleratorCpu);
    // CPU (XNNPACK) options: LiteRT reads them as a TOML string under the identifier "xnnpack".
    const std::string toml = "num_threads = " + std::to_string(threads) + "\n";
    char* payload = static_cast<char*>(std::malloc(toml.size() + 1));
    std::memcpy(payload, toml.c_str(), toml.size() + 1);
    LiteRtOpaqueOptions cpu = nullptr;
    if (LiteRtCreateOpaqueOptions("xnnpack", payload, [](void* p) { std::free(p); }, &cpu) != kLiteRtStatusOk) {
      std::free(payload);
      LiteRtDestroyOptions(options);
      fail(kExitOther, "LiteRT refused the CPU thread option");
    }
    LiteRtAddOpaqueOptions(options, cpu);
    if (!profile_path.empty()) {  // LiteRT's runtime options, also TOML: turn its op profiler on
      static const char kToml[] = "enable_profiling = true\n";
      char* rt = static_cast<char*>(std::malloc(sizeof kToml));
      std::memcpy(rt, kToml, sizeof kToml);
      LiteRtOpaqueOptions runtime_options = nullptr;
      if (LiteRtCreateOpaqueOptions("runtime_options_string", rt, [](void* p) { std::free(p); }, &runtime_options) ==
          kLiteRtStatusOk) {
        LiteRtAddOpaqueOptions(options, runtime_options);
      } else {
        std::free(rt);
      }
    }
    const LiteRtStatus st = LiteRtCreateCompiledModel(env_, model_, options, &compiled_);
    LiteRtDestroyOptions(options);
    check(st, "compile it for the CPU", kExitModel);
    if (!profile_path.empty() && LiteRtCompiledModelGetProfiler(compiled_, &profiler_) == kLiteRtStatusOk && profiler_)
      LiteRtStartProfiler(profiler_);

    LiteRtTensor t = nullptr;
    check(LiteRtGetSignatureInputTensorByIndex(sig, 0, &t), "read input 0", kExitModel);
    in_.resize(1);
    describe(t, input_, in_[0]);
    out_.resize(n_out);
    for (LiteRtParamIndex i = 0; i < n_out; ++i) {
      check(LiteRtGetSignatureOutputTensorByIndex(sig, i, &t), "read output " + std::to_string(i), kExitModel);
      TensorInfo info;
      describe(t, info, out_[i]);
      if (i == 0) output_ = info;
    }
    for (auto* list : {&in_, &out_}) {
      for (HostBuffer& b : *list) {
        b.mem = std::aligned_alloc(EDGEKD_LITERT_HOST_MEMORY_ALIGNMENT, round_up(b.bytes));
        if (!b.mem) fail(kExitOther, "out of memory for its tensors");
        std::memset(b.mem, 0, round_up(b.bytes));
        check(LiteRtCreateTensorBufferFromHostMemory(&b.type, b.mem, b.bytes, nullptr, &b.buffer),
              "wrap a tensor buffer", kExitOther);
      }
    }
    in_handles_ = {in_[0].buffer};
    out_handles_.clear();
    for (const HostBuffer& b : out_) out_handles_.push_back(b.buffer);
  }

  // LiteRT does not verify a .tflite flatbuffer before walking it: a truncated file crashes the
  // process (SIGSEGV) inside LiteRtCreateModelFromFile. So the file is first loaded and compiled
  // once in a forked child; a child that dies or fails makes the file corrupt_model, with no
  // effect on the measurement (the child's memory and time are its own).
  void vet(const std::string& path, int threads) override {
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      try {
        load(path, threads, "");
        close();
      } catch (...) {
        _exit(3);
      }
      _exit(0);
    }
    if (pid < 0) return;  // no fork: load() in this process is the only check
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
      const std::string sig = strsignal(WTERMSIG(status)) ? strsignal(WTERMSIG(status)) : "a signal";
      throw RunnerError(kExitModel, "corrupt_model",
                        "tflite cannot load " + path + ": LiteRT crashed reading it (" + sig +
                            "): the flatbuffer is truncated or damaged",
                        "re-export the model or copy it again; compare its sha256 with edgekd.json");
    }
  }

  void close() override {
    for (auto* list : {&in_, &out_})
      for (HostBuffer& b : *list) b.release();
    in_.clear();
    out_.clear();
    profiler_ = nullptr;  // owned by the compiled model
    if (compiled_) LiteRtDestroyCompiledModel(compiled_);
    if (model_) LiteRtDestroyModel(model_);
    compiled_ = nullptr;
    model_ = nullptr;
  }

  const TensorInfo& input() const override { return input_; }
  const TensorInfo& output() const override { return output_; }

  void set_input(const Array& x) override {
    if (x.data.size() != in_[0].bytes)
      throw RunnerError(kExitInput, "input_mismatch", "the input has " + std::to_string(x.data.size()) +
                        " bytes; " + name_ + " takes " + std::to_string(in_[0].bytes), "check the input shape and dtype");
    std::memcpy(in_[0].mem, x.data.data(), x.data.size());  // as the Python runner's set_tensor
  }

  void invoke() override {
    const LiteRtStatus st = LiteRtRunCompiledModel(compiled_, 0, 1, in_handles_.data(), out_handles_.size(),
                                                   out_handles_.data());
    if (st != kLiteRtStatusOk) throw std::runtime_error("LiteRtRunCompiledModel failed with status " + std::to_string(st));
  }

  void read_output(Array& out) override {
    out.dtype = output_.dtype;
    out.shape = output_.shape;
    const auto* src = static_cast<const uint8_t*>(out_[0].mem);
    out.data.assign(src, src + out_[0].bytes);
  }

  // The profiler's events as JSON: {"format": "litert-profiler", "events": [{tag, type, node, us, source}]}.
  std::string write_profile() override {
    if (!profiler_) return "";
    int n = 0;
    if (LiteRtGetNumProfilerEvents(profiler_, &n) != kLiteRtStatusOk || n <= 0) return "";
    std::vector<LiteRtProfiledEventData> events(static_cast<size_t>(n));
    if (LiteRtGetProfilerEvents(profiler_, n, events.data()) != kLiteRtStatusOk) return "";
    std::string body;
    for (const auto& e : events) {
      if (!e.tag || e.event_source < 0 || e.event_source > 2 || e.event_type <= 0 || e.event_type > 256) {
        std::fprintf(stderr, "edgekd_runner: LiteRT profiler events do not have the expected layout; no profile\n");
        return "";
      }
      Json j;
      j.add("tag", Json::str(e.tag)).add("type", Json::integer(e.event_type))
          .add("node", Json::integer(static_cast<int64_t>(e.event_metadata1)))
          .add("us", Json::integer(static_cast<int64_t>(e.elapsed_time_us))).add("source", Json::integer(e.event_source));
      body += (body.empty() ? "" : ",\n ") + j.dump();
    }
    std::ofstream f(profile_path_);
    f << "{\"format\": \"litert-profiler\", \"events\": [" << body << "]}\n";
    if (!f) throw RunnerError(kExitArgs, "bad_arguments", "cannot write the profile to " + profile_path_,
                              "pass --profile a writable path");
    Json r;
    r.add("format", Json::str("litert-profiler")).add("path", Json::str(profile_path_))
        .add("events", Json::integer(n));
    return r.dump();
  }

 private:
  static size_t round_up(size_t n) {
    const size_t a = EDGEKD_LITERT_HOST_MEMORY_ALIGNMENT;
    return n == 0 ? a : (n + a - 1) / a * a;
  }

  [[noreturn]] void fail(int code, const std::string& why) {
    close();
    throw RunnerError(code, code == kExitModel ? "corrupt_model" : "runner_failure",
                      "tflite cannot load " + path_ + ": " + why,
                      code == kExitModel ? "re-export the model or copy it again; compare its sha256 with edgekd.json"
                                         : "see the runner's stderr; report it with the model file");
  }

  void check(LiteRtStatus st, const std::string& what, int code) {
    if (st != kLiteRtStatusOk) fail(code, "LiteRT could not " + what + " (status " + std::to_string(st) + ")");
  }

  void describe(LiteRtTensor t, TensorInfo& info, HostBuffer& b) {
    LiteRtTensorTypeId id;
    check(LiteRtGetTensorTypeId(t, &id), "read a tensor type", kExitModel);
    if (id != kLiteRtRankedTensorType) fail(kExitModel, "a tensor of its signature has no fixed rank");
    check(LiteRtGetRankedTensorType(t, &b.type), "read a tensor type", kExitModel);
    info.dtype = from_element_type(b.type.element_type);
    if (info.dtype == DType::kUnknown)
      fail(kExitModel, "a tensor has element type " + std::to_string(b.type.element_type) + ", which the runner cannot feed");
    info.shape.clear();
    size_t n = 1;
    for (unsigned i = 0; i < b.type.layout.rank; ++i) {
      const int32_t d = b.type.layout.dimensions[i];
      if (d < 0) fail(kExitModel, "a tensor of signature 0 has a dynamic dimension; export it with a fixed shape");
      info.shape.push_back(d);
      n *= static_cast<size_t>(d);
    }
    b.bytes = n * dtype_size(info.dtype);
    LiteRtQuantizationTypeId q = kLiteRtQuantizationNone;
    info.quantized = false;
    if (LiteRtGetQuantizationTypeId(t, &q) == kLiteRtStatusOk && q == kLiteRtQuantizationPerTensor) {
      LiteRtQuantizationPerTensor p{};
      if (LiteRtGetPerTensorQuantization(t, &p) == kLiteRtStatusOk && p.scale != 0.0f) {
        info.quantized = true;  // as the Python runner: quantized only where the scale is non-zero
        info.scale = p.scale;
        info.zero_point = p.zero_point;
      }
    }
  }

  std::string path_, name_, profile_path_;
  LiteRtProfiler profiler_ = nullptr;
  LiteRtEnvironment env_ = nullptr;
  LiteRtModel model_ = nullptr;
  LiteRtCompiledModel compiled_ = nullptr;
  std::vector<HostBuffer> in_, out_;
  std::vector<LiteRtTensorBuffer> in_handles_, out_handles_;
  TensorInfo input_, output_;
};

}  // namespace
}  // namespace edgekd

extern "C" __attribute__((visibility("default"))) edgekd::Backend* edgekd_create_backend() {
  return new edgekd::LiteRtBackend();
}
