// GGUF -> ModelConfig + BlockWeights, with the shape/type validation of every tensor.
#include "runtime/model.h"

#include <cmath>

#include "quant/quant.h"

namespace dsv4 {

WeightView WeightView::slice(int64_t r0, int64_t n) const {
  WeightView v = *this;
  v.data = row(r0);
  v.rows = n;
  return v;
}

std::vector<WeightView*> Model::views() {
  std::vector<WeightView*> out;
  const auto add = [&out](std::initializer_list<WeightView*> ws) {
    for (WeightView* w : ws)
      if (w->valid()) out.push_back(w);
  };
  add({&embed, &head, &hc_head_fn});
  for (BlockWeights& b : blocks_) {
    add({&b.hc_attn_fn, &b.hc_ffn_fn, &b.wq_a, &b.wq_b, &b.wkv, &b.wo_a, &b.wo_b, &b.gate});
    add({&b.comp.wkv, &b.comp.wgate, &b.idx_comp.wkv, &b.idx_comp.wgate, &b.idx_wq_b, &b.idx_proj});
    add({&b.w1, &b.w2, &b.w3, &b.sw1, &b.sw2, &b.sw3, &b.eh_proj});
  }
  return out;
}

std::vector<float> tensor_to_f32(const GgufTensor& t) {
  std::vector<float> out(static_cast<size_t>(t.nelements()));
  if (t.type == 26) {  // I32
    const int32_t* p = reinterpret_cast<const int32_t*>(t.data);
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(p[i]);
    return out;
  }
  if (!qtype_info(t.type))
    throw GgufError(t.file + ": tensor '" + t.name + "' has type " + ggml_type_name(t.type) +
                    ", expected a float type");
  int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
  dequantize_rows(static_cast<QType>(t.type), t.data, out.data(), rows, t.ne[0], Impl::Auto, 1);
  return out;
}

namespace {

struct Loader {
  const GgufFile& f;
  std::string arch;

  std::string key(const std::string& k) const { return arch + "." + k; }
  const GgufValue& need(const std::string& k) const {
    const GgufValue* v = f.find(k);
    if (!v)
      throw GgufError(f.path() + ": metadata key '" + k + "' is missing; the file was not written for the " + arch +
                      " architecture or by an incompatible converter");
    return *v;
  }
  int64_t get_i(const std::string& k) const {
    const GgufValue& v = need(key(k));
    if (!v.is_int()) throw GgufError(f.path() + ": metadata key '" + key(k) + "' must be an integer");
    return v.i;
  }
  int64_t get_i(const std::string& k, int64_t def) const { return f.find(key(k)) ? get_i(k) : def; }
  double get_f(const std::string& k) const {
    const GgufValue& v = need(key(k));
    if (v.is_array()) throw GgufError(f.path() + ": metadata key '" + key(k) + "' must be a scalar");
    return v.is_float() ? v.f : static_cast<double>(v.i);
  }
  double get_f(const std::string& k, double def) const { return f.find(key(k)) ? get_f(k) : def; }
  std::vector<double> get_arr(const std::string& k, size_t n, bool required, double def) const {
    const GgufValue* v = f.find(key(k));
    if (!v) {
      if (required) need(key(k));
      return std::vector<double>(n, def);
    }
    if (!v->is_array()) return std::vector<double>(n, v->is_float() ? v->f : static_cast<double>(v->i));
    if (v->nums.size() < n)
      throw GgufError(f.path() + ": metadata key '" + key(k) + "' has " + std::to_string(v->nums.size()) +
                      " entries, expected at least " + std::to_string(n) + " (one per block)");
    return v->nums;
  }

