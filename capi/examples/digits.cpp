// The C++ face of libcaq: a small RAII wrapper over caq.h (errors become exceptions that carry
// libcaq's message), used to run a bundle and check every output against the golden model's.
//
//   digits_cpp CONFIG.toml BUNDLE.caqb IMAGES.u8 EXPECTED.i32 COUNT
//
// Runs on the functional model; prints one line per image and exits 0 when every code matches.
// Build: c++ -std=c++17 -Wall -Wextra -Icapi/include digits.cpp -Ltarget/debug -lcaq
#include "caq.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace caq {

struct Error : std::runtime_error {
  caq_status status;
  Error(caq_status s) : std::runtime_error(caq_last_error()), status(s) {}
};

inline void check(caq_status s) {
  if (s != CAQ_OK) throw Error(s);
}

class Accelerator {
 public:
  static Accelerator sim(const std::string &config) {
    caq_accel *a = nullptr;
    check(caq_open_sim(config.c_str(), &a));
    return Accelerator(a);
  }
  void load(const std::string &bundle) {
    check(caq_load_bundle(acc_.get(), bundle.c_str()));
    check(caq_get_model_info(acc_.get(), &info_));
  }
  const caq_model_info &info() const { return info_; }
  void set_bits(const std::vector<uint8_t> &bits) {
    check(caq_set_bits(acc_.get(), bits.data(), bits.size()));
  }
  void meter(caq_meter m) { check(caq_attach_meter(acc_.get(), m, 1.0)); }
  std::vector<int32_t> infer(const uint8_t *input, caq_report *report) {
    std::vector<int32_t> out(info_.output_len);
    check(caq_infer(acc_.get(), input, info_.input_len, out.data(), out.size(), report));
    return out;
  }

 private:
  explicit Accelerator(caq_accel *a) : acc_(a, caq_close) {}
  std::unique_ptr<caq_accel, void (*)(caq_accel *)> acc_;
  caq_model_info info_{};
};

}  // namespace caq

template <typename T>
static std::vector<T> read_all(const char *path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string(path) + ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> v(bytes.size() / sizeof(T));
  std::copy(bytes.begin(), bytes.begin() + v.size() * sizeof(T),
            reinterpret_cast<char *>(v.data()));
  return v;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s CONFIG BUNDLE IMAGES EXPECTED COUNT\n", argv[0]);
    return 2;
  }
  try {
    auto acc = caq::Accelerator::sim(argv[1]);
    acc.load(argv[2]);
    const caq_model_info &info = acc.info();
    acc.set_bits(std::vector<uint8_t>(info.weight_layers, info.levels[0]));
    acc.meter(CAQ_METER_MODEL);
    auto images = read_all<uint8_t>(argv[3]);
    auto expected = read_all<int32_t>(argv[4]);
    size_t count = std::stoul(argv[5]);
    if (images.size() < count * info.input_len || expected.size() < count * info.output_len)
      throw std::runtime_error("images or expected outputs too short");
    size_t equal = 0;
    for (size_t i = 0; i < count; i++) {
      caq_report r;
      auto out = acc.infer(images.data() + i * info.input_len, &r);
      bool same = std::equal(out.begin(), out.end(), expected.begin() + i * info.output_len);
      equal += same;
      std::printf("image %zu: %llu cycles, %.3g uJ%s\n", i, (unsigned long long)r.cycles,
                  r.energy_j * 1e6, same ? "" : "  MISMATCH");
    }
    std::printf("%zu/%zu outputs equal to golden (C++)\n", equal, count);
    // A bad gate name is an exception with libcaq's message.
    try {
      caq::check(caq_apply_gate(nullptr, "x"));
    } catch (const caq::Error &e) {
      std::printf("null handle: %s: %s\n", caq_status_name(e.status), e.what());
    }
    return equal == count ? 0 : 1;
  } catch (const caq::Error &e) {
    std::fprintf(stderr, "caq: %s: %s\n", caq_status_name(e.status), e.what());
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
