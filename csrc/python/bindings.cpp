// The only file that includes pybind11: array-in/array-out wrappers over libdsv4 with strict dtype and
// contiguity checks (never a silent copy-cast) and the GIL released around every kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <thread>

#include "core/cpu_features.h"
#include "core/fp_decode.h"
#ifdef DSV4_HAVE_CUDA
#include "cuda/backend.h"
#endif

namespace py = pybind11;
using dsv4::Impl;

namespace {

Impl parse_impl(const std::string& s) {
  if (s == "auto") return Impl::Auto;
  if (s == "ref") return Impl::Ref;
  if (s == "simd" || s == "avx2") return Impl::Simd;
  throw py::value_error("impl must be 'auto', 'ref' or 'simd', got '" + s + "'");
}

void require_u8(const py::array& a, const char* what) {
  if (!a.dtype().is(py::dtype::of<uint8_t>()))
    throw py::type_error(std::string(what) + ": expected a uint8 array (view float8/int8 data with .view(np.uint8)), got dtype " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(what) + ": array must be C-contiguous (use np.ascontiguousarray)");
}

void require_2d(const py::array& a, const char* what) {
  if (a.ndim() != 2) throw py::value_error(std::string(what) + ": expected a 2-D array, got " + std::to_string(a.ndim()) + "-D");
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

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
#if defined(DSV4_X86)
  d["simd_compiled"] = py::make_tuple("avx2");
#else
  d["simd_compiled"] = py::tuple();
#endif
  d["cpu_avx2"] = dsv4::cpu_has_avx2();
  d["force_ref"] = dsv4::force_ref_from_env();
  d["kernel_impl"] = dsv4::impl_name(dsv4::resolve_impl(Impl::Auto));
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

PYBIND11_MODULE(_C, m) {
  m.doc() = "dsv4-gguf native core: number-format decoders (and later quant kernels and the runtime)";
  m.def("build_info", &build_info, "Compiled features of this build (SIMD, CUDA, compiler, version).");

  m.def(
      "decode_e4m3",
      [](const py::array& a, const std::string& impl) {
        Impl i = parse_impl(impl);
        return elementwise(a, "decode_e4m3", [i](const uint8_t* s, float* d, size_t n) { dsv4::decode_e4m3(s, d, n, i); }, 1);
      },
      py::arg("codes"), py::arg("impl") = "auto", "E4M3 (float8_e4m3fn) codes as uint8 -> float32, same shape.");
  m.def(
      "decode_e8m0",
      [](const py::array& a, const std::string& impl) {
        Impl i = parse_impl(impl);
        return elementwise(a, "decode_e8m0", [i](const uint8_t* s, float* d, size_t n) { dsv4::decode_e8m0(s, d, n, i); }, 1);
      },
      py::arg("codes"), py::arg("impl") = "auto", "E8M0 scale bytes -> float32 2^(b-127) (255 -> NaN).");
  m.def(
      "decode_e2m1",
      [](const py::array& a, const std::string& impl) {
        Impl i = parse_impl(impl);
        return elementwise(a, "decode_e2m1", [i](const uint8_t* s, float* d, size_t n) { dsv4::decode_e2m1(s, d, n, i); }, 2);
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
          throw py::value_error("dequant_fp8: scale shape (" + std::to_string(scale.shape(0)) + ", " + std::to_string(scale.shape(1)) +
                                ") does not match weight (" + std::to_string(rows) + ", " + std::to_string(cols) +
                                "); expected (ceil(rows/128), ceil(cols/128))");
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
        if (cols % 32) throw py::value_error("dequant_fp4: logical row length " + std::to_string(cols) + " is not a multiple of 32");
        if (scale.shape(0) != rows || scale.shape(1) != cols / 32)
          throw py::value_error("dequant_fp4: scale shape (" + std::to_string(scale.shape(0)) + ", " + std::to_string(scale.shape(1)) +
                                ") does not match packed weight (" + std::to_string(rows) + ", " + std::to_string(cols / 2) +
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
  m.def(
      "cuda_decode_e4m3",
      [](const py::array& a) {
        return elementwise(a, "cuda_decode_e4m3", [](const uint8_t* s, float* d, size_t n) { dsv4::cuda::decode_e4m3(s, d, n); }, 1);
      },
      py::arg("codes"), "E4M3 decode on CUDA device 0 (RuntimeError when no device is present).");
  m.def("cuda_device_name", &dsv4::cuda::device_name, py::arg("device") = 0);
#endif
}
