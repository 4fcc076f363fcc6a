// Host-side CUDA planning (plan.h): launch geometry and the device arena layout.  Pure C++, no device.
#include "runtime/ops_cuda/plan.h"

#include <stdexcept>

namespace dsv4 {

bool cuda_gemv_supported(QType t) {
  switch (t) {
    case QType::F32:
    case QType::F16:
    case QType::BF16:
    case QType::Q8_0:
    case QType::Q4_K:
    case QType::Q6_K:
    case QType::MXFP4:
      return true;
    default:
      return false;
  }
}

namespace {
void geom(QType t, int& elems, int& bytes) {
  switch (t) {
    case QType::F32:
      elems = 32;
      bytes = 128;
      return;
    case QType::F16:
    case QType::BF16:
      elems = 32;
      bytes = 64;
      return;
    case QType::Q8_0:
      elems = 32;
      bytes = 34;
      return;
    case QType::MXFP4:
      elems = 32;
      bytes = 17;
      return;
    case QType::Q4_K:
      elems = 256;
      bytes = 144;
      return;
    case QType::Q6_K:
      elems = 256;
      bytes = 210;
      return;
    default:
      elems = bytes = 0;
  }
}
}  // namespace

CudaGemvConfig cuda_gemv_config(QType t, int64_t rows, int64_t cols, int64_t n_vec, int64_t n_slots) {
  CudaGemvConfig c;
  geom(t, c.block_elems, c.block_bytes);
  if (!c.block_elems)
    throw std::invalid_argument("CUDA GEMV: ggml type " + std::to_string(static_cast<int>(t)) +
                                " has no CUDA kernel (supported: F32, F16, BF16, Q8_0, Q4_K, Q6_K, MXFP4); "
                                "requantize the tensor or run on the CPU backend");
  if (rows <= 0 || cols <= 0 || cols % c.block_elems != 0)
    throw std::invalid_argument("CUDA GEMV: " + std::to_string(rows) + " x " + std::to_string(cols) +
                                " matrix: columns must be a positive multiple of " + std::to_string(c.block_elems));
  if (n_vec < 1 || n_vec > kCudaGemvMaxVec)
    throw std::invalid_argument("CUDA GEMV: n_vec must be in [1, " + std::to_string(kCudaGemvMaxVec) + "], got " +
                                std::to_string(n_vec));
  if (n_slots < 1 || n_slots > 65535)
    throw std::invalid_argument("CUDA GEMV: n_slots must be in [1, 65535], got " + std::to_string(n_slots));
  c.warps = 8;
  c.threads = 32 * c.warps;
  // dequant.cuh GemvGeom: 32 lanes decode 32 blocks (32-element types) or 8 (256-element types) per sub-chunk;
  // MXFP4 stages 4 sub-chunks per load phase, Q8_0 and Q4_K 2, the others 1 (~2 KB per warp in flight)
  const int stages = t == QType::MXFP4 ? 4 : (t == QType::Q8_0 || t == QType::Q4_K) ? 2 : 1;
  c.chunk_blocks = (c.block_elems == 32 ? 32 : 8) * stages;
  c.lane_elems = c.block_elems * c.chunk_blocks / 32;
  c.grid_x = (rows + c.warps - 1) / c.warps;
  c.grid_y = n_slots;
  c.row_bytes = static_cast<size_t>(cols / c.block_elems) * static_cast<size_t>(c.block_bytes);
  c.load_bytes = c.row_bytes % 16 == 0 ? 16 : c.row_bytes % 8 == 0 ? 8 : c.row_bytes % 4 == 0 ? 4 : 1;
  c.smem_bytes = static_cast<size_t>(c.warps) * static_cast<size_t>(c.chunk_blocks * c.block_bytes);
  return c;
}

const CudaUploadEntry* CudaUploadPlan::find(const std::string& name) const {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

CudaUploadPlan plan_cuda_upload(const Model& m) {
  CudaUploadPlan p;
  auto place = [&](CudaUploadEntry e) {
    p.total_bytes = (p.total_bytes + CudaUploadPlan::kAlign - 1) / CudaUploadPlan::kAlign * CudaUploadPlan::kAlign;
    e.offset = p.total_bytes;
    p.total_bytes += e.bytes;
    p.entries.push_back(std::move(e));
  };
  auto weight = [&](const WeightView& w, bool gemv) {
    if (!w.valid()) return;
    if (gemv && !cuda_gemv_supported(w.type))
      throw std::invalid_argument(w.name + ": type " + std::string(ggml_type_name(static_cast<int32_t>(w.type))) +
                                  " has no CUDA kernel (supported: F32, F16, BF16, Q8_0, Q4_K, Q6_K, MXFP4); "
                                  "requantize with a recipe that uses these types or load with device='cpu'");
    CudaUploadEntry e;
    e.name = w.name;
    e.type = w.type;
    e.rows = w.rows;
    e.cols = w.cols;
    e.bytes = static_cast<size_t>(w.rows) * w.row_bytes;
    e.src = w.data;
    place(std::move(e));
  };
  auto vec = [&](const std::string& name, const std::vector<float>& v) {
    if (v.empty()) return;
    CudaUploadEntry e;
    e.name = name;
    e.kind = CudaUploadEntry::F32;
    e.rows = 1;
    e.cols = static_cast<int64_t>(v.size());
    e.bytes = v.size() * 4;
    e.src = v.data();
    place(std::move(e));
  };
  const ModelConfig& c = m.cfg();
  if (!m.mtp_only) {
    weight(m.embed, true);  // rows are gathered with the same decoders
    weight(m.head, true);
    weight(m.hc_head_fn, true);
    vec("output_norm", m.out_norm);
    vec("output_hc_base", m.hc_head_base);
    vec("output_hc_scale", m.hc_head_scale);
  }
  for (int l = 0; l < m.n_blocks(); ++l) {
    const BlockWeights& b = m.block(l);
    if (!b.wq_a.valid()) continue;  // blocks absent from this file (MTP sidecar / main without nextn)
    const std::string pre = "blk." + std::to_string(l) + ".";
    for (const WeightView* w : {&b.hc_attn_fn,
                                &b.hc_ffn_fn,
                                &b.wq_a,
                                &b.wq_b,
                                &b.wkv,
                                &b.wo_a,
                                &b.wo_b,
                                &b.comp.wkv,
                                &b.comp.wgate,
                                &b.idx_comp.wkv,
                                &b.idx_comp.wgate,
                                &b.idx_wq_b,
                                &b.idx_proj,
                                &b.gate,
                                &b.w1,
                                &b.w3,
                                &b.w2,
                                &b.sw1,
                                &b.sw3,
                                &b.sw2,
                                &b.eh_proj})
      weight(*w, true);
    vec(pre + "attn_norm", b.attn_norm);
    vec(pre + "ffn_norm", b.ffn_norm);
    vec(pre + "attn_sinks", b.sinks);
    vec(pre + "q_norm", b.q_norm);
    vec(pre + "kv_norm", b.kv_norm);
    vec(pre + "hc_attn_base", b.hc_attn_base);
    vec(pre + "hc_attn_scale", b.hc_attn_scale);
    vec(pre + "hc_ffn_base", b.hc_ffn_base);
    vec(pre + "hc_ffn_scale", b.hc_ffn_scale);
    vec(pre + "comp_ape", b.comp.ape);
    vec(pre + "comp_norm", b.comp.norm);
    vec(pre + "idx_comp_ape", b.idx_comp.ape);
    vec(pre + "idx_comp_norm", b.idx_comp.norm);
    vec(pre + "gate_bias", b.bias);
    vec(pre + "enorm", b.enorm);
    vec(pre + "hnorm", b.hnorm);
    vec(pre + "mtp_norm", b.mtp_norm);
    if (b.tid2eid) {
      CudaUploadEntry e;
      e.name = pre + "tid2eid";
      e.kind = CudaUploadEntry::I32;
      e.rows = c.vocab;
      e.cols = c.n_used;
      e.bytes = static_cast<size_t>(c.vocab * c.n_used) * 4;
      e.src = b.tid2eid;
      place(std::move(e));
    }
  }
  return p;
}

}  // namespace dsv4
