// The only file that includes pybind11: array-in/array-out wrappers over libdsv4 with strict dtype and
// contiguity checks (never a silent copy-cast) and the GIL released around every kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <type_traits>

#include "core/cpu_features.h"
#include "core/fp_decode.h"
#include "quant/quant.h"
#include "quant/repack.h"
#ifdef DSV4_HAVE_CUDA
#include "runtime/ops_cuda/backend.h"
#endif

namespace py = pybind11;
using dsv4::Impl;

namespace {

Impl parse_impl(const std::string& s) {
  if (s == "auto") return Impl::Auto;
  if (s == "ref") return Impl::Ref;
  // 'simd': this architecture's first SIMD level (AVX2 on x86-64, NEON on aarch64), the name older callers use
  if (s == "simd") return std::string(dsv4::arch_name()) == "aarch64" ? Impl::Neon : Impl::Simd;
  if (s == "avx2") return Impl::Simd;
  if (s == "avx512") return Impl::Avx512;
  if (s == "neon") return Impl::Neon;
  throw py::value_error("impl must be 'auto', 'ref', 'simd', 'avx2', 'avx512' or 'neon', got '" + s + "'");
}

void require_u8(const py::array& a, const char* what) {
  if (!a.dtype().is(py::dtype::of<uint8_t>()))
    throw py::type_error(std::string(what) +
                         ": expected a uint8 array (view float8/int8 data with .view(np.uint8)), got dtype " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(what) + ": array must be C-contiguous (use np.ascontiguousarray)");
}

void require_2d(const py::array& a, const char* what) {
  if (a.ndim() != 2)
    throw py::value_error(std::string(what) + ": expected a 2-D array, got " + std::to_string(a.ndim()) + "-D");
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// Logits [rows, V] handed to numpy without a copy: the array owns the vector.  A decode step's logits are
// megabytes (the vocabulary times the batch); a copy into a fresh array cost a second buffer's page faults
// and a memmove on every step.
template <class Vec>
py::array_t<float> own_rows(Vec&& v, int64_t rows) {
  using Owned = std::decay_t<Vec>;
  auto* keep = new Owned(std::move(v));
  py::capsule owner(keep, [](void* p) { delete static_cast<Owned*>(p); });
  const int64_t V = static_cast<int64_t>(keep->size()) / rows;
  return py::array_t<float>({rows, V}, keep->data(), owner);
}

const uint8_t* u8ptr(const py::array& a) { return static_cast<const uint8_t*>(a.data()); }

template <class Fn>
py::array_t<float> elementwise(const py::array& in, const char* what, Fn fn, int widen) {
  require_u8(in, what);
  auto shape = shape_of(in);
  if (widen > 1) {
    if (shape.empty()) throw py::value_error(std::string(what) + ": expected at least a 1-D array");
    shape.back() *= widen;
  }
  py::array_t<float> out(shape);
  const size_t n = static_cast<size_t>(in.size());
  const uint8_t* src = u8ptr(in);
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    fn(src, dst, n);
  }
  return out;
}

py::dict build_info() {
  py::dict d;
  d["version"] = DSV4_VERSION;
  d["compiler"] = DSV4_CXX_COMPILER;
  d["build_type"] = DSV4_BUILD_TYPE;
  // kernel levels: compiled in, usable on this CPU, and the one in use (DSV4_KERNELS, its aliases or the best)
  py::list compiled, supported, simd;
  for (Impl i : dsv4::levels_compiled()) {
    compiled.append(dsv4::impl_name(i));
    if (i != Impl::Ref) simd.append(dsv4::impl_name(i));
  }
  for (Impl i : dsv4::levels_supported()) supported.append(dsv4::impl_name(i));
  d["arch"] = dsv4::arch_name();
  d["kernel_levels_compiled"] = py::tuple(compiled);
  d["kernel_levels_supported"] = py::tuple(supported);
  d["simd_compiled"] = py::tuple(simd);
  d["cpu_avx2"] = dsv4::cpu_has_avx2();
  d["cpu_avx512"] = dsv4::cpu_has_avx512();
  d["cpu_neon"] = dsv4::cpu_has_neon();
  d["cpu_dotprod"] = dsv4::cpu_has_dotprod();
  const char* forced = std::getenv("DSV4_KERNELS");
  d["kernels_env"] = forced ? py::object(py::str(forced)) : py::object(py::none());
  d["force_ref"] = dsv4::force_ref_from_env();
  d["force_avx2"] = dsv4::force_avx2_from_env();
  d["kernel_impl"] = dsv4::impl_name(dsv4::resolve_impl(Impl::Auto));  // throws for a level this CPU lacks
  d["hardware_threads"] = static_cast<int>(std::thread::hardware_concurrency());
#ifdef DSV4_HAVE_CUDA
  d["cuda"] = true;
  d["cuda_version"] = DSV4_CUDA_VERSION;
  d["cuda_archs"] = DSV4_CUDA_ARCHS;
  d["cuda_runtime_version"] = dsv4::cuda::runtime_version();
  d["cuda_devices"] = dsv4::cuda::device_count();
#else
  d["cuda"] = false;
  d["cuda_devices"] = 0;
#endif
  return d;
}

}  // namespace

// ================================================================================================
// Quant kernels (csrc/quant): ggml block formats.  Rows along the last axis; quantized data is
// uint8 with the last axis in bytes.  Kernel errors (std::invalid_argument) surface as ValueError
// through pybind11's standard translation.
// ================================================================================================
namespace {

void require_f32_c(const py::array& a, const char* what) {
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(what) + ": expected a float32 array, got dtype " +
                         std::string(py::str(a.dtype())) + " (convert explicitly, e.g. x.astype(np.float32))");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(what) + ": array must be C-contiguous (use np.ascontiguousarray)");
}

const dsv4::QTypeInfo& qinfo(int qtype) {
  const dsv4::QTypeInfo* info = dsv4::qtype_info(qtype);
  if (!info) throw py::value_error("unsupported ggml quant type id " + std::to_string(qtype));
  return *info;
}

py::array_t<uint8_t> quantize_rows_py(int qtype, const py::array& data, const py::object& imatrix,
                                      const std::string& impl, int threads) {
  const auto& info = qinfo(qtype);
  require_f32_c(data, "quantize_rows data");
  require_2d(data, "quantize_rows data");
  const int64_t rows = data.shape(0), cols = data.shape(1);
  const size_t rs = dsv4::quant_row_size(info.type, cols);
  const float* qw = nullptr;
  py::array im;
  if (!imatrix.is_none()) {
    im = py::reinterpret_borrow<py::array>(imatrix);
    require_f32_c(im, "quantize_rows imatrix");
    if (im.ndim() != 1 || im.shape(0) != cols)
      throw py::value_error("quantize_rows imatrix: expected shape (" + std::to_string(cols) +
                            ",) (one weight per column)");
    qw = static_cast<const float*>(im.data());
  }
  Impl i = parse_impl(impl);
  py::array_t<uint8_t> out({rows, static_cast<int64_t>(rs)});
  const float* src = static_cast<const float*>(data.data());
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    dsv4::quantize_rows(info.type, src, dst, rows, cols, qw, i, threads);
  }
  return out;
}

