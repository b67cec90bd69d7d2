// ONNX Runtime demo: runs the exported detector on an image or a folder, prints detections as JSON and
// saves drawn images. Stages of infer_cfg.json run in order: onnxruntime graphs here, cpu stages through
// cpu_stage.cpp, and rknn stages (RK3588 NPU) through their ONNX twin: the CPU fallback of the RK3588 SDK.
#include <onnxruntime_cxx_api.h>

#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "common.hpp"
#include "cpu_stage.hpp"

namespace fs = std::filesystem;

namespace {

struct Options {
    fs::path model_dir = "model";
    fs::path input;
    fs::path out = "output";
    float threshold = -1;
    bool gpu = false;
};

void usage() {
    std::cerr << "usage: demo INPUT [--model-dir DIR] [--out DIR] [--threshold T] [--device cpu|gpu]\n"
                 "  INPUT      an image (.jpg/.png/.bmp) or a folder of images\n"
                 "  --model-dir folder with infer_cfg.json and the model files (default: model)\n"
                 "  --out       where drawn images and results.json go (default: output)\n";
}

Options parse(int argc, char** argv) {
    Options o;
#ifdef TOOLBOX_WITH_CUDA
    o.gpu = true;
#endif
    for (int a = 1; a < argc; ++a) {
        std::string s = argv[a];
        auto next = [&]() -> std::string {
            if (a + 1 >= argc) throw std::invalid_argument(s + " needs a value");
            return argv[++a];
        };
        if (s == "--model-dir") o.model_dir = next();
        else if (s == "--out") o.out = next();
        else if (s == "--threshold") o.threshold = std::stof(next());
        else if (s == "--device") o.gpu = next() == "gpu";
        else if (s == "-h" || s == "--help") { usage(); std::exit(0); }
        else if (!s.empty() && s[0] == '-') throw std::invalid_argument("unknown option " + s);
        else o.input = s;
    }
    if (o.input.empty()) throw std::invalid_argument("no input image or folder given");
    return o;
}

ONNXTensorElementDataType element_type(const Ort::TypeInfo& info) {
    return info.GetTensorTypeAndShapeInfo().GetElementType();
}

// Owns the ONNX Runtime sessions, one per graph file, created on first use.
class OrtRunner {
public:
    OrtRunner(bool gpu) : env_(ORT_LOGGING_LEVEL_WARNING, "toolbox-sdk") {
        opts_.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
        if (gpu) enable_cuda();
    }

    void run(const fs::path& file, const sdk::Stage& st, sdk::TensorMap& t) {
        Ort::Session& s = session(file);
        Ort::MemoryInfo mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        std::vector<Ort::Value> inputs;
        std::vector<std::string> in_names;
        // The stage's names map to the graph's by position (exporters may name outputs after internal variables).
        for (size_t k = 0; k < s.GetInputCount(); ++k) {
            std::string gname = s.GetInputNameAllocated(k, alloc_).get();
            std::string name = k < st.inputs.size() ? st.inputs[k] : gname;
            auto it = t.find(name);
            if (it == t.end()) throw std::runtime_error(file.string() + " needs input '" + name + "', which no earlier stage produced");
            sdk::Tensor& x = it->second;
            auto want = element_type(s.GetInputTypeInfo(k));
            if (want == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 && !x.is_int) {  // convert if a stage produced floats
                x.i.assign(x.f.begin(), x.f.end()); x.is_int = true;
            } else if (want == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && x.is_int) {
                x.f.assign(x.i.begin(), x.i.end()); x.is_int = false;
            }
            if (x.is_int)
                inputs.push_back(Ort::Value::CreateTensor<int64_t>(mem, x.i.data(), x.i.size(), x.shape.data(), x.shape.size()));
            else
                inputs.push_back(Ort::Value::CreateTensor<float>(mem, x.f.data(), x.f.size(), x.shape.data(), x.shape.size()));
            in_names.push_back(gname);
        }
        std::vector<std::string> out_names;
        for (size_t k = 0; k < s.GetOutputCount(); ++k) out_names.push_back(s.GetOutputNameAllocated(k, alloc_).get());
        std::vector<const char*> ip, op;
        for (auto& n : in_names) ip.push_back(n.c_str());
        for (auto& n : out_names) op.push_back(n.c_str());
        auto outs = s.Run(Ort::RunOptions{nullptr}, ip.data(), inputs.data(), inputs.size(), op.data(), op.size());
        for (size_t k = 0; k < outs.size(); ++k) {
            auto info = outs[k].GetTensorTypeAndShapeInfo();
            sdk::Tensor y;
            y.shape = info.GetShape();
            size_t n = info.GetElementCount();
            switch (info.GetElementType()) {
                case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: {
                    const int64_t* p = outs[k].GetTensorData<int64_t>(); y.is_int = true; y.i.assign(p, p + n); break; }
                case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: {
                    const int32_t* p = outs[k].GetTensorData<int32_t>(); y.is_int = true; y.i.assign(p, p + n); break; }
                case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: {
                    const float* p = outs[k].GetTensorData<float>(); y.f.assign(p, p + n); break; }
                default: throw std::runtime_error(file.string() + ": output '" + out_names[k] + "' has an unsupported type");
            }
            t[k < st.outputs.size() ? st.outputs[k] : out_names[k]] = std::move(y);
        }
    }

