"""``e2e-drive bench latency``: batch-1 p50/p99 and batch-32 throughput per artifact, side by side, against a CPU floor.

The floor is the model's multiply-accumulates (Conv/ConvTranspose/MatMul/Gemm of the ONNX graph, shapes from ONNX
shape inference at batch 1) divided by a float32 matmul rate measured in the same run on onnxruntime (a square
MatMul), so the ONNX batch-1 latency reads as a multiple of what the arithmetic alone needs.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)


def bench_frames(shape: Sequence[int], count: int, seed: int = 0) -> np.ndarray:
    """The frames benchmarks run on: simulator frames shaped ``shape`` (H, W, 3)."""
    from deploy.parity import load_frames

    return load_frames(None, shape, count=count, seed=seed).frames


def time_predictor(predictor, frames: np.ndarray, runs: int = 50, batch: int = 32, batch_runs: int = 5,
                   warmup: int = 3) -> dict[str, float]:
    """Batch-1 latency percentiles (ms) over ``runs`` calls and frames/s at ``batch``."""
    one = frames[:1]
    big = np.resize(frames, (batch, *frames.shape[1:]))
    for _ in range(warmup):
        predictor(one)
        predictor(big)
    times = []
    for i in range(runs):
        frame = frames[i % len(frames)][None]
        start = time.perf_counter()
        predictor(frame)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batch_runs):
        predictor(big)
    per_batch = (time.perf_counter() - start) / batch_runs
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "batch": batch, "throughput_fps": batch / per_batch}


def onnx_macs(path_or_proto) -> dict[str, Any]:
    """Multiply-accumulates of Conv/ConvTranspose/MatMul/Gemm at batch 1, from ONNX shape inference."""
    import onnx

    proto = onnx.load(os.fspath(path_or_proto)) if isinstance(path_or_proto, (str, os.PathLike)) else path_or_proto
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs, unknown = 0, []
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        out = shapes.get(node.output[0])
        a = shapes.get(node.input[0])
        w = shapes.get(node.input[1])
        if not out or not w or any(d is None for d in out) or any(d is None for d in w):
            unknown.append(node.name or node.op_type)
            continue
        if node.op_type == "Conv":
            macs += int(np.prod(out)) * int(np.prod(w[1:]))  # out elements x (Cin/groups x kh x kw)
        elif node.op_type == "ConvTranspose":
            macs += int(np.prod(a)) * int(np.prod(w[1:])) if a and None not in a else 0
        elif node.op_type == "Gemm":
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            k = a[0] if trans_a else a[-1]
            macs += int(np.prod(out)) * int(k)
        else:
            macs += int(np.prod(out)) * int(w[-2])
    return {"macs": macs, "flops": 2 * macs, "unknown_nodes": unknown}


def matmul_rate(size: int = 512, runs: int = 20) -> dict[str, float]:
    """Float32 GFLOP/s of an onnxruntime MatMul (size x size x size) on this CPU, best of ``runs``."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((size, size), np.float32), "b": rng.standard_normal((size, size), np.float32)}
    session.run(None, feeds)
    best = min(_timed(lambda: session.run(None, feeds)) for _ in range(runs))
    numpy_best = min(_timed(lambda: feeds["a"] @ feeds["b"]) for _ in range(runs))
    flops = 2.0 * size ** 3
    return {"size": size, "onnxruntime_gflops": flops / best / 1e9, "numpy_gflops": flops / numpy_best / 1e9}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_latency(artifacts: Sequence[str], runs: int = 50, batch: int = 32, seed: int = 0) -> dict[str, Any]:
    """Time every artifact on the same frames; the ONNX batch-1 p50 as a multiple of the CPU floor.

    When no ONNX artifact is given but a .keras one is, an ONNX export of it (temporary) provides the MAC count.
    """
    from deploy import load_predictor

    predictors = [load_predictor(a) for a in artifacts]
    shapes = {p.input_shape for p in predictors}
    if len(shapes) != 1:
        raise ValueError(f"artifacts take different frame shapes {sorted(shapes)}; compare one model's exports")
    frames = bench_frames(next(iter(shapes)), count=max(batch, 8), seed=seed)
    rows = []
    for artifact, predictor in zip(artifacts, predictors):
        log.info("bench latency: %s (%s) ...", artifact, predictor.runtime)
        rows.append({"artifact": os.fspath(artifact), "runtime": predictor.runtime,
                     **time_predictor(predictor, frames, runs=runs, batch=batch)})
    rate = matmul_rate()
    onnx_path = next((a for a in artifacts if os.fspath(a).endswith(".onnx")), None)
    macs = None
    if onnx_path is not None:
        macs = onnx_macs(onnx_path)
    else:
        keras_path = next((a for a in artifacts if os.fspath(a).endswith(".keras")), None)
        if keras_path is not None:
            from deploy.export import export_onnx_proto
            from e2e_drive.models import load_model

            macs = onnx_macs(export_onnx_proto(load_model(keras_path)))
    floor = None
    if macs is not None:
        floor_ms = macs["flops"] / (rate["onnxruntime_gflops"] * 1e9) * 1e3
        floor = {**macs, "floor_ms": floor_ms, "matmul": rate}
        for row in rows:
            row["x_floor"] = row["p50_ms"] / floor_ms if floor_ms > 0 else None
    baseline = rows[0]["p50_ms"]
    for row in rows:
        row["vs_first"] = row["p50_ms"] / baseline
    return {"frame_shape": list(next(iter(shapes))), "runs": runs, "artifacts": rows, "cpu_floor": floor,
            "cpu_count": os.cpu_count()}


def format_latency(report: dict[str, Any]) -> str:
    lines = [f"{'artifact':<40} {'runtime':<12} {'p50 ms':>8} {'p99 ms':>8} {'fps@' + str(report['artifacts'][0]['batch']):>9}"
             f" {'x first':>8} {'x floor':>8}"]
    for r in report["artifacts"]:
        x_floor = f"{r['x_floor']:.2f}" if r.get("x_floor") is not None else "-"
        lines.append(f"{os.path.basename(r['artifact'])[:40]:<40} {r['runtime']:<12} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}"
                     f" {r['throughput_fps']:>9.1f} {r['vs_first']:>8.2f} {x_floor:>8}")
    floor = report.get("cpu_floor")
    if floor:
        lines.append(f"CPU floor: {floor['macs'] / 1e6:.1f} M MACs / {floor['matmul']['onnxruntime_gflops']:.1f} GFLOP/s "
                     f"(onnxruntime {floor['matmul']['size']}^3 MatMul; numpy {floor['matmul']['numpy_gflops']:.1f}) "
                     f"= {floor['floor_ms']:.3f} ms at batch 1" +
                     (f"; {len(floor['unknown_nodes'])} node(s) of unknown shape not counted" if floor["unknown_nodes"] else ""))
    return "\n".join(lines)