py::array_t<float> dequantize_rows_py(int qtype, const py::array& data, const std::string& impl, int threads) {
  const auto& info = qinfo(qtype);
  require_u8(data, "dequantize_rows data");
  require_2d(data, "dequantize_rows data");
  const int64_t rows = data.shape(0), nbytes = data.shape(1);
  if (nbytes <= 0 || nbytes % info.type_size != 0)
    throw py::value_error(std::string("dequantize_rows: ") + std::to_string(nbytes) +
                          " bytes per row is not a positive multiple of the " + info.name + " block size (" +
                          std::to_string(info.type_size) + " bytes)");
  const int64_t cols = nbytes / info.type_size * info.block_size;
  Impl i = parse_impl(impl);
  py::array_t<float> out({rows, cols});
  const uint8_t* src = u8ptr(data);
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    dsv4::dequantize_rows(info.type, src, dst, rows, cols, i, threads);
  }
  return out;
}

py::array_t<float> matvec_py(int qtype, const py::array& w, const py::array& x, const std::string& impl, int threads) {
  const auto& info = qinfo(qtype);
  require_u8(w, "matvec weight");
  require_2d(w, "matvec weight");
  require_f32_c(x, "matvec x");
  if (x.ndim() != 1) throw py::value_error("matvec x: expected a 1-D float32 vector");
  const int64_t rows = w.shape(0), cols = x.shape(0);
  const size_t rs = dsv4::quant_row_size(info.type, cols);
  if (static_cast<size_t>(w.shape(1)) != rs)
    throw py::value_error(std::string("matvec: weight has ") + std::to_string(w.shape(1)) +
                          " bytes per row, expected " + std::to_string(rs) + " for " + std::to_string(cols) + " " +
                          info.name + " columns");
  Impl i = parse_impl(impl);
  py::array_t<float> out(rows);
  const uint8_t* wp = u8ptr(w);
  const float* xp = static_cast<const float*>(x.data());
  float* yp = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    dsv4::matvec(info.type, wp, xp, yp, rows, cols, i, threads);
  }
  return out;
}

py::array_t<float> matmul_py(int qtype, const py::array& w, const py::array& x, const std::string& impl, int threads) {
  const auto& info = qinfo(qtype);
  require_u8(w, "matmul weight");
  require_2d(w, "matmul weight");
  require_f32_c(x, "matmul x");
  if (x.ndim() != 2) throw py::value_error("matmul x: expected a 2-D float32 array [tokens, cols]");
  const int64_t rows = w.shape(0), ntok = x.shape(0), cols = x.shape(1);
  const size_t rs = dsv4::quant_row_size(info.type, cols);
  if (static_cast<size_t>(w.shape(1)) != rs)
    throw py::value_error(std::string("matmul: weight has ") + std::to_string(w.shape(1)) +
                          " bytes per row, expected " + std::to_string(rs) + " for " + std::to_string(cols) + " " +
                          info.name + " columns");
  Impl i = parse_impl(impl);
  py::array_t<float> out({ntok, rows});
  const uint8_t* wp = u8ptr(w);
  const float* xp = static_cast<const float*>(x.data());
  float* yp = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    dsv4::matmul(info.type, wp, xp, yp, rows, cols, ntok, i, threads);
  }
  return out;
}

float vec_dot_py(int qtype, const py::array& w, const py::array& a, int64_t n, const std::string& impl) {
  const auto& info = qinfo(qtype);
  require_u8(w, "vec_dot weight");
  require_u8(a, "vec_dot activation");
  const size_t wb = dsv4::quant_row_size(info.type, n);
  const dsv4::QType at = info.vec_dot_type;
  const size_t ab = at == dsv4::QType::F32 ? static_cast<size_t>(n) * 4 : dsv4::quant_row_size(at, n);
  if (static_cast<size_t>(w.nbytes()) != wb || static_cast<size_t>(a.nbytes()) != ab)
    throw py::value_error("vec_dot: expected " + std::to_string(wb) + " weight bytes and " + std::to_string(ab) +
                          " activation bytes for n = " + std::to_string(n) + ", got " + std::to_string(w.nbytes()) +
                          " and " + std::to_string(a.nbytes()));
  Impl i = parse_impl(impl);
  const uint8_t *wp = u8ptr(w), *ap = u8ptr(a);
  py::gil_scoped_release nogil;
  return dsv4::vec_dot(info.type, wp, ap, n, i);
}

py::array_t<uint8_t> repack_fp4_py(const py::array& w, const py::array& scale, int threads) {
  require_u8(w, "repack_fp4_to_mxfp4 weight");
  require_u8(scale, "repack_fp4_to_mxfp4 scale");
  require_2d(w, "repack_fp4_to_mxfp4 weight");
  require_2d(scale, "repack_fp4_to_mxfp4 scale");
  const int64_t rows = w.shape(0), cols = w.shape(1) * 2;
  if (cols % 32)
    throw py::value_error("repack_fp4_to_mxfp4: logical row length " + std::to_string(cols) +
                          " is not a multiple of 32");
  if (scale.shape(0) != rows || scale.shape(1) != cols / 32)
    throw py::value_error("repack_fp4_to_mxfp4: scale shape (" + std::to_string(scale.shape(0)) + ", " +
                          std::to_string(scale.shape(1)) + ") does not match packed weight (" + std::to_string(rows) +
                          ", " + std::to_string(cols / 2) + "); expected (rows, 2*cols/32)");
  py::array_t<uint8_t> out({rows, cols / 32 * 17});
  const uint8_t *wp = u8ptr(w), *sp = u8ptr(scale);
  uint8_t* op = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    dsv4::repack_fp4_to_mxfp4(wp, sp, op, rows, cols, threads);
  }
  return out;
}

