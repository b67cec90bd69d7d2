"""The engine step: training (train.py), COCO evaluation (evaluate.py) and prediction (predict.py).

Public API in api.py (`toolbox.train`, `toolbox.evaluate`, `toolbox.predict`); CLI in cli.py.
"""