    const std::string& device() const { return device_; }

private:
    void enable_cuda() {
        // CUDA provider of the onnxruntime-gpu build; without CUDA 13 + cuDNN 9 it cannot load: warn, use the CPU.
        OrtCUDAProviderOptionsV2* cuda = nullptr;
        try {
            Ort::ThrowOnError(Ort::GetApi().CreateCUDAProviderOptions(&cuda));
            opts_.AppendExecutionProvider_CUDA_V2(*cuda);
            device_ = "gpu";
        } catch (const std::exception& e) {
            std::cerr << "warning: CUDA execution provider unavailable (" << e.what()
                      << "); running on the CPU. See README: the GPU build needs CUDA 13 and cuDNN 9.\n";
        }
        if (cuda) Ort::GetApi().ReleaseCUDAProviderOptions(cuda);
    }

    Ort::Session& session(const fs::path& file) {
        auto key = file.string();
        auto it = sessions_.find(key);
        if (it != sessions_.end()) return *it->second;
        if (!fs::is_regular_file(file)) throw std::runtime_error("model file not found: " + key);
        auto s = std::make_unique<Ort::Session>(env_, file.c_str(), opts_);  // wchar_t path on Windows
        return *(sessions_[key] = std::move(s));
    }

    Ort::Env env_;
    Ort::SessionOptions opts_;
    Ort::AllocatorWithDefaultOptions alloc_;
    std::map<std::string, std::unique_ptr<Ort::Session>> sessions_;
    std::string device_ = "cpu";
};

}  // namespace

int main(int argc, char** argv) {
    try {
        Options o = parse(argc, argv);
        sdk::Config cfg = sdk::load_config(o.model_dir);
        float threshold = o.threshold >= 0 ? o.threshold : cfg.draw_threshold;
        OrtRunner ort(o.gpu);
        std::cerr << "ONNX Runtime " << Ort::GetVersionString() << ", device " << ort.device() << "\n";
        bool noted = false;
        fs::create_directories(o.out);
        std::string all = "[";
        for (const auto& path : sdk::list_images(o.input)) {
            sdk::Image img = sdk::load_image(path);
            sdk::TensorMap t = sdk::preprocess(img, cfg);
            for (const auto& st : cfg.stages) {
                if (st.runtime == "cpu") {
                    sdk::run_cpu_stage(st, t);
                } else if (st.runtime == "rknn") {
                    if (st.onnx_file.empty()) throw std::runtime_error("stage " + st.file + " has no ONNX twin for the CPU fallback");
                    if (!noted) std::cerr << "note: NPU stage " << st.file << " runs on the CPU as " << st.onnx_file << "\n";
                    noted = true;
                    ort.run(o.model_dir / st.onnx_file, st, t);
                } else {
                    ort.run(o.model_dir / st.file, st, t);
                }
            }
            auto dets = sdk::collect(t, threshold);
            std::string js = sdk::to_json(path, img, dets, cfg.labels);
            all += (all.size() > 1 ? "," : "") + js;
            sdk::draw(img, dets, cfg.labels);
            fs::path vis = o.out / (path.stem().string() + ".jpg");
            if (!sdk::save_image(img, vis)) throw std::runtime_error("cannot write " + vis.string());
            std::cerr << path.filename().string() << ": " << dets.size() << " detections -> " << vis.string() << "\n";
        }
        all += "]";
        std::cout << all << std::endl;
        FILE* f = std::fopen((o.out / "results.json").string().c_str(), "wb");
        if (f) { std::fwrite(all.data(), 1, all.size(), f); std::fclose(f); }
        return 0;
    } catch (const std::invalid_argument& e) {
        std::cerr << "error: " << e.what() << "\n";
        usage();
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}
