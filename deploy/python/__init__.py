"""Predictors over an export folder (``deploy.python.predictor``), the ``infer.py`` CLI and
INT8 quantization (``quantize.py``)."""
