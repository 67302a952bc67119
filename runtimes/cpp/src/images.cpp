// Eval sets of decoded images (see images.h).
#include "images.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "npz.h"

namespace edgekd {

const std::vector<std::string>& image_eval_keys() {
  static const std::vector<std::string> keys = {"pixels", "shapes", "y", "pre_size", "pre_resize_to",
                                                "pre_crop", "pre_scale", "pre_mean", "pre_std"};
  return keys;
}

bool has_images(const std::string& path) {
  const std::vector<std::string> names = npz_names(path);
  return std::find(names.begin(), names.end(), "pixels") != names.end();
}

namespace {

// Source indices and weights along one axis: s = (d + 0.5) * in / out - 0.5, clamped to [0, in - 1].
void axis(int64_t in, int64_t out, std::vector<int64_t>& lo, std::vector<int64_t>& hi, std::vector<double>& w) {
  lo.resize(out), hi.resize(out), w.resize(out);
  for (int64_t d = 0; d < out; ++d) {
    double s = (d + 0.5) * static_cast<double>(in) / static_cast<double>(out) - 0.5;
    if (s < 0) s = 0;
    int64_t l = std::min(static_cast<int64_t>(std::floor(s)), in - 1);
    lo[d] = l, hi[d] = std::min(l + 1, in - 1), w[d] = s - static_cast<double>(l);
  }
}

}  // namespace

Array preprocess_images(const std::map<std::string, Array>& ev, const std::string& path) {
  const Array& px = ev.at("pixels");
  const Array& shapes = ev.at("shapes");
  if (px.dtype != DType::kUInt8 || shapes.shape.size() != 2 || shapes.shape[1] != 3 || ev.at("pre_size").numel() != 2)
    throw RunnerError(kExitInput, "input_mismatch", path + ": pixels must be uint8, shapes (N, 3), pre_size [h, w]",
                      "write the eval images with edgekd (bench --eval-data folder:PATH)");
  const int64_t n = shapes.shape[0];
  const int64_t h = static_cast<int64_t>(ev.at("pre_size").get(0)), w = static_cast<int64_t>(ev.at("pre_size").get(1));
  const int64_t resize_to = static_cast<int64_t>(ev.at("pre_resize_to").get(0));
  const bool crop = ev.at("pre_crop").get(0) != 0;
  const float scale = static_cast<float>(ev.at("pre_scale").get(0));
  const Array& mean = ev.at("pre_mean");
  const Array& stdv = ev.at("pre_std");
  const int64_t c = n ? static_cast<int64_t>(shapes.get(0)) : 1;
  Array x = Array::zeros({n, c, h, w}, DType::kFloat32);
  float* out = reinterpret_cast<float*>(x.data.data());
  size_t offset = 0;
  std::vector<int64_t> y0, y1, x0, x1;
  std::vector<double> wy, wx;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ci = static_cast<int64_t>(shapes.get(3 * i)), ih = static_cast<int64_t>(shapes.get(3 * i + 1)),
                  iw = static_cast<int64_t>(shapes.get(3 * i + 2));
    const size_t count = static_cast<size_t>(ci * ih * iw);
    if (ci != c || offset + count > px.data.size())
      throw RunnerError(kExitInput, "input_mismatch", path + ": image " + std::to_string(i) + " does not fit pixels/shapes",
                        "write pixels and shapes of the same images, all with the model's channel count");
    int64_t rh = h, rw = w;
    if (resize_to > 0) {  // torchvision Resize(int): the shorter side to resize_to
      const int64_t shorter = std::min(ih, iw), longer = std::max(ih, iw);
      const int64_t new_long = static_cast<int64_t>(static_cast<double>(resize_to) * static_cast<double>(longer) /
                                                    static_cast<double>(shorter));
      rh = iw <= ih ? new_long : resize_to;
      rw = iw <= ih ? resize_to : new_long;
    }
    const int64_t top = crop ? static_cast<int64_t>(std::nearbyint((rh - h) / 2.0)) : 0;
    const int64_t left = crop ? static_cast<int64_t>(std::nearbyint((rw - w) / 2.0)) : 0;
    axis(ih, rh, y0, y1, wy);
    axis(iw, rw, x0, x1, wx);
    const uint8_t* p = px.data.data() + offset;
    for (int64_t k = 0; k < c; ++k) {
      const float m = static_cast<float>(mean.get(mean.numel() == 1 ? 0 : static_cast<size_t>(k)));
      const float s = static_cast<float>(stdv.get(stdv.numel() == 1 ? 0 : static_cast<size_t>(k)));
      const uint8_t* plane = p + k * ih * iw;
      for (int64_t yy = 0; yy < h; ++yy) {
        const int64_t ry = yy + top;
        const double v = wy[ry];
        const uint8_t* r0 = plane + y0[ry] * iw;
        const uint8_t* r1 = plane + y1[ry] * iw;
        for (int64_t xx = 0; xx < w; ++xx) {
          const int64_t rx = xx + left;
          const double u = wx[rx];
          const double t = (1.0 - u) * r0[x0[rx]] + u * r0[x1[rx]];
          const double b = (1.0 - u) * r1[x0[rx]] + u * r1[x1[rx]];
          const float value = static_cast<float>((1.0 - v) * t + v * b) * scale;
          out[((i * c + k) * h + yy) * w + xx] = (value - m) / s;
        }
      }
    }
    offset += count;
  }
  return x;
}

}  // namespace edgekd
