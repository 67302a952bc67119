// A small .npz reader: a zip archive of .npy files (np.savez stores them uncompressed).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runner.h"

namespace edgekd {

// Read the arrays `keys` from the .npz at `path`. Throws RunnerError(kExitArgs, "bad_arguments")
// naming the file and the fix for a missing key, a file that is not a zip, an unsupported dtype.
std::map<std::string, Array> load_npz(const std::string& path, const std::vector<std::string>& keys);

// The names of the arrays in the .npz at `path` (its entries without ".npy").
std::vector<std::string> npz_names(const std::string& path);

// Parse one .npy file held in memory (`what` names it in errors).
Array parse_npy(const std::vector<uint8_t>& bytes, const std::string& what);

}  // namespace edgekd
