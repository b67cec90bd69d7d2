// See common.hpp. The image code follows OpenCV's conventions so the C++ demos see the same pixels
// as `python -m toolbox predict` and the Python demo (both use cv2.resize with infer_cfg's interpolation).
#include "common.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include <stb/stb_image.h>        // implementations compiled in stb_impl.cpp
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>

namespace fs = std::filesystem;
using nlohmann::json;

namespace sdk {

size_t Tensor::numel() const {
    size_t n = 1;
    for (auto d : shape) n *= static_cast<size_t>(d);
    return n;
}

// ------------------------------------------------------------------------------------------ config
static std::string op_type(const json& op, json& args) {
    // Both `{type: Resize, target_size: ...}` and `{Resize: {target_size: ...}}` are accepted.
    if (op.contains("type")) { args = op; return op["type"].get<std::string>(); }
    if (op.is_object() && op.size() == 1) { args = op.begin().value(); return op.begin().key(); }
    throw std::runtime_error("infer_cfg: a preprocess entry has neither 'type' nor a single key");
}

static double number(const json& v) {
    if (v.is_number()) return v.get<double>();
    if (v.is_string()) {  // e.g. "1/255" or "0.00392"
        std::string s = v.get<std::string>();
        auto slash = s.find('/');
        if (slash != std::string::npos) return std::stod(s.substr(0, slash)) / std::stod(s.substr(slash + 1));
        return std::stod(s);
    }
    throw std::runtime_error("infer_cfg: expected a number");
}

Config load_config(const fs::path& model_dir) {
    fs::path p = model_dir / "infer_cfg.json";
    std::ifstream in(p);
    if (!in) throw std::runtime_error("cannot open " + p.string() + " (pass the folder that holds infer_cfg.json)");
    json j = json::parse(in);
    Config c;
    if (j.contains("input_size")) {
        const json& s = j["input_size"];
        c.input_size = s.is_array() ? s.back().get<int>() : s.get<int>();
    }
    if (j.contains("draw_threshold")) c.draw_threshold = j["draw_threshold"].get<float>();
    for (const auto& l : j.value("label_list", json::array())) c.labels.push_back(l.get<std::string>());
    for (const auto& op : j.value("preprocess", json::array())) {
        json a;
        std::string t = op_type(op, a);
        if (t == "Resize") {
            if (a.contains("target_size")) {
                const json& s = a["target_size"];
                c.input_size = s.is_array() ? s.back().get<int>() : s.get<int>();
            }
            if (a.contains("interp")) c.interp = a["interp"].get<std::string>();
            if (c.interp != "cubic" && c.interp != "linear")
                throw std::runtime_error(p.string() + ": preprocess Resize interp '" + c.interp +
                                         "' is not supported (cubic or linear)");
        } else if (t == "Normalize" || t == "NormalizeImage") {
            if (a.contains("scale")) c.scale = static_cast<float>(number(a["scale"]));
            else if (a.value("is_scale", true)) c.scale = 1.0f / 255.0f;
            for (int k = 0; k < 3; ++k) {
                if (a.contains("mean")) c.mean[k] = static_cast<float>(number(a["mean"][k]));
                if (a.contains("std")) c.std[k] = static_cast<float>(number(a["std"][k]));
            }
        }
    }
    for (const auto& s : j.value("stages", json::array())) {
        Stage st;
        st.name = s.value("name", "");
        st.file = s.value("file", "");
        st.runtime = s.value("runtime", "onnxruntime");
        st.onnx_file = s.value("onnx", "");
        st.function = s.value("function", "");
        for (const auto& n : s.value("inputs", json::array())) st.inputs.push_back(n.is_object() ? n["name"].get<std::string>() : n.get<std::string>());
        for (const auto& n : s.value("outputs", json::array())) st.outputs.push_back(n.is_object() ? n["name"].get<std::string>() : n.get<std::string>());
        const json args = s.value("args", json::object());  // a named copy: items() must not outlive it
        for (const auto& [k, v] : args.items())
            if (v.is_number()) st.args[k] = v.get<double>();
        if (st.runtime == "paddle") continue;  // the Paddle graph is not part of the C++ SDK
        c.stages.push_back(st);
    }
    if (c.stages.empty()) {  // an export without a stage list: the single ONNX graph
        Stage st;
        st.file = "model.onnx";
        st.runtime = "onnxruntime";
        st.inputs = {"images", "orig_target_sizes"};
        st.outputs = {"labels", "boxes", "scores"};
        c.stages.push_back(st);
    }
    return c;
}

// ------------------------------------------------------------------------------------------- image
Image load_image(const fs::path& path) {
    int w = 0, h = 0, n = 0;
    unsigned char* data = stbi_load(path.string().c_str(), &w, &h, &n, 3);
    if (!data) throw std::runtime_error("cannot read image " + path.string() + ": " + stbi_failure_reason());
    Image img;
    img.w = w;
    img.h = h;
    img.rgb.assign(data, data + static_cast<size_t>(w) * h * 3);
    stbi_image_free(data);
    return img;
}

bool save_image(const Image& img, const fs::path& path) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (ext == ".png") return stbi_write_png(path.string().c_str(), img.w, img.h, 3, img.rgb.data(), img.w * 3) != 0;
    return stbi_write_jpg(path.string().c_str(), img.w, img.h, 3, img.rgb.data(), 95) != 0;
}

