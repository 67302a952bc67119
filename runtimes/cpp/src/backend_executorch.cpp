// ExecuTorch backend: the C++ runtime the executorch wheel ships (executorch/lib/*.so), driven
// through the Module API. The XNNPACK delegate and the CPU kernels register themselves when their
// libraries load (CMake links them with --no-as-needed); the thread pool is resized to --threads;
// --profile attaches an ETDump event tracer and writes the dump at the end.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#include "json.h"
#include "runner.h"

#ifndef EDGEKD_EXECUTORCH_VERSION
#define EDGEKD_EXECUTORCH_VERSION "unknown"
#endif

// The wheel ships libexecutorch_threadpool.so but not its header: the two calls the runner needs,
// declared as the library exports them (executorch/extension/threadpool/threadpool.h upstream).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace edgekd {
namespace {

using executorch::extension::Module;
using executorch::runtime::Error;
namespace et = executorch::runtime;

DType from_scalar_type(executorch::aten::ScalarType t) {
  switch (static_cast<int>(t)) {  // ExecuTorch ScalarType codes, as the Python runner's _ET_DTYPES
    case 0: return DType::kUInt8;
    case 1: return DType::kInt8;
    case 2: return DType::kInt16;
    case 3: return DType::kInt32;
    case 4: return DType::kInt64;
    case 5: return DType::kFloat16;
    case 6: return DType::kFloat32;
    case 7: return DType::kFloat64;
    case 11: return DType::kBool;
    default: return DType::kFloat32;
  }
}

executorch::aten::ScalarType to_scalar_type(DType t) {
  using ST = executorch::aten::ScalarType;
  switch (t) {
    case DType::kUInt8: return ST::Byte;
    case DType::kInt8: return ST::Char;
    case DType::kInt16: return ST::Short;
    case DType::kInt32: return ST::Int;
    case DType::kInt64: return ST::Long;
    case DType::kFloat16: return ST::Half;
    case DType::kFloat64: return ST::Double;
    case DType::kBool: return ST::Bool;
    default: return ST::Float;
  }
}

std::string err(Error e) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "ExecuTorch error 0x%x", static_cast<unsigned>(e));
  return buf;
}

TensorInfo info_of(const et::TensorInfo& t) {
  TensorInfo info;
  for (auto s : t.sizes()) info.shape.push_back(s);
  info.dtype = from_scalar_type(t.scalar_type());
  return info;
}

class ExecuTorchBackend : public Backend {
 public:
  const char* runtime() const override { return "executorch"; }
  const char* version() const override { return EDGEKD_EXECUTORCH_VERSION; }
  const char* interpreter() const override {
    return "edgekd_runner (native C++): ExecuTorch Module API, XNNPACK, libexecutorch.so";
  }

  void load(const std::string& path, int threads, const std::string& profile_path) override {
    executorch::runtime::runtime_init();
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (pool) pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));  // XNNPACK's thread pool
    profile_path_ = profile_path;
    std::unique_ptr<et::EventTracer> tracer;
    if (!profile_path.empty()) {
      auto gen = std::make_unique<executorch::etdump::ETDumpGen>();
      etdump_ = gen.get();
      tracer = std::move(gen);
    }
    module_ = std::make_unique<Module>(path, Module::LoadMode::Mmap, std::move(tracer));
    const auto refuse = [&](const std::string& why) {
      module_.reset();
      throw RunnerError(kExitModel, "corrupt_model", "executorch cannot load " + path + ": " + why,
                        "re-export the model or copy it again; compare its sha256 with edgekd.json");
    };
    Error e = module_->load(et::Program::Verification::InternalConsistency);
    if (e != Error::Ok) refuse("the program does not load (" + err(e) + ")");
    e = module_->load_method("forward");
    if (e != Error::Ok) refuse("method forward does not load (" + err(e) + "; an operator or delegate missing?)");
    auto method = module_->method("forward");  // the Method itself: the timed loop calls execute() only
    if (!method.ok()) refuse("method forward is not available");
    method_ = *method;
    auto meta = module_->method_meta("forward");
    if (!meta.ok()) refuse("no method meta for forward");
    const std::string name = path.substr(path.find_last_of('/') + 1);
    if (meta->num_inputs() != 1)
      throw RunnerError(kExitInput, "input_mismatch",
                        name + " has " + std::to_string(meta->num_inputs()) + " inputs; the runner feeds one",
                        "export the model with a single image input");
    auto in = meta->input_tensor_meta(0);
    auto out = meta->output_tensor_meta(0);
    if (!in.ok() || !out.ok()) refuse("input 0 or output 0 is not a tensor");
    input_ = info_of(*in);
    output_ = info_of(*out);
  }

  void close() override {
    tensor_.reset();
    method_ = nullptr;
    module_.reset();
    etdump_ = nullptr;
  }

  const TensorInfo& input() const override { return input_; }
  const TensorInfo& output() const override { return output_; }

  void set_input(const Array& x) override {
    if (!tensor_ || fed_ != x.data.data()) {
      std::vector<executorch::aten::SizesType> sizes(x.shape.begin(), x.shape.end());
      tensor_ = executorch::extension::from_blob(const_cast<uint8_t*>(x.data.data()), sizes, to_scalar_type(x.dtype));
      fed_ = x.data.data();
    }
    const Error e = method_->set_input(et::EValue(*tensor_), 0);
    if (e != Error::Ok) throw std::runtime_error("ExecuTorch set_input failed (" + err(e) + ")");
  }

  void invoke() override {
    const Error e = method_->execute();
    if (e != Error::Ok) throw std::runtime_error("ExecuTorch forward failed (" + err(e) + ")");
  }

  void read_output(Array& out) override {
    const et::EValue& value = method_->get_output(0);
    if (!value.isTensor()) throw std::runtime_error("ExecuTorch forward has no tensor output 0");
    const auto& t = value.toTensor();
    out.dtype = from_scalar_type(t.scalar_type());
    out.shape.assign(t.sizes().begin(), t.sizes().end());
    const auto* src = static_cast<const uint8_t*>(t.const_data_ptr());
    out.data.assign(src, src + t.nbytes());
  }

  std::string write_profile() override {
    if (!etdump_) return "";
    executorch::etdump::ETDumpResult r = etdump_->get_etdump_data();
    if (!r.buf || !r.size) return "";
    std::ofstream f(profile_path_, std::ios::binary);
    f.write(static_cast<const char*>(r.buf), static_cast<std::streamsize>(r.size));
    std::free(r.buf);
    if (!f) throw RunnerError(kExitArgs, "bad_arguments", "cannot write the profile to " + profile_path_,
                              "pass --profile a writable path");
    Json j;
    j.add("format", Json::str("etdump")).add("path", Json::str(profile_path_))
        .add("bytes", Json::integer(static_cast<int64_t>(r.size)));
    return j.dump();
  }

 private:
  std::unique_ptr<Module> module_;
  et::Method* method_ = nullptr;
  executorch::etdump::ETDumpGen* etdump_ = nullptr;
  std::string profile_path_;
  executorch::extension::TensorPtr tensor_;
  const void* fed_ = nullptr;
  TensorInfo input_, output_;
};

}  // namespace
}  // namespace edgekd

extern "C" __attribute__((visibility("default"))) edgekd::Backend* edgekd_create_backend() {
  return new edgekd::ExecuTorchBackend();
}