  const GgufTensor& tensor(const std::string& name) const {
    const GgufTensor* t = f.tensor(name);
    if (!t) throw GgufError(f.path() + ": tensor '" + name + "' is missing");
    return *t;
  }
  static std::string shape_str(const int64_t* ne, int n) {
    std::string s = "{";
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "}";
  }
  void check_shape(const GgufTensor& t, std::initializer_list<int64_t> want) const {
    int64_t w[4] = {1, 1, 1, 1};
    int n = 0;
    for (int64_t x : want) w[n++] = x;
    for (int d = 0; d < 4; ++d)
      if (t.ne[d] != w[d])
        throw GgufError(f.path() + ": tensor '" + t.name + "' has shape " + shape_str(t.ne, t.n_dims) + ", expected " +
                        shape_str(w, n) + " for the hyper-parameters in the metadata");
  }
  WeightView mat(const std::string& name, int64_t cols, int64_t rows, int64_t depth = 1) const {
    const GgufTensor& t = tensor(name);
    if (depth > 1)
      check_shape(t, {cols, rows, depth});
    else
      check_shape(t, {cols, rows});
    if (!qtype_info(t.type) || t.type == static_cast<int32_t>(QType::Q8_K) ||
        t.type == static_cast<int32_t>(QType::Q8_1))
      throw GgufError(f.path() + ": tensor '" + name + "' has type " + ggml_type_name(t.type) +
                      ", which is not a weight type this runtime can multiply");
    WeightView v;
    v.type = static_cast<QType>(t.type);
    v.cols = cols;
    v.rows = rows * depth;
    v.row_bytes = quant_row_size(v.type, cols);
    v.data = t.data;
    v.name = name;
    return v;
  }
  std::vector<float> vec(const std::string& name, int64_t n) const {
    const GgufTensor& t = tensor(name);
    check_shape(t, {n});
    return tensor_to_f32(t);
  }
  std::vector<float> plain(const std::string& name, std::initializer_list<int64_t> shape) const {
    const GgufTensor& t = tensor(name);
    check_shape(t, shape);
    return tensor_to_f32(t);
  }
};

}  // namespace

Model::Model(const std::string& path) : file_(std::make_unique<GgufFile>(path)) {
  const GgufFile& f = *file_;
  const GgufValue* a = f.find("general.architecture");
  if (!a || a->type != GgufType::STRING)
    throw GgufError(path + ": metadata key 'general.architecture' is missing; not a model GGUF");
  arch = a->s;
  if (arch != "deepseek4")
    throw GgufError(path + ": architecture is '" + arch + "', this runtime runs only 'deepseek4' (DeepSeek-V4) GGUFs");
  Loader L{f, arch};
  ModelConfig& c = cfg_;
  int64_t block_count = L.get_i("block_count");
  int64_t nextn = L.get_i("nextn_predict_layers", 0);
  c.dim = L.get_i("embedding_length");
  c.n_heads = L.get_i("attention.head_count");
  c.head_dim = L.get_i("attention.key_length", 512);
  c.rope_dim = L.get_i("rope.dimension_count", 64);
  c.q_lora_rank = L.get_i("attention.q_lora_rank");
  c.window = L.get_i("attention.sliding_window");
  c.n_experts = L.get_i("expert_count");
  c.n_used = L.get_i("expert_used_count");
  c.moe_inter = L.get_i("expert_feed_forward_length");
  if (L.get_i("expert_shared_count", 1) != 1)
    throw GgufError(path + ": " + arch + ".expert_shared_count must be 1 (DeepSeek-V4 has one shared expert)");
  c.route_scale = static_cast<float>(L.get_f("expert_weights_scale", 1.0));
  c.norm_topk = L.get_i("expert_weights_norm", 1) != 0;
  int64_t gating = L.get_i("expert_gating_func", 4);
  if (gating != 4)
    throw GgufError(path + ": " + arch + ".expert_gating_func = " + std::to_string(gating) +
                    ", expected 4 (sqrt-softplus scoring of DeepSeek-V4)");
  c.idx_heads = L.get_i("attention.indexer.head_count");
  c.idx_dim = L.get_i("attention.indexer.key_length");
  c.idx_topk = L.get_i("attention.indexer.top_k");
  c.o_groups = L.get_i("attention.output_group_count");
  c.o_lora_rank = L.get_i("attention.output_lora_rank");
  c.compress_rope_theta = static_cast<float>(L.get_f("attention.compress_rope_freq_base"));
  c.rope_theta = static_cast<float>(L.get_f("rope.freq_base", 10000.0));
  c.rope_factor = static_cast<float>(L.get_f("rope.scaling.factor", 1.0));
  c.original_ctx = static_cast<int64_t>(L.get_f("rope.scaling.original_context_length", 0.0));
  c.beta_fast = static_cast<float>(L.get_f("rope.scaling.yarn_beta_fast", 32.0));
  c.beta_slow = static_cast<float>(L.get_f("rope.scaling.yarn_beta_slow", 1.0));
  c.hc = L.get_i("hyper_connection.count");
  c.sinkhorn_iters = L.get_i("hyper_connection.sinkhorn_iterations");
  c.hc_eps = static_cast<float>(L.get_f("hyper_connection.epsilon"));
  c.n_hash = L.get_i("hash_layer_count");
  c.norm_eps = static_cast<float>(L.get_f("attention.layer_norm_rms_epsilon"));
  c.ctx_train = L.get_i("context_length", 0);
  if (c.hc != 4)
    throw GgufError(path + ": " + arch + ".hyper_connection.count = " + std::to_string(c.hc) + ", expected 4");
  if (c.rope_dim % 2 || c.rope_dim >= c.head_dim || c.rope_dim > c.idx_dim)
    throw GgufError(path + ": rope.dimension_count " + std::to_string(c.rope_dim) +
                    " is incompatible with key_length " + std::to_string(c.head_dim) + " / indexer key_length " +
                    std::to_string(c.idx_dim));
  if (c.nope_dim() % 64) throw GgufError(path + ": key_length - rope dims must be a multiple of 64 (KV FP8 block)");
  if (c.idx_dim & (c.idx_dim - 1) || c.idx_dim % 32)
    throw GgufError(path + ": indexer key_length must be a power of two >= 32 (Hadamard + FP4 block)");
  if (c.n_heads % c.o_groups) throw GgufError(path + ": head_count must be divisible by output_group_count");

  const GgufTensor& emb = L.tensor("token_embd.weight");
  c.vocab = emb.ne[1];
  embed = L.mat("token_embd.weight", c.dim, c.vocab);
  head = L.mat("output.weight", c.dim, c.vocab);
  out_norm = L.vec("output_norm.weight", c.dim);
  const int64_t hc = c.hc, hcD = hc * c.dim, mix = (2 + hc) * hc;
  hc_head_fn = L.mat("output_hc_fn.weight", hcD, hc);
  hc_head_base = L.vec("output_hc_base.weight", hc);
  hc_head_scale = L.vec("output_hc_scale.weight", 1);

  if (nextn > 0 && !f.tensor("blk." + std::to_string(block_count - nextn) + ".nextn.eh_proj.weight")) nextn = 0;
  c.n_layers = block_count - nextn;
  c.n_mtp = nextn;
  if (c.n_layers <= 0) throw GgufError(path + ": block_count leaves no main layers");
  {
    const GgufValue& r = L.need(L.key("attention.compress_ratios"));
    if (!r.is_array() || r.nums.size() < static_cast<size_t>(block_count))
      throw GgufError(path + ": " + arch + ".attention.compress_ratios must be an array with at least block_count = " +
                      std::to_string(block_count) + " entries");
    for (int64_t i = 0; i < block_count; ++i) {
      int v = static_cast<int>(r.nums[static_cast<size_t>(i)]);
      if (v != 0 && v != 4 && v != 128)
        throw GgufError(path + ": compress_ratios[" + std::to_string(i) + "] = " + std::to_string(v) +
                        "; only 0, 4 and 128 exist in DeepSeek-V4");
      c.ratios.push_back(v);
    }
  }
  auto sw = L.get_arr("swiglu_clamp_exp", static_cast<size_t>(block_count), false, 10.0);
  auto ssw = L.get_arr("swiglu_clamp_shexp", static_cast<size_t>(block_count), false, -1.0);
  for (int64_t i = 0; i < block_count; ++i) {
    c.swiglu_exp.push_back(static_cast<float>(sw[static_cast<size_t>(i)]));
    double s = ssw[static_cast<size_t>(i)];
    c.swiglu_shexp.push_back(static_cast<float>(s < 0 ? sw[static_cast<size_t>(i)] : s));
  }

  const int64_t D = c.dim, H = c.n_heads, hd = c.head_dim, E = c.n_experts, I = c.moe_inter;
  // An MTP sidecar (llama.cpp/`dsv4-gguf convert` write mtp-OUT.gguf) holds only the nextn blocks.
  mtp_only = c.n_mtp > 0 && !f.tensor("blk.0.attn_norm.weight");
  for (int64_t i = 0; i < block_count; ++i) {
    BlockWeights b;
    if (mtp_only && i < c.n_layers) {
      blocks_.push_back(std::move(b));
      continue;
    }
    const std::string p = "blk." + std::to_string(i) + ".";
    b.ratio = c.ratios[static_cast<size_t>(i)];
    b.hash = i < c.n_hash && i < c.n_layers;
    if (i >= c.n_layers && b.ratio != 0)
      throw GgufError(path + ": MTP block " + std::to_string(i) + " must be window-only (compress ratio 0)");
    b.attn_norm = L.vec(p + "attn_norm.weight", D);
    b.ffn_norm = L.vec(p + "ffn_norm.weight", D);
    b.sinks = L.vec(p + "attn_sinks.weight", H);
    b.hc_attn_fn = L.mat(p + "hc_attn_fn.weight", hcD, mix);
    b.hc_ffn_fn = L.mat(p + "hc_ffn_fn.weight", hcD, mix);
    b.hc_attn_base = L.vec(p + "hc_attn_base.weight", mix);
    b.hc_ffn_base = L.vec(p + "hc_ffn_base.weight", mix);
    b.hc_attn_scale = L.vec(p + "hc_attn_scale.weight", 3);
    b.hc_ffn_scale = L.vec(p + "hc_ffn_scale.weight", 3);
    b.wq_a = L.mat(p + "attn_q_a.weight", D, c.q_lora_rank);
    b.q_norm = L.vec(p + "attn_q_a_norm.weight", c.q_lora_rank);
    b.wq_b = L.mat(p + "attn_q_b.weight", c.q_lora_rank, H * hd);
    b.wkv = L.mat(p + "attn_kv.weight", D, hd);
    b.kv_norm = L.vec(p + "attn_kv_a_norm.weight", hd);
    b.wo_a = L.mat(p + "attn_output_a.weight", H * hd / c.o_groups, c.o_groups * c.o_lora_rank);
    b.wo_b = L.mat(p + "attn_output_b.weight", c.o_groups * c.o_lora_rank, D);
    if (b.ratio) {
      auto comp = [&](const std::string& pre, int64_t d, CompressorWeights& cw) {
        cw.ratio = b.ratio;
        cw.d = static_cast<int>(d);
        cw.coff = b.ratio == 4 ? 2 : 1;
        cw.wkv = L.mat(p + pre + "_kv.weight", D, cw.coff * d);
        cw.wgate = L.mat(p + pre + "_gate.weight", D, cw.coff * d);
        cw.ape = L.plain(p + pre + "_ape.weight", {cw.coff * d, b.ratio});
        cw.norm = L.vec(p + pre + "_norm.weight", d);
      };
      comp("attn_compressor", hd, b.comp);
      if (b.ratio == 4) {
        comp("indexer_compressor", c.idx_dim, b.idx_comp);
        b.idx_wq_b = L.mat(p + "indexer.attn_q_b.weight", c.q_lora_rank, c.idx_heads * c.idx_dim);
        b.idx_proj = L.mat(p + "indexer.proj.weight", D, c.idx_heads);
      }
    }
    b.gate = L.mat(p + "ffn_gate_inp.weight", D, E);
    if (b.hash) {
      const GgufTensor& t = L.tensor(p + "ffn_gate_tid2eid.weight");
      L.check_shape(t, {c.n_used, c.vocab});
      if (t.type != 26)
        throw GgufError(path + ": tensor '" + t.name + "' has type " + ggml_type_name(t.type) + ", expected I32");
      b.tid2eid = reinterpret_cast<const int32_t*>(t.data);
      for (int64_t k = 0; k < c.n_used * c.vocab; ++k)
        if (b.tid2eid[k] < 0 || b.tid2eid[k] >= E)
          throw GgufError(path + ": tensor '" + t.name + "' holds expert id " + std::to_string(b.tid2eid[k]) +
                          " outside [0, " + std::to_string(E) + ")");
    } else {
      b.bias = L.vec(p + "exp_probs_b.bias", E);
    }
    b.w1 = L.mat(p + "ffn_gate_exps.weight", D, I, E);
    b.w3 = L.mat(p + "ffn_up_exps.weight", D, I, E);
    b.w2 = L.mat(p + "ffn_down_exps.weight", I, D, E);
    b.sw1 = L.mat(p + "ffn_gate_shexp.weight", D, I);
    b.sw3 = L.mat(p + "ffn_up_shexp.weight", D, I);
    b.sw2 = L.mat(p + "ffn_down_shexp.weight", I, D);
    if (i >= c.n_layers) {
      b.eh_proj = L.mat(p + "nextn.eh_proj.weight", 2 * D, D);
      b.enorm = L.vec(p + "nextn.enorm.weight", D);
      b.hnorm = L.vec(p + "nextn.hnorm.weight", D);
      if (f.tensor(p + "nextn.shared_head_norm.weight"))
        b.mtp_norm = L.vec(p + "nextn.shared_head_norm.weight", D);
      else
        b.mtp_norm = out_norm;
    }
    blocks_.push_back(std::move(b));
  }
}

}  // namespace dsv4
