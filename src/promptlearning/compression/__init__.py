"""Making a model smaller and faster for deployment: structured pruning (:mod:`.prune`), recovery
by distillation (:mod:`.distill`), quantization (:mod:`.quantize`) and the compressed model
directory every loader reads (:mod:`.store`). The ``compress`` task kind runs them in order."""