void register_quant(py::module_& m) {
  m.def(
      "qtype_table",
      [] {
        int n = 0;
        const dsv4::QTypeInfo* t = dsv4::qtype_table(&n);
        py::list rows;
        for (int k = 0; k < n; ++k)
          rows.append(py::make_tuple(static_cast<int>(t[k].type), t[k].name, t[k].block_size, t[k].type_size,
                                     static_cast<int>(t[k].vec_dot_type), t[k].needs_imatrix));
        return rows;
      },
      "The C++ QType table: (id, name, block_size, type_size, vec_dot_type_id, needs_imatrix) per type.");
  m.def("quantize_rows", &quantize_rows_py, py::arg("qtype"), py::arg("data"), py::arg("imatrix") = py::none(),
        py::arg("impl") = "auto", py::arg("threads") = 0,
        "float32 [rows, cols] -> uint8 [rows, row_bytes] in ggml type `qtype` (id); row-parallel, GIL released.");
  m.def("dequantize_rows", &dequantize_rows_py, py::arg("qtype"), py::arg("data"), py::arg("impl") = "auto",
        py::arg("threads") = 0, "uint8 [rows, row_bytes] of ggml type `qtype` -> float32 [rows, cols].");
  m.def("matvec", &matvec_py, py::arg("qtype"), py::arg("weight"), py::arg("x"), py::arg("impl") = "auto",
        py::arg("threads") = 0,
        "y[r] = W[r] . x with x quantized once to the type's activation format (Q8_0 / Q8_K), like ggml's vec_dot.");
  m.def("matmul", &matmul_py, py::arg("qtype"), py::arg("weight"), py::arg("x"), py::arg("impl") = "auto",
        py::arg("threads") = 0,
        "Y[t, r] = W[r] . X[t] for X float32 [tokens, cols], each row quantized once; equals matvec row by row.");
  m.def(
      "vec_dot", &vec_dot_py, py::arg("qtype"), py::arg("weight"), py::arg("activation"), py::arg("n"),
      py::arg("impl") = "auto",
      "One dot product of n elements: weight bytes in `qtype`, activation bytes in its vec_dot type (Q8_0/Q8_K/f32).");
  m.def("repack_fp4_to_mxfp4", &repack_fp4_py, py::arg("weight"), py::arg("scale"), py::arg("threads") = 0,
        "DeepSeek FP4 [rows, cols/2] + E8M0 scales [rows, cols/32] -> ggml MXFP4 bytes [rows, cols/32*17], bit-exact.");
}

}  // namespace

void register_runtime(py::module_& m);  // runtime section at the end of this file
void register_cuda(py::module_& m);     // CUDA backend section after it

PYBIND11_MODULE(_C, m) {
  m.doc() = "dsv4-gguf native core: number-format decoders (and later quant kernels and the runtime)";
  m.def("build_info", &build_info, "Compiled features of this build (SIMD, CUDA, compiler, version).");

  m.def(
      "decode_e4m3",
      [](const py::array& a, const std::string& impl) {
        Impl i = parse_impl(impl);
        return elementwise(
            a, "decode_e4m3", [i](const uint8_t* s, float* d, size_t n) { dsv4::decode_e4m3(s, d, n, i); }, 1);
      },
      py::arg("codes"), py::arg("impl") = "auto", "E4M3 (float8_e4m3fn) codes as uint8 -> float32, same shape.");
  m.def(
      "decode_e8m0",
      [](const py::array& a, const std::string& impl) {
        Impl i = parse_impl(impl);
        return elementwise(
            a, "decode_e8m0", [i](const uint8_t* s, float* d, size_t n) { dsv4::decode_e8m0(s, d, n, i); }, 1);
      },
      py::arg("codes"), py::arg("impl") = "auto", "E8M0 scale bytes -> float32 2^(b-127) (255 -> NaN).");
  m.def(
      "decode_e2m1",
      [](const py::array& a, const std::string& impl) {
        Impl i = parse_impl(impl);
        return elementwise(
            a, "decode_e2m1", [i](const uint8_t* s, float* d, size_t n) { dsv4::decode_e2m1(s, d, n, i); }, 2);
      },
      py::arg("packed"), py::arg("impl") = "auto",
      "Packed FP4 e2m1 pairs (low nibble = element 2k) -> float32 with the last axis doubled.");

  m.def(
      "dequant_fp8",
      [](const py::array& w, const py::array& scale, const std::string& impl, int threads) {
        require_u8(w, "dequant_fp8 weight");
        require_u8(scale, "dequant_fp8 scale");
        require_2d(w, "dequant_fp8 weight");
        require_2d(scale, "dequant_fp8 scale");
        const int64_t rows = w.shape(0), cols = w.shape(1);
        if (scale.shape(0) != (rows + 127) / 128 || scale.shape(1) != (cols + 127) / 128)
          throw py::value_error("dequant_fp8: scale shape (" + std::to_string(scale.shape(0)) + ", " +
                                std::to_string(scale.shape(1)) + ") does not match weight (" + std::to_string(rows) +
                                ", " + std::to_string(cols) + "); expected (ceil(rows/128), ceil(cols/128))");
        Impl i = parse_impl(impl);
        py::array_t<float> out({rows, cols});
        const uint8_t *wp = u8ptr(w), *sp = u8ptr(scale);
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          dsv4::dequant_fp8(wp, sp, op, rows, cols, i, threads);
        }
        return out;
      },
      py::arg("weight"), py::arg("scale"), py::arg("impl") = "auto", py::arg("threads") = 0,
      "FP8 E4M3 weight [rows, cols] with E8M0 128x128 block scales -> float32 [rows, cols].");
  m.def(
      "dequant_fp4",
      [](const py::array& w, const py::array& scale, const std::string& impl, int threads) {
        require_u8(w, "dequant_fp4 weight");
        require_u8(scale, "dequant_fp4 scale");
        require_2d(w, "dequant_fp4 weight");
        require_2d(scale, "dequant_fp4 scale");
        const int64_t rows = w.shape(0), cols = w.shape(1) * 2;
        if (cols % 32)
          throw py::value_error("dequant_fp4: logical row length " + std::to_string(cols) + " is not a multiple of 32");
        if (scale.shape(0) != rows || scale.shape(1) != cols / 32)
          throw py::value_error("dequant_fp4: scale shape (" + std::to_string(scale.shape(0)) + ", " +
                                std::to_string(scale.shape(1)) + ") does not match packed weight (" +
                                std::to_string(rows) + ", " + std::to_string(cols / 2) +
                                "); expected (rows, 2*cols/32)");
        Impl i = parse_impl(impl);
        py::array_t<float> out({rows, cols});
        const uint8_t *wp = u8ptr(w), *sp = u8ptr(scale);
        float* op = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          dsv4::dequant_fp4(wp, sp, op, rows, cols, i, threads);
        }
        return out;
      },
      py::arg("weight"), py::arg("scale"), py::arg("impl") = "auto", py::arg("threads") = 0,
      "Packed FP4 weight [rows, cols/2] with one E8M0 scale per 32 inputs -> float32 [rows, cols].");

#ifdef DSV4_HAVE_CUDA
  m.def("cuda_device_name", &dsv4::cuda::device_name, py::arg("device") = 0);
#endif

  register_quant(m);    // quant kernels section above
  register_runtime(m);  // runtime section below
  register_cuda(m);     // CUDA backend section (planning in every build; kernels only with DSV4_HAVE_CUDA)
}

// ================================================================================================
// Runtime (csrc/runtime): DeepSeek-V4 GGUF model + sessions.  GGUF/format errors -> GgufError
// (a ValueError); bad token ids -> IndexError; context overflow -> ValueError; a session used by two
// threads at once -> SessionBusyError, an unusable state file -> SessionStateError (both RuntimeErrors).
// The GIL is released around loading, every forward pass and state I/O; a Runtime may be shared by
// sessions on many threads (session.h says what is thread-safe).
// ================================================================================================
#include <cstring>

#include "runtime/session.h"

