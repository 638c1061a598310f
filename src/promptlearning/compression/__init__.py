"""Making a model smaller and faster for deployment: structured pruning (:mod:`.prune`) measured on
calibration text (:mod:`.calibration`), recovery by distillation (:mod:`.distill`), and exports for
other runtimes (:mod:`.gguf_export` for llama.cpp, :mod:`.onnx_export` for onnxruntime). The
quantized layers and the compressed model directory every loader reads live with the models
(:mod:`promptlearning.models.quantized`, :mod:`promptlearning.models.compressed`). The ``compress``
task kind runs the steps in order."""
