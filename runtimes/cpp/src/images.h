// Eval sets of decoded images: the bundle's preprocessing applied on the device, as an app would.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "runner.h"

namespace edgekd {

// The keys of an eval .npz that holds decoded images instead of ready inputs.
const std::vector<std::string>& image_eval_keys();

// Whether the .npz at `path` holds decoded images (a `pixels` entry).
bool has_images(const std::string& path);

// `pixels` (uint8, all images flattened), `shapes` (N, 3: C, H, W) and the preprocessing as numbers
// (`pre_size` [h, w], `pre_resize_to` (0: straight to the size), `pre_crop` (1: centre), `pre_scale`,
// `pre_mean`, `pre_std`) → the logical float32 inputs (N, C, h, w). The same steps, in the same order and
// precision, as runtimes/python/edgekd_runner.py's preprocess_image and edgekd.bundle.Preprocessing:
// bilinear resize with half-pixel centres and edge clamp, no antialiasing, in double; centre crop (offsets
// rounded half to even); x = (float) r * scale; (x - mean[c]) / std[c] in float.
Array preprocess_images(const std::map<std::string, Array>& ev, const std::string& path);

}  // namespace edgekd