namespace {

dsv4::KvDtype parse_kv(const std::string& s) {
  if (s == "f32") return dsv4::KvDtype::F32;
  if (s == "bf16") return dsv4::KvDtype::BF16;
  if (s == "fp8") return dsv4::KvDtype::FP8;
  throw py::value_error("kv_dtype must be 'f32', 'bf16' or 'fp8', got '" + s + "'");
}

py::dict runtime_config(const dsv4::Runtime& rt) {
  const dsv4::ModelConfig& c = rt.model().cfg();
  py::dict d;
  d["arch"] = rt.model().arch;
  d["file_bytes"] = rt.model().file().total_bytes();
  d["vocab_size"] = c.vocab;
  d["dim"] = c.dim;
  d["n_layers"] = c.n_layers;
  d["n_mtp_layers"] = c.n_mtp;
  d["n_heads"] = c.n_heads;
  d["head_dim"] = c.head_dim;
  d["rope_head_dim"] = c.rope_dim;
  d["q_lora_rank"] = c.q_lora_rank;
  d["o_groups"] = c.o_groups;
  d["o_lora_rank"] = c.o_lora_rank;
  d["window_size"] = c.window;
  d["n_routed_experts"] = c.n_experts;
  d["n_activated_experts"] = c.n_used;
  d["moe_inter_dim"] = c.moe_inter;
  d["n_hash_layers"] = c.n_hash;
  d["index_n_heads"] = c.idx_heads;
  d["index_head_dim"] = c.idx_dim;
  d["index_topk"] = c.idx_topk;
  d["compress_ratios"] = c.ratios;
  d["context_length"] = c.ctx_train;
  d["threads"] = rt.options().threads;
  d["exact"] = rt.options().exact;
  d["qat"] = rt.options().qat;
  // the MTP draft head option (exact mode always drafts with the file's head)
  d["draft_head"] = rt.options().draft_head < 0 || rt.options().exact
                        ? std::string("model")
                        : std::string(dsv4::ggml_type_name(rt.options().draft_head));
  d["has_mtp"] = rt.mtp() != nullptr;
  py::dict types;
  for (const auto& [name, t] : rt.model().file().tensors()) types[py::str(name)] = dsv4::ggml_type_name(t.type);
  d["tensor_types"] = types;
  return d;
}

}  // namespace

