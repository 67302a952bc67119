// The part of LiteRT's C API (litert/c/*.h, LiteRT 2.x) the runner uses, declared here from the
// documented headers because the ai-edge-litert wheel ships libLiteRt.so without them. Checked
// against the wheel's exports (`nm -D libLiteRt.so`) and argument use; the struct layouts are
// the ABI-stable ones the headers pin with static_asserts (LiteRtLayout 68 bytes,
// LiteRtRankedTensorType 72, LiteRtQuantizationPerTensor 16).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

typedef int LiteRtStatus;  // kLiteRtStatusOk = 0; 1 invalid argument, 500 file I/O, 501 bad flatbuffer, ...
enum { kLiteRtStatusOk = 0 };

typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT* LiteRtOpaqueOptions;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;
typedef struct LiteRtEnvOption LiteRtEnvOption;  // only ever passed as NULL
typedef size_t LiteRtParamIndex;
typedef int LiteRtHwAcceleratorSet;
enum { kLiteRtHwAcceleratorCpu = 1 << 0 };

// litert_model_types.h: element types match TfLiteType.
typedef enum {
  kLiteRtElementTypeNone = 0,
  kLiteRtElementTypeFloat32 = 1,
  kLiteRtElementTypeInt32 = 2,
  kLiteRtElementTypeUInt8 = 3,
  kLiteRtElementTypeInt64 = 4,
  kLiteRtElementTypeBool = 6,
  kLiteRtElementTypeInt16 = 7,
  kLiteRtElementTypeInt8 = 9,
  kLiteRtElementTypeFloat16 = 10,
  kLiteRtElementTypeFloat64 = 11,
} LiteRtElementType;

#define EDGEKD_LITERT_MAX_RANK 8
typedef struct {
  unsigned int rank : 7;
  unsigned int has_strides : 1;
  int32_t dimensions[EDGEKD_LITERT_MAX_RANK];  // < 0: dynamic
  uint32_t strides[EDGEKD_LITERT_MAX_RANK];
} LiteRtLayout;

typedef struct {
  LiteRtElementType element_type;
  LiteRtLayout layout;
} LiteRtRankedTensorType;

typedef enum { kLiteRtRankedTensorType = 0, kLiteRtUnrankedTensorType = 1 } LiteRtTensorTypeId;

typedef struct {
  float scale;
  int64_t zero_point;
} LiteRtQuantizationPerTensor;

typedef enum {
  kLiteRtQuantizationNone = 0,
  kLiteRtQuantizationPerTensor = 1,
  kLiteRtQuantizationPerChannel = 2,
} LiteRtQuantizationTypeId;

typedef void (*LiteRtHostMemoryDeallocator)(void* addr);
#define EDGEKD_LITERT_HOST_MEMORY_ALIGNMENT 64

// litert_environment.h
LiteRtStatus LiteRtCreateEnvironment(int num_options, const LiteRtEnvOption* options, LiteRtEnvironment* environment);
void LiteRtDestroyEnvironment(LiteRtEnvironment environment);

// litert_model.h (2.x: the model is created within an environment)
LiteRtStatus LiteRtCreateModelFromFile(LiteRtEnvironment environment, const char* filename, LiteRtModel* model);
void LiteRtDestroyModel(LiteRtModel model);
LiteRtStatus LiteRtGetNumModelSignatures(LiteRtModel model, LiteRtParamIndex* num_signatures);
LiteRtStatus LiteRtGetModelSignature(LiteRtModel model, LiteRtParamIndex signature_index, LiteRtSignature* signature);
LiteRtStatus LiteRtGetNumSignatureInputs(LiteRtSignature signature, LiteRtParamIndex* num_inputs);
LiteRtStatus LiteRtGetNumSignatureOutputs(LiteRtSignature signature, LiteRtParamIndex* num_outputs);
LiteRtStatus LiteRtGetSignatureInputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex input_idx,
                                                  LiteRtTensor* tensor);
LiteRtStatus LiteRtGetSignatureOutputTensorByIndex(LiteRtSignature signature, LiteRtParamIndex output_idx,
                                                   LiteRtTensor* tensor);
