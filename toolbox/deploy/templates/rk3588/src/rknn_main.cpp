// RK3588 NPU demo on the RKNN runtime C API (rknn_init, rknn_query, rknn_inputs_set, rknn_run,
// rknn_outputs_get). Runs the stages of model/infer_cfg.json: rknn stages on the NPU, cpu stages (query
// selection, post-processing) through src/cpu_stage.cpp: the same file the ONNX Runtime fallback
// (src/ort_main.cpp, built as demo_ort) uses, so what runs on the CPU is tested off the board too.
#include <rknn_api.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "cpu_stage.hpp"

namespace fs = std::filesystem;

namespace {

void check(int ret, const std::string& what) {
    if (ret != RKNN_SUCC) throw std::runtime_error(what + " failed (RKNN error " + std::to_string(ret) + ")");
}

// One .rknn graph loaded on the NPU.
class RknnModel {
public:
    explicit RknnModel(const fs::path& file) : name_(file.filename().string()) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw std::runtime_error("cannot open " + file.string());
        std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        check(rknn_init(&ctx_, blob.data(), static_cast<uint32_t>(blob.size()), 0, nullptr), "rknn_init " + name_);
        rknn_input_output_num io{};
        check(rknn_query(ctx_, RKNN_QUERY_IN_OUT_NUM, &io, sizeof io), "rknn_query IN_OUT_NUM");
        in_attr_.resize(io.n_input);
        out_attr_.resize(io.n_output);
        for (uint32_t k = 0; k < io.n_input; ++k) {
            in_attr_[k].index = k;
            check(rknn_query(ctx_, RKNN_QUERY_INPUT_ATTR, &in_attr_[k], sizeof(rknn_tensor_attr)), "rknn_query INPUT_ATTR");
        }
        for (uint32_t k = 0; k < io.n_output; ++k) {
            out_attr_[k].index = k;
            check(rknn_query(ctx_, RKNN_QUERY_OUTPUT_ATTR, &out_attr_[k], sizeof(rknn_tensor_attr)), "rknn_query OUTPUT_ATTR");
        }
    }
    ~RknnModel() { if (ctx_) rknn_destroy(ctx_); }
    RknnModel(const RknnModel&) = delete;
    RknnModel& operator=(const RknnModel&) = delete;

    // `image` is the resized uint8 RGB picture (NHWC) for the input named "images": the export folded
    // Normalize into the .rknn graph. Other inputs are float32 tensors produced by earlier stages.
    void run(const sdk::Stage& st, const sdk::Image& image, sdk::TensorMap& t) {
        std::vector<rknn_input> inputs(in_attr_.size());
        for (size_t k = 0; k < inputs.size(); ++k) {
            const std::string name = k < st.inputs.size() ? st.inputs[k] : in_attr_[k].name;
            std::memset(&inputs[k], 0, sizeof(rknn_input));
            inputs[k].index = static_cast<uint32_t>(k);
            if (name == "images") {
                inputs[k].buf = const_cast<uint8_t*>(image.rgb.data());
                inputs[k].size = static_cast<uint32_t>(image.rgb.size());
                inputs[k].type = RKNN_TENSOR_UINT8;
                inputs[k].fmt = RKNN_TENSOR_NHWC;
                continue;
            }
            auto it = t.find(name);
            if (it == t.end()) throw std::runtime_error(name_ + " needs input '" + name + "', which no earlier stage produced");
            sdk::Tensor& x = it->second;
            if (x.is_int) { x.f.assign(x.i.begin(), x.i.end()); x.is_int = false; }
            inputs[k].buf = x.f.data();
            inputs[k].size = static_cast<uint32_t>(x.f.size() * sizeof(float));
            inputs[k].type = RKNN_TENSOR_FLOAT32;
            inputs[k].fmt = RKNN_TENSOR_UNDEFINED;
        }
        check(rknn_inputs_set(ctx_, static_cast<uint32_t>(inputs.size()), inputs.data()), "rknn_inputs_set " + name_);
        check(rknn_run(ctx_, nullptr), "rknn_run " + name_);
        std::vector<rknn_output> outs(out_attr_.size());
        for (size_t k = 0; k < outs.size(); ++k) {
            std::memset(&outs[k], 0, sizeof(rknn_output));
            outs[k].index = static_cast<uint32_t>(k);
            outs[k].want_float = 1;
        }
        check(rknn_outputs_get(ctx_, static_cast<uint32_t>(outs.size()), outs.data(), nullptr), "rknn_outputs_get " + name_);
        for (size_t k = 0; k < outs.size(); ++k) {
            sdk::Tensor y;
            const rknn_tensor_attr& a = out_attr_[k];
            for (uint32_t d = 0; d < a.n_dims; ++d) y.shape.push_back(a.dims[d]);
            const float* p = static_cast<const float*>(outs[k].buf);
            y.f.assign(p, p + outs[k].size / sizeof(float));
            // The CPU stages expect [1, rows, cols]; RKNN may report extra unit dimensions.
            if (y.shape.size() > 3) {
                std::vector<int64_t> s;
                for (auto d : y.shape) if (d != 1 || s.empty()) s.push_back(d);
                while (s.size() < 3) s.push_back(1);
                y.shape = s;
            }
            t[k < st.outputs.size() ? st.outputs[k] : std::string(a.name)] = std::move(y);
        }
        rknn_outputs_release(ctx_, static_cast<uint32_t>(outs.size()), outs.data());
    }

private:
    std::string name_;
    rknn_context ctx_ = 0;
    std::vector<rknn_tensor_attr> in_attr_, out_attr_;
};

}  // namespace

