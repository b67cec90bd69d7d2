"""RF-DETR, the second model family, through the official `rfdetr` package (PyTorch).

The toolbox does not port RF-DETR: it calls rfdetr as it calls Paddle for RT-DETR, and keeps the public
contract (run folder, events, metrics, class indexing) the same. One job a module: model (build/load),
dataset (the Roboflow layout rfdetr reads), train, evaluate, predict; dispatch says which family a
pipelines/ config or a run belongs to.
"""
