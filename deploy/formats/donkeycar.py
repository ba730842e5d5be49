"""``--format donkeycar``: a TFLite pilot that donkeycar's ``KerasLinear(interpreter=TfLite())`` drives."""

from __future__ import annotations

from deploy.formats.base import ExportFormat, ExportJob, Written
from deploy.formats.tflite import tflite_bytes, write_flatbuffer

# The throttle a steering-only model's donkeycar pilot returns: the constant our simulator logs record
# (e2e_drive.sim.record) and a moderate cruise on a donkeycar's [-1, 1] throttle.
DEFAULT_THROTTLE = 0.3


def write(job: ExportJob) -> Written:
    has_throttle = "throttle" in job.output_names
    written = write_flatbuffer(job, tflite_bytes(job.model, "tflite", None, donkeycar_throttle=job.throttle))
    shape = "x".join(map(str, job.model.input_shape[1:]))
    throttle = ("the model's throttle head" if has_throttle
                else f"constant {job.throttle:g}: the model has no throttle head")
    job.notes.append(f"donkeycar pilot: signature serving_default, img_in = frame / 255 (float32, 1x{shape}), "
                     f"outputs n_outputs0 (angle), n_outputs1 (throttle = {throttle}); load it with "
                     "KerasLinear(interpreter=TfLite()) and myconfig.py DEFAULT_MODEL_TYPE = 'linear' with a "
                     ".tflite model")
    return written


FORMAT = ExportFormat("donkeycar", ".tflite", "donkeycar (on the car)", False, 1e-4,
                      "donkeycar KerasLinear pilot (TFLite: img_in = frame/255 -> n_outputs0 angle, n_outputs1 "
                      "throttle; a steering-only model gets a constant --throttle)", write)