void register_runtime(py::module_& m) {
  py::register_exception<dsv4::GgufError>(m, "GgufError", PyExc_ValueError);
  // Registered after GgufError; both derive std::runtime_error, pybind11 tries the latest registration first.
  py::register_exception<dsv4::SessionBusy>(m, "SessionBusyError", PyExc_RuntimeError);
  py::register_exception<dsv4::StateError>(m, "SessionStateError", PyExc_RuntimeError);
  py::class_<dsv4::Runtime>(m, "Runtime")
      .def(py::init([](const std::string& path, int threads, bool exact, bool qat, const std::string& mtp,
                       const std::string& draft_head) {
             dsv4::RuntimeOptions o;
             o.threads = threads;
             o.exact = exact;
             o.qat = qat;
             if (draft_head == "q8_0")
               o.draft_head = static_cast<int>(dsv4::QType::Q8_0);
             else if (draft_head == "q4_0")
               o.draft_head = static_cast<int>(dsv4::QType::Q4_0);
             else if (draft_head == "model")
               o.draft_head = -1;
             else
               throw py::value_error("draft_head must be 'q8_0', 'q4_0' or 'model', got '" + draft_head + "'");
             py::gil_scoped_release nogil;
             return std::make_unique<dsv4::Runtime>(path, o, mtp);
           }),
           py::arg("path"), py::arg("threads") = 0, py::arg("exact") = false, py::arg("qat") = true,
           py::arg("mtp") = "", py::arg("draft_head") = "q8_0",
           "Memory-map and validate a deepseek4 GGUF (first shard of a split set).")
      .def(
          "prefetch",
          [](const dsv4::Runtime& r) {
            py::gil_scoped_release nogil;
            return r.prefetch();
          },
          "Map every page of the GGUF(s) into the process now (as llama.cpp's MAP_POPULATE); bytes.")
      .def("config", &runtime_config, "Hyper-parameters, options and tensor types.")
      .def(
          "fingerprint",
          [](const dsv4::Runtime& rt) {
            py::gil_scoped_release nogil;
            return rt.fingerprint();
          },
          "64-bit fingerprint of the loaded weights (weight overrides included) that session state files are tied "
          "to.")
      .def(
          "override_weight",
          [](dsv4::Runtime& rt, const std::string& name, int qtype, const py::buffer& data) {
            const py::buffer_info b = data.request();
            if (b.itemsize != 1)
              throw py::type_error("override_weight('" + name +
                                   "'): data must be bytes or a uint8 array, got items of " +
                                   std::to_string(b.itemsize) + " bytes");
            py::ssize_t step = 1;
            for (py::ssize_t d = b.ndim - 1; d >= 0; --d) {
              if (b.shape[d] > 1 && b.strides[d] != step)
                throw py::type_error("override_weight('" + name + "'): data must be C-contiguous");
              step *= b.shape[d];
            }
            py::gil_scoped_release nogil;  // the copy of the bytes
            rt.override_weight(name, static_cast<dsv4::QType>(qtype), static_cast<const uint8_t*>(b.ptr),
                               static_cast<size_t>(b.size));
          },
          py::arg("name"), py::arg("qtype"), py::arg("data"),
          "Replace every weight view named `name` by `data` (bytes of ggml type id `qtype`, rows x row_bytes), "
          "copied; ValueError naming the tensor and the reason when refused (the model unchanged).  CPU only; no "
          "session call may run meanwhile (SessionBusyError).")
      .def("clear_overrides", &dsv4::Runtime::clear_overrides, "Put every overridden weight back (the file's).")
      .def("overridden", &dsv4::Runtime::overridden, "Names of the overridden weights, sorted.");
  py::class_<dsv4::Session>(m, "Session")
      .def(py::init([](const dsv4::Runtime& rt, int64_t ctx, const std::string& kv, bool mtp) {
             return std::make_unique<dsv4::Session>(rt, ctx, parse_kv(kv), mtp);
           }),
           py::arg("runtime"), py::arg("ctx"), py::arg("kv_dtype") = "f32", py::arg("mtp") = false,
           py::keep_alive<1, 2>())
      .def(
          "forward",
          [](dsv4::Session& s, const py::array& tokens, bool all_logits) {
            if (!tokens.dtype().is(py::dtype::of<int32_t>()))
              throw py::type_error("tokens: expected an int32 array, got dtype " +
                                   std::string(py::str(tokens.dtype())));
            if (tokens.ndim() != 1 || !(tokens.flags() & py::array::c_style))
              throw py::value_error("tokens: expected a C-contiguous 1-D array");
            const int64_t T = tokens.shape(0);
            const int32_t* tp = static_cast<const int32_t*>(tokens.data());
            dsv4::Logits out;
            {
              py::gil_scoped_release nogil;
              try {
                out = s.forward(tp, T, all_logits);
              } catch (const std::length_error& e) {
                throw std::invalid_argument(e.what());
              }
            }
            return own_rows(std::move(out), all_logits ? T : 1);
          },
          py::arg("tokens"), py::arg("all_logits") = false,
          "Consume int32 tokens; f32 logits [1, V] of the last token (all_logits: [T, V]).")
      .def(
          "mtp_forward",
          [](dsv4::Session& s, const py::array& tokens, bool all_logits) {
            if (!tokens.dtype().is(py::dtype::of<int32_t>()) || tokens.ndim() != 1 ||
                !(tokens.flags() & py::array::c_style))
              throw py::type_error("tokens: expected a C-contiguous 1-D int32 array");
            const int64_t T = tokens.shape(0);
            const int32_t* tp = static_cast<const int32_t*>(tokens.data());
            dsv4::Logits out;
            {
              py::gil_scoped_release nogil;
              out = s.mtp_forward(tp, T, all_logits);
            }
            const int64_t n = all_logits ? T : 1, V = static_cast<int64_t>(out.size()) / n;
            py::array_t<float> arr({n, V});
            std::memcpy(arr.mutable_data(), out.data(), out.size() * 4);
            return arr;
          },
          py::arg("tokens"), py::arg("all_logits") = false,
          "MTP draft logits: the oldest len(tokens) main streams, stream i with tokens[i] (the next token).")
      .def(
          "mtp_self",
          [](dsv4::Session& s, int32_t token) {
            dsv4::Logits out;
            {
              py::gil_scoped_release nogil;
              out = s.mtp_self(token);
            }
            py::array_t<float> arr(static_cast<int64_t>(out.size()));
            std::memcpy(arr.mutable_data(), out.data(), out.size() * 4);
            return arr;
          },
          py::arg("token"),
          "MTP block on its own last output with `token` (the previous draft): next draft logits [V]; provisional "
          "until mtp_discard or the next mtp_forward.")
      .def("mtp_discard", &dsv4::Session::mtp_discard, "Undo the provisional mtp_self positions exactly.")
      .def_property_readonly("mtp_pos", &dsv4::Session::mtp_pos)
      .def_property_readonly("mtp_pending", &dsv4::Session::mtp_pending)
      .def_property_readonly("pos", &dsv4::Session::pos)
      .def_property_readonly("ctx", &dsv4::Session::ctx)
      .def("reset", &dsv4::Session::reset)
      .def("checkpoint", &dsv4::Session::checkpoint,
           "Start an undo journal at pos (speculative decoding); rollback(n) returns to n tokens exactly.")
      .def("rollback", &dsv4::Session::rollback, py::arg("n"),
           "Return to the first n tokens (checkpoint_pos <= n <= pos) without replay: KV rows, compressor "
           "states, entry counts, pending MTP streams.")
      .def_property_readonly("checkpoint_pos", &dsv4::Session::checkpoint_pos)
      .def(
          "save",
          [](const dsv4::Session& s, const std::string& p) {
            py::gil_scoped_release nogil;
            s.save(p);
          },
          py::arg("path"))
      .def(
          "load",
          [](dsv4::Session& s, const std::string& p) {
            py::gil_scoped_release nogil;
            s.load(p);
          },
          py::arg("path"))
      .def("kv_bytes_per_token", &dsv4::Session::kv_bytes_per_token)
      .def("kv_bytes_total", &dsv4::Session::kv_bytes_total)
      .def("set_taps", &dsv4::Session::set_taps, py::arg("patterns"))
      .def("take_taps", [](dsv4::Session& s) {
        py::dict d;
        for (auto& [name, v] : s.take_taps()) {
          const int64_t w = std::max<int64_t>(1, v.second);
          py::array_t<float> a({static_cast<int64_t>(v.first.size()) / w, w});
          std::memcpy(a.mutable_data(), v.first.data(), v.first.size() * 4);
          d[py::str(name)] = a;
        }
        return d;
      });
  m.def(
      "forward_batch",
      [](const std::vector<dsv4::Session*>& sessions, const py::array& tokens) {
        if (!tokens.dtype().is(py::dtype::of<int32_t>()) || tokens.ndim() != 1 ||
            !(tokens.flags() & py::array::c_style))
          throw py::type_error("tokens: expected a C-contiguous 1-D int32 array");
        if (tokens.shape(0) != static_cast<py::ssize_t>(sessions.size()))
          throw py::value_error("forward_batch: " + std::to_string(sessions.size()) + " sessions but " +
                                std::to_string(tokens.shape(0)) + " tokens; give one token per session");
        const int32_t* tp = static_cast<const int32_t*>(tokens.data());
        dsv4::Logits out;
        {
          py::gil_scoped_release nogil;
          try {
            out = dsv4::Session::forward_batch(sessions, tp);
          } catch (const std::length_error& e) {
            throw std::invalid_argument(e.what());
          }
        }
        return own_rows(std::move(out), static_cast<int64_t>(sessions.size()));
      },
      py::arg("sessions"), py::arg("tokens"),
      "Batched decode: sessions[i] consumes tokens[i] (int32 [n]), all in one forward pass; f32 logits [n, V], "
      "row i bit-identical to sessions[i].forward([tokens[i]]).");
}

// ================================================================================================
// CUDA backend (csrc/runtime/ops_cuda): host-side planning in every build; the kernels on
// host arrays (tests, benchmarks) and the device-resident CudaModel / CudaSession with DSV4_HAVE_CUDA.
// ================================================================================================
#include "runtime/ops_cuda/plan.h"
#ifdef DSV4_HAVE_CUDA
#include "runtime/ops_cuda/cuda_session.h"
#endif

