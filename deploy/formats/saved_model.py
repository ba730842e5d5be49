"""``--format saved_model``: a TensorFlow SavedModel folder whose ``serving_default`` takes uint8 frames."""

from __future__ import annotations

import collections

from data_tools.io import atomic_directory
from deploy.formats.base import ExportFormat, ExportJob, Written
from deploy.formats.serving import serving_function


def save_module(model, directory: str):
    """Save the serving function (uint8 frames in) as a SavedModel in ``directory``; return the function."""
    import tensorflow as tf  # heavy: only when exporting

    serve, _ = serving_function(model)
    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, directory, signatures={"serving_default": serve})
    return serve


def graph_ops(serve) -> dict[str, int]:
    ops = collections.Counter(op.type for op in serve.get_concrete_function().graph.get_operations())
    return {k: v for k, v in ops.items() if k not in ("Placeholder", "Identity", "NoOp", "ReadVariableOp")}


def write(job: ExportJob) -> Written:
    with atomic_directory(job.out, job.verify) as tmp:
        ops = graph_ops(save_module(job.model, tmp))
    return Written(ops, job.out)


FORMAT = ExportFormat("saved_model", "", "tensorflow", False, 1e-4, "TensorFlow SavedModel directory (model.export)",
                      write)
