// Test shim: exposes llama.cpp's own imatrix file loader (common/imatrix-loader.cpp, compiled unmodified
// from the llama-cpp-python source tree) through a C ABI, so a test can hand its result to
// llama_model_quantize exactly as tools/quantize does.  Only the three log hooks the loader's LOG_ERR
// needs are defined here (libcommon is not shipped in the wheel).
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "imatrix-loader.h"
#include "log.h"

int common_log_get_verbosity_thold(void) { return 10; }
struct common_log* common_log_main() { return nullptr; }
void common_log_add(struct common_log*, enum ggml_log_level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
}

static common_imatrix g_im;

extern "C" {
// Returns the number of entries (-1 on failure); fills is_legacy, has_metadata, chunk_count, chunk_size.
int shim_load(const char* path, int* info) {
  g_im = common_imatrix();
  if (!common_imatrix_load(path, g_im)) return -1;
  info[0] = g_im.is_legacy;
  info[1] = g_im.has_metadata;
  info[2] = g_im.chunk_count;
  info[3] = g_im.chunk_size;
  return static_cast<int>(g_im.entries.size());
}
// Entry i (map order): its name, sums and counts sizes.
const char* shim_entry(int i, long* n_sums, long* n_counts) {
  auto it = g_im.entries.begin();
  std::advance(it, i);
  *n_sums = static_cast<long>(it->second.sums.size());
  *n_counts = static_cast<long>(it->second.counts.size());
  return it->first.c_str();
}
void shim_copy(int i, float* sums, long long* counts) {
  auto it = g_im.entries.begin();
  std::advance(it, i);
  std::memcpy(sums, it->second.sums.data(), it->second.sums.size() * sizeof(float));
  for (size_t j = 0; j < it->second.counts.size(); ++j) counts[j] = it->second.counts[j];
}
}