namespace {

py::dict gemv_config_py(int qtype, int64_t rows, int64_t cols, int64_t n_vec, int64_t n_slots) {
  const dsv4::CudaGemvConfig c = dsv4::cuda_gemv_config(static_cast<dsv4::QType>(qtype), rows, cols, n_vec, n_slots);
  py::dict d;
  d["threads"] = c.threads;
  d["warps"] = c.warps;
  d["block_elems"] = c.block_elems;
  d["block_bytes"] = c.block_bytes;
  d["chunk_blocks"] = c.chunk_blocks;
  d["lane_elems"] = c.lane_elems;
  d["grid"] = py::make_tuple(c.grid_x, c.grid_y);
  d["smem_bytes"] = c.smem_bytes;
  d["row_bytes"] = c.row_bytes;
  d["load_bytes"] = c.load_bytes;
  return d;
}

py::dict upload_plan_py(const dsv4::Runtime& rt) {
  const dsv4::CudaUploadPlan p = dsv4::plan_cuda_upload(rt.model());
  py::list entries;
  const char* kinds[] = {"weight", "f32", "i32"};
  for (const auto& e : p.entries)
    entries.append(py::dict(py::arg("name") = e.name, py::arg("kind") = kinds[e.kind],
                            py::arg("type") = dsv4::ggml_type_name(static_cast<int32_t>(e.type)),
                            py::arg("rows") = e.rows, py::arg("cols") = e.cols, py::arg("bytes") = e.bytes,
                            py::arg("offset") = e.offset));
  py::dict d;
  d["total_bytes"] = p.total_bytes;
  d["alignment"] = dsv4::CudaUploadPlan::kAlign;
  d["entries"] = entries;
  return d;
}

#ifdef DSV4_HAVE_CUDA
const float* f32p(const py::array& a, const char* what) {
  require_f32_c(a, what);
  return static_cast<const float*>(a.data());
}
const float* f32opt(const py::object& o, const char* what) {
  return o.is_none() ? nullptr : f32p(o.cast<py::array>(), what);
}
const int32_t* i32p(const py::array& a, const char* what) {
  if (!a.dtype().is(py::dtype::of<int32_t>()) || !(a.flags() & py::array::c_style))
    throw py::type_error(std::string(what) + ": expected a C-contiguous int32 array, got dtype " +
                         std::string(py::str(a.dtype())));
  return static_cast<const int32_t*>(a.data());
}
py::array_t<float> f32copy(const py::array& a, const char* what) {
  f32p(a, what);
  py::array_t<float> out(shape_of(a));
  std::memcpy(out.mutable_data(), a.data(), static_cast<size_t>(a.size()) * 4);
  return out;
}
int64_t dim(const py::array& a, int i, const char* what) {
  if (a.ndim() != 2)
    throw py::value_error(std::string(what) + ": expected a 2-D array, got " + std::to_string(a.ndim()) + "-D");
  return a.shape(i);
}
#endif

}  // namespace

