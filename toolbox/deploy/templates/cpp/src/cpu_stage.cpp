// See cpu_stage.hpp. Mirrors rtdetr_cpu.py (numpy) of the export.
#include "cpu_stage.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace sdk {

namespace {

const Tensor& need(const TensorMap& t, const std::string& name) {
    auto it = t.find(name);
    if (it == t.end()) throw std::runtime_error("cpu stage: missing input tensor '" + name + "'");
    return it->second;
}

float sigmoid(float x) {
    if (x >= 0) return 1.f / (1.f + std::exp(-x));
    float e = std::exp(x);
    return e / (1.f + e);
}

// Indices of the k largest values, largest first (ties: lower index first).
std::vector<int64_t> top_k(const std::vector<float>& v, size_t k) {
    std::vector<int64_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    k = std::min(k, v.size());
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(),
                      [&](int64_t a, int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
    idx.resize(k);
    return idx;
}

void check_rank(const Tensor& t, size_t rank, const char* what) {
    if (t.shape.size() != rank || t.shape[0] != 1)
        throw std::runtime_error(std::string("cpu stage: ") + what + " must have rank " + std::to_string(rank) + " and batch 1");
}

double arg(const Stage& st, const char* key, double fallback) {
    auto it = st.args.find(key);
    return it == st.args.end() ? fallback : it->second;
}

}  // namespace

void select_queries(const Tensor& mem, const Tensor& logits, const Tensor& boxes, int num_queries,
                    Tensor& target, Tensor& ref_unact) {
    check_rank(mem, 3, "enc_memory");
    check_rank(logits, 3, "enc_logits");
    check_rank(boxes, 3, "enc_boxes_unact");
    const int64_t l = logits.shape[1], c = logits.shape[2], d = mem.shape[2];
    std::vector<float> best(static_cast<size_t>(l));
    for (int64_t p = 0; p < l; ++p)
        best[p] = *std::max_element(logits.f.begin() + p * c, logits.f.begin() + (p + 1) * c);
    auto idx = top_k(best, static_cast<size_t>(num_queries));
    const int64_t q = static_cast<int64_t>(idx.size());
    target = Tensor{};
    ref_unact = Tensor{};
    target.shape = {1, q, d};
    ref_unact.shape = {1, q, 4};
    for (int64_t p : idx) {
        target.f.insert(target.f.end(), mem.f.begin() + p * d, mem.f.begin() + (p + 1) * d);
        ref_unact.f.insert(ref_unact.f.end(), boxes.f.begin() + p * 4, boxes.f.begin() + (p + 1) * 4);
    }
}

void postprocess(const Tensor& logits, const Tensor& boxes, const Tensor& sizes, int num_top,
                 Tensor& labels, Tensor& out_boxes, Tensor& scores) {
    check_rank(logits, 3, "logits");
    check_rank(boxes, 3, "boxes");
    const int64_t c = logits.shape[2];
    std::vector<float> prob(logits.f.size());
    for (size_t k = 0; k < prob.size(); ++k) prob[k] = sigmoid(logits.f[k]);
    auto idx = top_k(prob, static_cast<size_t>(num_top));
    const int64_t kk = static_cast<int64_t>(idx.size());
    const float w = static_cast<float>(sizes.is_int ? sizes.i[0] : sizes.f[0]);
    const float h = static_cast<float>(sizes.is_int ? sizes.i[1] : sizes.f[1]);
    labels = Tensor{};
    out_boxes = Tensor{};
    scores = Tensor{};
    labels.is_int = true;
    labels.shape = {1, kk};
    scores.shape = {1, kk};
    out_boxes.shape = {1, kk, 4};
    for (int64_t k = 0; k < kk; ++k) {
        const int64_t query = idx[k] / c;
        labels.i.push_back(idx[k] % c);
        scores.f.push_back(prob[idx[k]]);
        const float* b = &boxes.f[query * 4];
        const float xyxy[4] = {b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2};
        const float scale[4] = {w, h, w, h};
        for (int j = 0; j < 4; ++j) out_boxes.f.push_back(std::clamp(xyxy[j] * scale[j], 0.f, scale[j]));
    }
}

void run_cpu_stage(const Stage& st, TensorMap& t) {
    auto in = [&](size_t k) -> const Tensor& {
        if (k >= st.inputs.size()) throw std::runtime_error("cpu stage '" + st.name + "' lists too few inputs");
        return need(t, st.inputs[k]);
    };
    auto out = [&](size_t k) -> Tensor& {
        if (k >= st.outputs.size()) throw std::runtime_error("cpu stage '" + st.name + "' lists too few outputs");
        return t[st.outputs[k]];
    };
    if (st.function == "select_queries") {
        Tensor target, ref;
        select_queries(in(0), in(1), in(2), static_cast<int>(arg(st, "num_queries", 300)), target, ref);
        out(0) = std::move(target);
        out(1) = std::move(ref);
    } else if (st.function == "postprocess") {
        Tensor labels, boxes, scores;
        postprocess(in(0), in(1), in(2), static_cast<int>(arg(st, "num_top", 300)), labels, boxes, scores);
        out(0) = std::move(labels);
        out(1) = std::move(boxes);
        out(2) = std::move(scores);
    } else {
        throw std::runtime_error("unknown cpu function '" + st.function + "' in stage '" + st.name +
                                 "' of infer_cfg.json (this demo knows select_queries, postprocess)");
    }
}

}  // namespace sdk