int main(int argc, char** argv) {
    try {
        fs::path model_dir = "model", out = "output", input;
        float threshold = -1;
        for (int a = 1; a < argc; ++a) {
            std::string s = argv[a];
            if ((s == "--model-dir" || s == "--out" || s == "--threshold") && a + 1 >= argc)
                throw std::invalid_argument(s + " needs a value");
            if (s == "--model-dir") model_dir = argv[++a];
            else if (s == "--out") out = argv[++a];
            else if (s == "--threshold") threshold = std::stof(argv[++a]);
            else if (!s.empty() && s[0] == '-') throw std::invalid_argument("unknown option " + s);
            else input = s;
        }
        if (input.empty()) throw std::invalid_argument("no input image or folder given");
        sdk::Config cfg = sdk::load_config(model_dir);
        if (threshold < 0) threshold = cfg.draw_threshold;
        std::vector<std::unique_ptr<RknnModel>> npu(cfg.stages.size());
        for (size_t k = 0; k < cfg.stages.size(); ++k)
            if (cfg.stages[k].runtime == "rknn") npu[k] = std::make_unique<RknnModel>(model_dir / cfg.stages[k].file);
            else if (cfg.stages[k].runtime != "cpu")
                throw std::runtime_error("stage " + cfg.stages[k].name + ": runtime " + cfg.stages[k].runtime + " is not for the NPU demo (use demo_ort)");
        fs::create_directories(out);
        std::string all = "[";
        for (const auto& path : sdk::list_images(input)) {
            sdk::Image img = sdk::load_image(path);
            sdk::Image resized = sdk::resize(img, cfg.input_size, cfg.input_size, cfg.interp);
            sdk::TensorMap t = sdk::preprocess(img, cfg);  // orig_target_sizes (and float images, unused by the NPU)
            for (size_t k = 0; k < cfg.stages.size(); ++k) {
                if (npu[k]) npu[k]->run(cfg.stages[k], resized, t);
                else sdk::run_cpu_stage(cfg.stages[k], t);
            }
            auto dets = sdk::collect(t, threshold);
            all += (all.size() > 1 ? "," : "") + sdk::to_json(path, img, dets, cfg.labels);
            sdk::draw(img, dets, cfg.labels);
            fs::path vis = out / (path.stem().string() + ".jpg");
            if (!sdk::save_image(img, vis)) throw std::runtime_error("cannot write " + vis.string());
            std::cerr << path.filename().string() << ": " << dets.size() << " detections -> " << vis.string() << "\n";
        }
        all += "]";
        std::cout << all << std::endl;
        std::ofstream(out / "results.json") << all;
        return 0;
    } catch (const std::invalid_argument& e) {
        std::cerr << "error: " << e.what() << "\nusage: demo_rknn INPUT [--model-dir DIR] [--out DIR] [--threshold T]\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
