"""Deploy step: SDK zips (model + demo + build files + runtime kit) for each target platform.

`api.deploy` renders `templates/` for a target into `sdk/<export>-<target>.zip`; `runtimes` fetches and
caches the ONNX Runtime kits (headers, libraries, licences) the C++ targets bundle.
"""