void register_cuda(py::module_& m) {
  // The CUDA kernels one by one, for the tests and benchmarks (host-side decoders and launch geometry, single
  // ops on the device, timers): `_C.cuda_hooks`, apart from the model API (CudaModel, CudaSession) below.
  py::module_ h =
      m.def_submodule("cuda_hooks", "CUDA kernels exposed one by one for tests and benchmarks; not an API.");
  h.def("gemv_config", &gemv_config_py, py::arg("qtype"), py::arg("rows"), py::arg("cols"), py::arg("n_vec") = 1,
        py::arg("n_slots") = 1,
        "Launch geometry of the CUDA GEMV (host-side; ValueError for unsupported shapes/types).");
  h.def(
      "upload_plan", &upload_plan_py, py::arg("runtime"),
      "Device arena layout of a loaded model's weights (host-side; ValueError names a tensor without a CUDA kernel).");
#ifdef DSV4_HAVE_CUDA
  namespace cu = dsv4::cuda;
  h.def(
      "decode_e4m3",
      [](const py::array& a) {
        return elementwise(
            a, "cuda_hooks.decode_e4m3", [](const uint8_t* s, float* d, size_t n) { cu::decode_e4m3(s, d, n); }, 1);
      },
      py::arg("codes"), "E4M3 decode on CUDA device 0 (RuntimeError when no device is present).");
  h.def(
      "dequant_rows_host",
      [](int qtype, const py::array& w, int64_t cols) {
        require_u8(w, "w");
        const int64_t rows = dim(w, 0, "w");
        const auto c = dsv4::cuda_gemv_config(static_cast<dsv4::QType>(qtype), rows, cols, 1, 1);
        if (static_cast<size_t>(w.shape(1)) != c.row_bytes)
          throw py::value_error("w: rows of " + std::to_string(c.row_bytes) + " bytes expected, got " +
                                std::to_string(w.shape(1)));
        py::array_t<float> out({rows, cols});
        cu::dequant_rows_host(qtype, u8ptr(w), rows, cols, out.mutable_data());
        return out;
      },
      py::arg("qtype"), py::arg("w"), py::arg("cols"), "The CUDA decoders run on the host (no device needed).");
  h.def(
      "gemv",
      [](int qtype, const py::array& w, const py::array& x, bool on_host) {
        require_u8(w, "w");
        const int64_t rows = dim(w, 0, "w"), n = dim(x, 0, "x"), cols = dim(x, 1, "x");
        const float* xp = f32p(x, "x");
        py::array_t<float> y({n, rows});
        float* yp = y.mutable_data();
        const uint8_t* wp = u8ptr(w);
        {
          py::gil_scoped_release nogil;
          cu::gemv(qtype, wp, rows, cols, xp, static_cast<int>(n), yp, on_host);
        }
        return y;
      },
      py::arg("qtype"), py::arg("w"), py::arg("x"), py::arg("on_host") = false,
      "y[v] = W x[v] on device 0 (x [n_vec <= 8, cols]); on_host: the kernel's lane code run on the CPU.");
  h.def(
      "moe_gemv",
      [](int qtype, const py::array& w, int64_t rows, const py::array& ids, const py::array& x) {
        require_u8(w, "w");
        const int64_t n = dim(x, 0, "x"), cols = dim(x, 1, "x");
        if (ids.size() != n) throw py::value_error("ids: one expert id per row of x expected");
        const int64_t E = dim(w, 0, "w") / rows;
        py::array_t<float> y({n, rows});
        cu::moe_gemv(qtype, u8ptr(w), E, rows, cols, i32p(ids, "ids"), static_cast<int>(n), f32p(x, "x"),
                     y.mutable_data());
        return y;
      },
      py::arg("qtype"), py::arg("w"), py::arg("rows"), py::arg("ids"), py::arg("x"));
  // rms_norm, rope_tail, fake_quant, route: the kernel on device 0, its per-thread code on the host (on_host),
  // and the CPU runtime's op (cpu_*), each on the same arrays, so the tests compare the three.
  const char* on_host_doc = "on_host: the kernel's per-thread code run on the CPU, reductions in the device's order.";
  const char* cpu_doc = "The CPU runtime's op (ops_cpu) on the same arrays: the host runner's reference.";
  auto rms_norm_py = [](bool cpu) {
    return [cpu](const py::array& x, const py::object& w, float eps, bool on_host) {
      const int64_t rows = dim(x, 0, "x"), n = dim(x, 1, "x");
      const float* wp = f32opt(w, "w");
      if (wp && w.cast<py::array>().size() != n)
        throw py::value_error("w: " + std::to_string(n) + " weights expected (one per column of x)");
      py::array_t<float> y({rows, n});
      if (cpu)
        cu::cpu_rms_norm(f32p(x, "x"), wp, y.mutable_data(), rows, n, eps);
      else
        cu::rms_norm(f32p(x, "x"), wp, y.mutable_data(), rows, n, eps, on_host);
      return y;
    };
  };
  h.def("rms_norm", rms_norm_py(false), py::arg("x"), py::arg("w"), py::arg("eps"), py::arg("on_host") = false,
        on_host_doc);
  h.def(
      "cpu_rms_norm",
      [f = rms_norm_py(true)](const py::array& x, const py::object& w, float eps) { return f(x, w, eps, false); },
      py::arg("x"), py::arg("w"), py::arg("eps"), cpu_doc);
  auto rope_py = [](bool cpu) {
    return [cpu](const py::array& x, int64_t rd, int64_t pos0, int64_t rows_per_pos, const py::array& freqs,
                 bool inverse, bool on_host) {
      const int64_t rows = dim(x, 0, "x"), n = dim(x, 1, "x");
      if (rd < 0 || rd > n || rd % 2 || rows_per_pos < 1)
        throw py::value_error("rope_tail: need an even rd <= " + std::to_string(n) + " and rows_per_pos >= 1");
      if (freqs.size() != rd / 2) throw py::value_error("freqs: rd / 2 = " + std::to_string(rd / 2) + " expected");
      auto y = f32copy(x, "x");
      if (cpu)
        cu::cpu_rope_tail(y.mutable_data(), rows, n, rd, pos0, rows_per_pos, f32p(freqs, "freqs"), inverse);
      else
        cu::rope_tail(y.mutable_data(), rows, n, rd, pos0, rows_per_pos, f32p(freqs, "freqs"), inverse, on_host);
      return y;
    };
  };
  h.def("rope_tail", rope_py(false), py::arg("x"), py::arg("rd"), py::arg("pos0"), py::arg("rows_per_pos"),
        py::arg("freqs"), py::arg("inverse"), py::arg("on_host") = false, on_host_doc);
  h.def(
      "cpu_rope_tail",
      [f = rope_py(true)](const py::array& x, int64_t rd, int64_t pos0, int64_t rows_per_pos, const py::array& freqs,
                          bool inverse) { return f(x, rd, pos0, rows_per_pos, freqs, inverse, false); },
      py::arg("x"), py::arg("rd"), py::arg("pos0"), py::arg("rows_per_pos"), py::arg("freqs"), py::arg("inverse"),
      cpu_doc);
  auto fake_quant_py = [](bool cpu) {
    return [cpu](const py::array& x, int block, bool fp4, bool on_host) {
      auto y = f32copy(x, "x");
      if (cpu)
        cu::cpu_fake_quant(y.mutable_data(), dim(x, 0, "x"), dim(x, 1, "x"), block, fp4);
      else
        cu::fake_quant(y.mutable_data(), dim(x, 0, "x"), dim(x, 1, "x"), block, fp4, on_host);
      return y;
    };
  };
  h.def("fake_quant", fake_quant_py(false), py::arg("x"), py::arg("block"), py::arg("fp4"), py::arg("on_host") = false,
        on_host_doc);
  h.def(
      "cpu_fake_quant",
      [f = fake_quant_py(true)](const py::array& x, int block, bool fp4) { return f(x, block, fp4, false); },
      py::arg("x"), py::arg("block"), py::arg("fp4"), cpu_doc);
  h.def(
      "hadamard",
      [](const py::array& x) {
        auto y = f32copy(x, "x");
        cu::hadamard(y.mutable_data(), dim(x, 0, "x"), dim(x, 1, "x"));
        return y;
      },
      py::arg("x"));
  h.def(
      "hc_coeffs",
      [](const py::array& mixes, const py::array& scale, const py::array& base, int hc, int iters, float eps,
         bool on_host) {
        const int64_t T = dim(mixes, 0, "mixes");
        py::array_t<float> pre({T, static_cast<int64_t>(hc)}), post({T, static_cast<int64_t>(hc)}),
            comb({T, static_cast<int64_t>(hc * hc)});
        cu::hc_coeffs(f32p(mixes, "mixes"), T, f32p(scale, "scale"), f32p(base, "base"), hc, iters, eps,
                      pre.mutable_data(), post.mutable_data(), comb.mutable_data(), on_host);
        return py::make_tuple(pre, post, comb);
      },
      py::arg("mixes"), py::arg("scale"), py::arg("base"), py::arg("hc"), py::arg("iters"), py::arg("eps"),
      py::arg("on_host") = false, "on_host: the kernel's per-thread code run on the CPU (no device needed).");
  // route / cpu_route -> (idx [T, k] int32, w [T, k]); cpu_route also returns the CPU's margin [T]
  auto route_py = [](bool cpu) {
    return [cpu](const py::array& logits, int K, const py::object& bias, const py::object& tid2eid,
                 const py::object& tokens, float scale, bool norm, bool on_host) -> py::tuple {
      const int64_t T = dim(logits, 0, "logits"), E = dim(logits, 1, "logits");
      const float* bp = f32opt(bias, "bias");
      if (bp && bias.cast<py::array>().size() != E)
        throw py::value_error("bias: " + std::to_string(E) + " values expected (one per expert)");
      const int32_t* tp = nullptr;
      const int32_t* hp = nullptr;
      int64_t V = 0;
      if (!tid2eid.is_none()) {
        auto h = tid2eid.cast<py::array>();
        auto tk = tokens.cast<py::array>();
        hp = i32p(h, "tid2eid");
        tp = i32p(tk, "tokens");
        V = dim(h, 0, "tid2eid");
        if (dim(h, 1, "tid2eid") != K || tk.size() != T)
          throw py::value_error("tid2eid [V, k] and tokens [T] expected for hash routing");
      }
      py::array_t<int32_t> idx({T, static_cast<int64_t>(K)});
      py::array_t<float> w({T, static_cast<int64_t>(K)});
      if (!cpu) {
        cu::route(f32p(logits, "logits"), T, E, K, bp, hp, V, tp, scale, norm, idx.mutable_data(), w.mutable_data(),
                  on_host);
        return py::make_tuple(idx, w);
      }
      py::array_t<float> margin(T);
      cu::cpu_route(f32p(logits, "logits"), T, E, K, bp, hp, V, tp, scale, norm, idx.mutable_data(), w.mutable_data(),
                    margin.mutable_data());
      return py::make_tuple(idx, w, margin);
    };
  };
  h.def("route", route_py(false), py::arg("logits"), py::arg("k"), py::arg("bias"), py::arg("tid2eid"),
        py::arg("tokens"), py::arg("scale"), py::arg("norm"), py::arg("on_host") = false, on_host_doc);
  h.def(
      "cpu_route",
      [f = route_py(true)](const py::array& logits, int K, const py::object& bias, const py::object& tid2eid,
                           const py::object& tokens, float scale,
                           bool norm) { return f(logits, K, bias, tid2eid, tokens, scale, norm, false); },
      py::arg("logits"), py::arg("k"), py::arg("bias"), py::arg("tid2eid"), py::arg("tokens"), py::arg("scale"),
      py::arg("norm"), cpu_doc);
  h.def(
      "swiglu",
      [](const py::array& g, const py::array& u, const py::object& wt, float limit, bool on_host) {
        const int64_t T = dim(g, 0, "g"), I = dim(g, 1, "g");
        if (dim(u, 0, "u") != T || dim(u, 1, "u") != I) throw py::value_error("u: the shape of g expected");
        const float* wp = f32opt(wt, "wt");
        if (wp && wt.cast<py::array>().size() != T) throw py::value_error("wt: one weight per row of g expected");
        py::array_t<float> h({T, I});
        cu::swiglu(f32p(g, "g"), f32p(u, "u"), wp, T, I, limit, h.mutable_data(), on_host);
        return h;
      },
      py::arg("g"), py::arg("u"), py::arg("wt"), py::arg("limit"), py::arg("on_host") = false, on_host_doc);
  h.def(
      "sparse_attention",
      [](const py::array& q, const py::array& window, int64_t p, const py::array& comp, const py::array& ids,
         const py::array& sinks, float scale) {
        const int64_t H = dim(q, 0, "q"), hd = dim(q, 1, "q");
        py::array_t<float> out({H, hd});
        cu::sparse_attention(f32p(q, "q"), H, hd, f32p(window, "window"), dim(window, 0, "window"), p,
                             f32p(comp, "comp"), dim(comp, 0, "comp"), i32p(ids, "ids"), ids.size(),
                             f32p(sinks, "sinks"), scale, out.mutable_data());
        return out;
      },
      py::arg("q"), py::arg("window"), py::arg("p"), py::arg("comp"), py::arg("ids"), py::arg("sinks"),
      py::arg("scale"));
  h.def(
      "compressor_run",
      [](int m_, int d, const py::array& a, const py::array& g, int64_t pos0, bool on_host) {
        const int64_t T = dim(a, 0, "a");
        if (dim(a, 1, "a") != (m_ == 4 ? 2 : 1) * d || dim(g, 1, "g") != dim(a, 1, "a") || dim(g, 0, "g") != T)
          throw py::value_error("a, g: [T, coff * d] expected (coff = 2 for m = 4)");
        std::vector<float> out(static_cast<size_t>((T / m_ + 1) * d));
        const int64_t n = cu::compressor_run(m_, d, f32p(a, "a"), f32p(g, "g"), T, pos0, out.data(), on_host);
        py::array_t<float> r({n, static_cast<int64_t>(d)});
        std::memcpy(r.mutable_data(), out.data(), static_cast<size_t>(n * d) * 4);
        return r;
      },
      py::arg("m"), py::arg("d"), py::arg("a"), py::arg("g"), py::arg("pos0"), py::arg("on_host") = false);
  h.def(
      "topk",
      [](const py::array& score, int64_t k, bool on_host) {
        py::array_t<int32_t> ids(k);
        cu::topk(f32p(score, "score"), score.size(), k, ids.mutable_data(), on_host);
        return ids;
      },
      py::arg("score"), py::arg("k"), py::arg("on_host") = false,
      "Indexer top-k ids (ascending, -1 padded); on_host runs the bitonic network's code on the CPU.");
  h.def(
      "indexer_topk",
      [](const py::array& q, const py::array& w, const py::array& keys, int64_t k) {
        const int64_t nh = dim(q, 0, "q"), dI = dim(q, 1, "q"), n = dim(keys, 0, "keys");
        py::array_t<float> scores(n);
        py::array_t<int32_t> ids(k);
        cu::indexer_topk(f32p(q, "q"), f32p(w, "w"), nh, dI, f32p(keys, "keys"), n, k, scores.mutable_data(),
                         ids.mutable_data());
        return py::make_tuple(scores, ids);
      },
      py::arg("q"), py::arg("w"), py::arg("keys"), py::arg("k"));

  h.def(
      "time_moe_gemv",
      [](int qtype, const py::array& w, int64_t rows, int64_t cols, const py::array& ids) {
        require_u8(w, "w");
        const int64_t iters = dim(ids, 0, "ids"), n_slots = dim(ids, 1, "ids");
        const int64_t E = dim(w, 0, "w") / rows;
        const int32_t* ip = i32p(ids, "ids");
        const uint8_t* wp = u8ptr(w);
        py::gil_scoped_release nogil;
        return cu::time_moe_gemv(qtype, wp, E, rows, cols, ip, static_cast<int>(n_slots), static_cast<int>(iters));
      },
      py::arg("qtype"), py::arg("w"), py::arg("rows"), py::arg("cols"), py::arg("ids"),
      "Mean seconds per routed-expert GEMV launch (ids [iters, n_slots]); weights resident on device 0.");
  h.def(
      "time_gemv",
      [](int qtype, const py::array& w, int64_t cols, int n_vec, int iters) {
        require_u8(w, "w");
        const int64_t rows = dim(w, 0, "w");
        const uint8_t* wp = u8ptr(w);
        py::gil_scoped_release nogil;
        return cu::time_gemv(qtype, wp, rows, cols, n_vec, iters);
      },
      py::arg("qtype"), py::arg("w"), py::arg("cols"), py::arg("n_vec") = 1, py::arg("iters") = 20);
  h.def(
      "time_copy",
      [](size_t bytes, int iters) {
        py::gil_scoped_release nogil;
        return cu::time_copy(bytes, iters);
      },
      py::arg("bytes"), py::arg("iters") = 10, "Mean seconds per device-to-device copy of `bytes`.");

  py::class_<dsv4::CudaModel>(m, "CudaModel")
      .def(py::init([](const dsv4::Runtime& rt, int device) {
             if (!rt.overridden().empty()) rt.note_device_upload();  // throws: weights are overridden
             py::gil_scoped_release nogil;
             auto cm = std::make_unique<dsv4::CudaModel>(rt, device);
             rt.note_device_upload();  // weight overrides are refused from now on
             return cm;
           }),
           py::arg("runtime"), py::arg("device") = 0, py::keep_alive<1, 2>(),
           "Upload a loaded Runtime's weights to a CUDA device.")
      .def_property_readonly("device_bytes", &dsv4::CudaModel::device_bytes);
  py::class_<dsv4::CudaSession>(m, "CudaSession")
      .def(
          py::init([](const dsv4::CudaModel& cm, int64_t ctx) { return std::make_unique<dsv4::CudaSession>(cm, ctx); }),
          py::arg("model"), py::arg("ctx"), py::keep_alive<1, 2>())
      .def(
          "forward",
          [](dsv4::CudaSession& s, const py::array& tokens, bool all_logits) {
            if (tokens.ndim() != 1) throw py::value_error("tokens: expected a 1-D array");
            const int32_t* tp = i32p(tokens, "tokens");
            const int64_t T = tokens.shape(0);
            std::vector<float> out;
            {
              py::gil_scoped_release nogil;
              try {
                out = s.forward(tp, T, all_logits);
              } catch (const std::length_error& e) {
                throw std::invalid_argument(e.what());
              }
            }
            const int64_t n = all_logits ? T : 1, V = static_cast<int64_t>(out.size()) / n;
            py::array_t<float> arr({n, V});
            std::memcpy(arr.mutable_data(), out.data(), out.size() * 4);
            return arr;
          },
          py::arg("tokens"), py::arg("all_logits") = false)
      .def_property_readonly("pos", &dsv4::CudaSession::pos)
      .def_property_readonly("ctx", &dsv4::CudaSession::ctx)
      .def_property_readonly("device_bytes", &dsv4::CudaSession::device_bytes)
      .def("reset", &dsv4::CudaSession::reset);
#endif
}
