// Generated from edgekd/formats.py by edgekd.formats.sync_native_header(): do not edit.
// The suffixes the native runner knows; magic: how the file starts (? any byte, # an ASCII digit).
#pragma once

#include <cstddef>

namespace edgekd {

struct FormatRow {
  const char* suffix;
  const char* backend;
  const char* plugin;
  const char* engine;
  const char* magic;
  size_t magic_len;
};

inline constexpr FormatRow kFormats[] = {
    {".pte", "executorch", "libedgekd_backend_executorch.so", "ExecuTorch", "????ET##", 8},
    {".tflite", "tflite", "libedgekd_backend_litert.so", "LiteRT", "????TFL3", 8},
    {".pt2", "torch", nullptr, "torch", "PK\003\004", 4},
};

}  // namespace edgekd
