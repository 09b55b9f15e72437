"""Deployment of exported models: ``deploy.yaml`` schema, predictors, serving.

A package of the project (``pip install -e .``) that never imports ``paddle_stdc`` or
PaddleSeg: a production image needs only the export folder, one runtime (Paddle Inference, ONNX
Runtime or OpenVINO), NumPy, OpenCV and PyYAML.

    deploy.schema        deploy.yaml: keys, defaults, version, writer, reader/validator
    deploy.images        which images a command works on, and their output names
    deploy.visual        masks as pictures: palette PNG and colour overlay
    deploy.python        predictors (Paddle Inference, ONNX Runtime, OpenVINO), the backend table
                         (backends.py), infer.py, video, quantize.py
    deploy.serving       Ray Serve application (FastAPI ingress, batching, limits, web page)
"""