static void cubic_coeffs(float x, float c[4]) {
    const float A = -0.75f;
    c[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    c[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    c[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    c[3] = 1.f - c[0] - c[1] - c[2];
}

Image resize_cubic(const Image& src, int ow, int oh) {
    // Separable: horizontal pass into floats, then vertical pass, rounded and saturated like cv2 does.
    const double sx = static_cast<double>(src.w) / ow, sy = static_cast<double>(src.h) / oh;
    std::vector<int> xo(ow * 4);
    std::vector<float> xc(ow * 4);
    for (int x = 0; x < ow; ++x) {
        float fx = static_cast<float>((x + 0.5) * sx - 0.5);
        int ix = static_cast<int>(std::floor(fx));
        cubic_coeffs(fx - ix, &xc[x * 4]);
        for (int k = 0; k < 4; ++k) xo[x * 4 + k] = std::clamp(ix - 1 + k, 0, src.w - 1);
    }
    std::vector<float> tmp(static_cast<size_t>(src.h) * ow * 3);
    for (int y = 0; y < src.h; ++y)
        for (int x = 0; x < ow; ++x)
            for (int ch = 0; ch < 3; ++ch) {
                float acc = 0;
                for (int k = 0; k < 4; ++k)
                    acc += xc[x * 4 + k] * src.rgb[(static_cast<size_t>(y) * src.w + xo[x * 4 + k]) * 3 + ch];
                tmp[(static_cast<size_t>(y) * ow + x) * 3 + ch] = acc;
            }
    Image out;
    out.w = ow;
    out.h = oh;
    out.rgb.resize(static_cast<size_t>(ow) * oh * 3);
    for (int y = 0; y < oh; ++y) {
        float fy = static_cast<float>((y + 0.5) * sy - 0.5);
        int iy = static_cast<int>(std::floor(fy));
        float c[4];
        cubic_coeffs(fy - iy, c);
        int rows[4];
        for (int k = 0; k < 4; ++k) rows[k] = std::clamp(iy - 1 + k, 0, src.h - 1);
        for (int x = 0; x < ow; ++x)
            for (int ch = 0; ch < 3; ++ch) {
                float acc = 0;
                for (int k = 0; k < 4; ++k) acc += c[k] * tmp[(static_cast<size_t>(rows[k]) * ow + x) * 3 + ch];
                out.rgb[(static_cast<size_t>(y) * ow + x) * 3 + ch] =
                    static_cast<uint8_t>(std::clamp(static_cast<int>(std::lround(acc)), 0, 255));
            }
    }
    return out;
}

Image resize_linear(const Image& src, int ow, int oh) {
    // Two taps per axis at half-pixel centres, clamped to the border, like cv2.INTER_LINEAR (which uses
    // 11-bit fixed-point weights on uint8: results may differ from it by one grey level).
    const double sx = static_cast<double>(src.w) / ow, sy = static_cast<double>(src.h) / oh;
    auto taps = [](double f, int n, int& i0, int& i1, float& w1) {
        if (f < 0) f = 0;
        int i = static_cast<int>(std::floor(f));
        w1 = static_cast<float>(f - i);
        if (i >= n - 1) { i = n - 1; w1 = 0.f; }
        i0 = i;
        i1 = std::min(i + 1, n - 1);
    };
    std::vector<int> x0(ow), x1(ow);
    std::vector<float> xw(ow);
    for (int x = 0; x < ow; ++x) taps((x + 0.5) * sx - 0.5, src.w, x0[x], x1[x], xw[x]);
    Image out;
    out.w = ow;
    out.h = oh;
    out.rgb.resize(static_cast<size_t>(ow) * oh * 3);
    for (int y = 0; y < oh; ++y) {
        int y0, y1;
        float yw;
        taps((y + 0.5) * sy - 0.5, src.h, y0, y1, yw);
        const uint8_t* r0 = &src.rgb[static_cast<size_t>(y0) * src.w * 3];
        const uint8_t* r1 = &src.rgb[static_cast<size_t>(y1) * src.w * 3];
        for (int x = 0; x < ow; ++x)
            for (int ch = 0; ch < 3; ++ch) {
                float top = r0[x0[x] * 3 + ch] * (1 - xw[x]) + r0[x1[x] * 3 + ch] * xw[x];
                float bottom = r1[x0[x] * 3 + ch] * (1 - xw[x]) + r1[x1[x] * 3 + ch] * xw[x];
                float v = top * (1 - yw) + bottom * yw;
                out.rgb[(static_cast<size_t>(y) * ow + x) * 3 + ch] =
                    static_cast<uint8_t>(std::clamp(static_cast<int>(std::lround(v)), 0, 255));
            }
    }
    return out;
}

Image resize(const Image& src, int ow, int oh, const std::string& interp) {
    return interp == "linear" ? resize_linear(src, ow, oh) : resize_cubic(src, ow, oh);
}

TensorMap preprocess(const Image& img, const Config& cfg) {
    const int s = cfg.input_size;
    Image r = resize(img, s, s, cfg.interp);
    Tensor t;
    t.shape = {1, 3, s, s};
    t.f.resize(static_cast<size_t>(3) * s * s);
    for (int ch = 0; ch < 3; ++ch)
        for (int p = 0; p < s * s; ++p)
            t.f[static_cast<size_t>(ch) * s * s + p] = (r.rgb[static_cast<size_t>(p) * 3 + ch] * cfg.scale - cfg.mean[ch]) / cfg.std[ch];
    Tensor sizes;
    sizes.shape = {1, 2};
    sizes.is_int = true;
    sizes.i = {img.w, img.h};
    TensorMap m;
    m["images"] = std::move(t);
    m["orig_target_sizes"] = std::move(sizes);
    return m;
}

// ------------------------------------------------------------------------------------- detections
std::vector<Detection> collect(const TensorMap& t, float threshold) {
    auto need = [&](const char* n) -> const Tensor& {
        auto it = t.find(n);
        if (it == t.end()) throw std::runtime_error(std::string("the pipeline produced no '") + n + "' output");
        return it->second;
    };
    const Tensor &labels = need("labels"), &boxes = need("boxes"), &scores = need("scores");
    size_t k = scores.numel();  // batch of one
    std::vector<Detection> out;
    for (size_t q = 0; q < k; ++q) {
        float s = scores.f[q];
        if (s < threshold) continue;
        Detection d;
        d.cls = labels.is_int ? labels.i[q] : static_cast<int64_t>(labels.f[q]);
        d.score = s;
        for (int c = 0; c < 4; ++c) d.box[c] = boxes.f[q * 4 + c];
        out.push_back(d);
    }
    std::stable_sort(out.begin(), out.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
    return out;
}

static void color_of(int64_t cls, uint8_t rgb[3]) {
    // Golden-ratio hue steps: the same colours as the toolbox's own drawings.
    double h = std::fmod(static_cast<double>(cls) * 0.618033988749895, 1.0) * 6.0;
    double s = 0.85, v = 0.95, f = h - std::floor(h);
    double p = v * (1 - s), q = v * (1 - s * f), u = v * (1 - s * (1 - f));
    double r, g, b;
    switch (static_cast<int>(h) % 6) {
        case 0: r = v; g = u; b = p; break;
        case 1: r = q; g = v; b = p; break;
        case 2: r = p; g = v; b = u; break;
        case 3: r = p; g = q; b = v; break;
        case 4: r = u; g = p; b = v; break;
        default: r = v; g = p; b = q; break;
    }
    rgb[0] = static_cast<uint8_t>(r * 255); rgb[1] = static_cast<uint8_t>(g * 255); rgb[2] = static_cast<uint8_t>(b * 255);
}

static void fill(Image& img, int x1, int y1, int x2, int y2, const uint8_t c[3]) {
    x1 = std::max(x1, 0); y1 = std::max(y1, 0); x2 = std::min(x2, img.w - 1); y2 = std::min(y2, img.h - 1);
    for (int y = y1; y <= y2; ++y)
        for (int x = x1; x <= x2; ++x)
            for (int ch = 0; ch < 3; ++ch) img.rgb[(static_cast<size_t>(y) * img.w + x) * 3 + ch] = c[ch];
}

void draw(Image& img, const std::vector<Detection>& dets, const std::vector<std::string>& labels) {
    const int t = std::max(2, std::min(img.w, img.h) / 300);
    const int zoom = std::max(1, std::min(img.w, img.h) / 400);
    for (const auto& d : dets) {
        uint8_t c[3];
        color_of(d.cls, c);
        int x1 = static_cast<int>(d.box[0]), y1 = static_cast<int>(d.box[1]);
        int x2 = static_cast<int>(d.box[2]), y2 = static_cast<int>(d.box[3]);
        fill(img, x1, y1, x2, y1 + t - 1, c);
        fill(img, x1, y2 - t + 1, x2, y2, c);
        fill(img, x1, y1, x1 + t - 1, y2, c);
        fill(img, x2 - t + 1, y1, x2, y2, c);
        // Label: class name when it is plain ASCII (stb_easy_font has no CJK glyphs), else the class index.
        std::string name = d.cls >= 0 && d.cls < static_cast<int64_t>(labels.size()) ? labels[d.cls] : "";
        bool ascii = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) { return ch > 31 && ch < 127; });
        char text[160];
        std::snprintf(text, sizeof text, "%s %.2f", ascii ? name.c_str() : ("#" + std::to_string(d.cls)).c_str(), d.score);
        int tw = stb_easy_font_width(text) * zoom, th = 12 * zoom;
        int ty = y1 - th >= 0 ? y1 - th : y1;
        fill(img, x1, ty, x1 + tw + 2, ty + th - 1, c);
        static char buf[64 * 1024];
        int quads = stb_easy_font_print(0, 0, text, nullptr, buf, sizeof buf);
        const uint8_t black[3] = {0, 0, 0};
        for (int q = 0; q < quads; ++q) {
            const float* v = reinterpret_cast<const float*>(buf + q * 64);  // 4 vertices of 16 bytes
            int qx1 = static_cast<int>(v[0]), qy1 = static_cast<int>(v[1]);
            int qx2 = static_cast<int>(v[8]), qy2 = static_cast<int>(v[9]);
            fill(img, x1 + 2 + qx1 * zoom, ty + 2 + qy1 * zoom, x1 + 1 + qx2 * zoom, ty + 1 + qy2 * zoom, black);
        }
    }
}

std::string to_json(const fs::path& image, const Image& img, const std::vector<Detection>& dets,
                    const std::vector<std::string>& labels) {
    json j;
    j["input_path"] = image.generic_string();
    j["width"] = img.w;
    j["height"] = img.h;
    j["boxes"] = json::array();
    for (const auto& d : dets) {
        std::string name = d.cls >= 0 && d.cls < static_cast<int64_t>(labels.size()) ? labels[d.cls] : std::to_string(d.cls);
        j["boxes"].push_back({{"cls_id", d.cls}, {"label", name}, {"score", d.score},
                              {"coordinate", {d.box[0], d.box[1], d.box[2], d.box[3]}}});
    }
    return j.dump();
}

std::vector<fs::path> list_images(const fs::path& input) {
    if (fs::is_regular_file(input)) return {input};
    if (!fs::is_directory(input)) throw std::runtime_error("no such image or folder: " + input.string());
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(input)) {
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
        if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp"))
            out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    if (out.empty()) throw std::runtime_error("no .jpg/.jpeg/.png/.bmp images in " + input.string());
    return out;
}

}  // namespace sdk
