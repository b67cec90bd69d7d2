// Shared by every C++ demo of the SDK (ONNX Runtime and RKNN): the infer_cfg reader, image
// loading / cv2-compatible bicubic resize / drawing / saving, and the JSON result format.
// Written for the toolbox's SDK zips; depends only on nlohmann/json and stb (bundled in third_party/).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace sdk {

// A named tensor passed between pipeline stages. Exactly one of `f` / `i` holds the data.
struct Tensor {
    std::vector<int64_t> shape;
    bool is_int = false;              // int64 when true, float32 otherwise
    std::vector<float> f;
    std::vector<int64_t> i;
    size_t numel() const;
};
using TensorMap = std::map<std::string, Tensor>;

// One graph of the pipeline (infer_cfg "stages"): file, runtime (onnxruntime | rknn | cpu), I/O names.
struct Stage {
    std::string name;
    std::string runtime;
    std::string file;                 // graph file (.onnx / .rknn), relative to the model folder
    std::string onnx_file;            // ONNX twin of an rknn stage (used by the CPU fallback), may be empty
    std::string function;             // cpu stages: select_queries | postprocess
    std::vector<std::string> inputs;
    std::vector<std::string> outputs;
    std::map<std::string, double> args;     // numeric arguments of a cpu stage (num_queries, num_top)
};

// What the demos need from infer_cfg.json (written by `python -m toolbox export`).
struct Config {
    int input_size = 640;
    std::string interp = "cubic";     // Resize interpolation: cubic (RT-DETR) or linear (RT-DETRv2)
    float scale = 1.0f / 255.0f;
    float mean[3] = {0, 0, 0};
    float std[3] = {1, 1, 1};
    float draw_threshold = 0.5f;
    std::vector<std::string> labels;
    std::vector<Stage> stages;
};
Config load_config(const std::filesystem::path& model_dir);

// 8-bit RGB image, row-major HWC.
struct Image {
    int w = 0, h = 0;
    std::vector<uint8_t> rgb;
};
Image load_image(const std::filesystem::path& path);
bool save_image(const Image& img, const std::filesystem::path& path);
// Bicubic resize with OpenCV's INTER_CUBIC conventions (a = -0.75, half-pixel centres, replicated border).
Image resize_cubic(const Image& src, int out_w, int out_h);
// Bilinear resize with OpenCV's INTER_LINEAR conventions (half-pixel centres, edge pixels repeated).
Image resize_linear(const Image& src, int out_w, int out_h);
// The resize infer_cfg names (Config::interp).
Image resize(const Image& src, int out_w, int out_h, const std::string& interp);
// Resize + Normalize + Permute as infer_cfg says → "images" [1,3,S,S] and "orig_target_sizes" [1,2] (w,h).
TensorMap preprocess(const Image& img, const Config& cfg);

struct Detection {
    int64_t cls = 0;
    float score = 0;
    float box[4] = {0, 0, 0, 0};      // x1, y1, x2, y2 in original pixels
};
// Outputs labels [1,K], boxes [1,K,4], scores [1,K] → detections with score >= threshold, best first.
std::vector<Detection> collect(const TensorMap& t, float threshold);
void draw(Image& img, const std::vector<Detection>& dets, const std::vector<std::string>& labels);
std::string to_json(const std::filesystem::path& image, const Image& img, const std::vector<Detection>& dets,
                    const std::vector<std::string>& labels);

// Image files given as a file or the images of a folder (sorted).
std::vector<std::filesystem::path> list_images(const std::filesystem::path& input);

}  // namespace sdk
