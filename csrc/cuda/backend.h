// Host-side entry points of the CUDA target.  For now it carries the E4M3 decode only, which proves the
// toolchain, the device discovery and the host<->device path; the runtime's kernels join it later.
// Compiled only when DSV4_HAVE_CUDA; every function throws std::runtime_error on a CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv4::cuda {

int device_count();                 // 0 when there is no driver or no device (never throws)
std::string device_name(int device);
int runtime_version();              // CUDA runtime version the target was built against
// Decode n E4M3 bytes (host memory) to float32 (host memory) on device 0.
void decode_e4m3(const uint8_t* in, float* out, size_t n);

}  // namespace dsv4::cuda
