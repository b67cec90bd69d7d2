"""Predict in the app process (toolbox/ui/predictors.py): the two most recently used models stay loaded,
a retrained checkpoint is loaded afresh, and only the newest 20 prediction folders per model are kept."""
from __future__ import annotations

import os

from toolbox.ui.predictors import KEEP_PER_MODEL, PredictorCache, find_source, new_output_dir, predict_one


def test_cache_keeps_the_two_most_recent():
    loads = []
    cache = PredictorCache(2)

    def loader(key):
        return lambda: loads.append(key) or f"model {key}"

    assert cache.get("a", loader("a")) == ("model a", False)
    assert cache.get("b", loader("b")) == ("model b", False)
    assert cache.get("a", loader("a")) == ("model a", True)   # a is now the most recent
    assert cache.get("c", loader("c")) == ("model c", False)  # evicts b, the least recent
    assert cache.keys() == ["a", "c"]
    assert cache.get("b", loader("b"))[1] is False
    assert loads == ["a", "b", "c", "b"]


def test_predict_reuses_the_loaded_model(session_workspace, tiny_dataset, tiny_run):
    """Two predictions with a real run: the second reuses the Paddle model (and gives the same boxes);
    a checkpoint written again is a new key, so it is loaded afresh."""
    ws = session_workspace
    image = sorted((ws.datasets / tiny_dataset).rglob("*.jpg"))[0]
    cache = PredictorCache()
    src = find_source(ws, "run", tiny_run.name)
    first, reused1, load_s = predict_one(ws, cache, src, image, 0.0)
    second, reused2, load_s2 = predict_one(ws, cache, src, image, 0.0)
    assert (reused1, reused2) == (False, True) and load_s > 0 and load_s2 == 0
    assert first["boxes"] and first["boxes"] == second["boxes"]
    assert first["vis_path"] != second["vis_path"]  # each call has its own folder
    st = src.weights.stat()
    os.utime(src.weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # the checkpoint was rewritten
    try:
        _, reused3, _ = predict_one(ws, cache, find_source(ws, "run", tiny_run.name), image, 0.0)
        assert reused3 is False
    finally:
        os.utime(src.weights, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_only_the_newest_prediction_folders_are_kept(workspace, tmp_path):
    from toolbox.ui.predictors import Source

    src = Source("export", "e", workspace.exports / "e", workspace.exports / "e" / "model.onnx")
    made = [new_output_dir(workspace, src) for _ in range(KEEP_PER_MODEL + 5)]
    left = sorted(p.name for p in (workspace.root / "predictions" / "export-e").iterdir())
    assert len(left) == KEEP_PER_MODEL
    assert left == sorted(p.name for p in made[-KEEP_PER_MODEL:])  # the newest ones
    other = Source("run", "r", workspace.runs / "r", workspace.runs / "r" / "w")
    new_output_dir(workspace, other)
    assert len(list((workspace.root / "predictions" / "export-e").iterdir())) == KEEP_PER_MODEL  # per model