LiteRtStatus LiteRtGetTensorTypeId(LiteRtTensor tensor, LiteRtTensorTypeId* type_id);
LiteRtStatus LiteRtGetRankedTensorType(LiteRtTensor tensor, LiteRtRankedTensorType* ranked_tensor_type);
LiteRtStatus LiteRtGetQuantizationTypeId(LiteRtTensor tensor, LiteRtQuantizationTypeId* q_type_id);
LiteRtStatus LiteRtGetPerTensorQuantization(LiteRtTensor tensor, LiteRtQuantizationPerTensor* per_tensor_quantization);

// litert_options.h, litert_opaque_options.h
LiteRtStatus LiteRtCreateOptions(LiteRtOptions* options);
void LiteRtDestroyOptions(LiteRtOptions options);
LiteRtStatus LiteRtSetOptionsHardwareAccelerators(LiteRtOptions options, LiteRtHwAcceleratorSet hardware_accelerators);
LiteRtStatus LiteRtAddOpaqueOptions(LiteRtOptions options, LiteRtOpaqueOptions opaque_options);
LiteRtStatus LiteRtCreateOpaqueOptions(const char* payload_identifier, void* payload_data,
                                       void (*payload_destructor)(void* payload_data), LiteRtOpaqueOptions* options);
void LiteRtDestroyOpaqueOptions(LiteRtOpaqueOptions options);

// litert_compiled_model.h
LiteRtStatus LiteRtCreateCompiledModel(LiteRtEnvironment environment, LiteRtModel model,
                                       LiteRtOptions compilation_options, LiteRtCompiledModel* compiled_model);
void LiteRtDestroyCompiledModel(LiteRtCompiledModel compiled_model);
LiteRtStatus LiteRtRunCompiledModel(LiteRtCompiledModel compiled_model, LiteRtParamIndex signature_index,
                                    size_t num_input_buffers, LiteRtTensorBuffer* input_buffers,
                                    size_t num_output_buffers, LiteRtTensorBuffer* output_buffers);

// litert_profiler.h / litert_profiler_event.h. The C header mirrors tflite::profiling::memory::MemoryUsage
// with two fields, but this build copies events with a 104-byte stride (LiteRtGetProfilerEvents divides
// by 104): MemoryUsage has three 8-byte fields here. The struct below has that layout; the runner checks
// every event it reads (non-null tag, known source) and drops the table if one looks wrong.
typedef struct LiteRtProfilerT* LiteRtProfiler;
typedef struct {
  const char* tag;
  int event_type;  // 1 default, 2 operator invoke, 4 delegate-internal operator, 8 delegate-profiled op, 16 runtime
  uint64_t start_timestamp_us;
  uint64_t elapsed_time_us;
  int64_t begin_mem_usage[3];
  int64_t end_mem_usage[3];
  uint64_t event_metadata1;  // operator invoke: the node index
  uint64_t event_metadata2;
  int event_source;  // 0 LiteRT, 1 TFLite interpreter, 2 TFLite delegate
} LiteRtProfiledEventData;
LiteRtStatus LiteRtCompiledModelGetProfiler(LiteRtCompiledModel compiled_model, LiteRtProfiler* profiler);
LiteRtStatus LiteRtStartProfiler(LiteRtProfiler profiler);
LiteRtStatus LiteRtGetNumProfilerEvents(LiteRtProfiler profiler, int* num_events);
LiteRtStatus LiteRtGetProfilerEvents(LiteRtProfiler profiler, int num_events, LiteRtProfiledEventData* events);

// litert_tensor_buffer.h
LiteRtStatus LiteRtCreateTensorBufferFromHostMemory(const LiteRtRankedTensorType* tensor_type, void* host_buffer_addr,
                                                    size_t host_buffer_size, LiteRtHostMemoryDeallocator deallocator,
                                                    LiteRtTensorBuffer* buffer);
void LiteRtDestroyTensorBuffer(LiteRtTensorBuffer buffer);
}

static_assert(sizeof(LiteRtLayout) == 68, "LiteRtLayout ABI");
static_assert(sizeof(LiteRtRankedTensorType) == 72, "LiteRtRankedTensorType ABI");
static_assert(sizeof(LiteRtQuantizationPerTensor) == 16, "LiteRtQuantizationPerTensor ABI");
static_assert(sizeof(void*) != 8 || sizeof(LiteRtProfiledEventData) == 104, "ProfiledEventData ABI (64-bit)");
