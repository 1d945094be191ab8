#!/usr/bin/env python3
"""Test helper of caq-onnx (run by onnx/tests/python.rs): builds ONNX models with onnx.helper and
computes their reference outputs with onnx.reference.ReferenceEvaluator; checks models that caq
exported with onnx.checker and evaluates them the same way.

    make_models.py make OUT_DIR
        writes OUT_DIR/<name>.onnx and OUT_DIR/manifest.json: for every model its file, the flat
        input it was evaluated on, the flat reference output, or the error text caq must give.
    make_models.py check MODEL.onnx INPUT.json OUT.json
        onnx.checker.check_model(full_check=True), then the reference output for the flat input
        in INPUT.json ({"input": [...]}, reshaped to the model's input with N = 1) into OUT.json.

Needs the onnx (1.17) and numpy packages: python3 -m pip install onnx==1.17.0 numpy
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

RNG = np.random.default_rng(20261122)


def weights(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def value(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


# IR version of each opset used (onnx/onnx docs/Versioning.md).
IR_VERSION = {13: 7, 15: 8}


def model(name, nodes, inits, input_dims, output_dims, opset=13):
    graph = helper.make_graph(
        nodes, name, [value("x", input_dims)], [value("y", output_dims)], initializer=inits
    )
    if opset is None:
        m = helper.make_model(graph, producer_name="make_models.py")
    else:
        m = helper.make_model(
            graph,
            producer_name="make_models.py",
            opset_imports=[helper.make_opsetid("", opset)],
            ir_version=IR_VERSION[opset],
        )
    onnx.checker.check_model(m, full_check=True)
    return m


def bn_params(prefix, c):
    return [
        init(f"{prefix}_scale", RNG.uniform(0.5, 1.5, c).astype(np.float32)),
        init(f"{prefix}_bias", weights(c)),
        init(f"{prefix}_mean", weights(c)),
        init(f"{prefix}_var", RNG.uniform(0.5, 1.5, c).astype(np.float32)),
    ]


def conv_bn_pool():
    """Conv with pads and bias, BatchNormalization, Relu, MaxPool, strided Conv without bias,
    AveragePool, Flatten, Gemm transB=1.

    Opset 15, not 13: onnx 1.17's ReferenceEvaluator runs BatchNormalization of opsets 9..13
    (BatchNormalization_9 in onnx/reference/ops/op_batch_normalization.py) with the batch's own
    statistics blended into the running ones whenever momentum is set, and the schema default
    sets it; from opset 14 it honours training_mode=0, the inference semantics caq folds."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["n1"], name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("AveragePool", ["r2"], ["p2"], name="pool2", kernel_shape=[3, 3]),
        helper.make_node("Flatten", ["p2"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("w1", weights(4, 3, 3, 3)),
        init("b1", weights(4)),
        *bn_params("bn", 4),
        init("w2", weights(6, 4, 3, 3)),
        init("w3", weights(5, 6)),
        init("b3", weights(5)),
    ]
    return model("conv_bn_pool", nodes, inits, [1, 3, 10, 10], [1, 5], opset=15)


def mlp_matmul():
    """MatMul + Add bias, Relu, Dropout, Gemm transB=0 with alpha/beta, BatchNormalization on a
    matrix, Identity; symbolic batch; the newest opset of onnx 1.17."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
        helper.make_node("Dropout", ["r1"], ["d1"], name="drop"),
        helper.make_node("Gemm", ["d1", "w2", "b2"], ["g2"], name="fc2", alpha=0.5, beta=2.0),
        helper.make_node("BatchNormalization", ["g2", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["n2"], name="bn2"),
        helper.make_node("Identity", ["n2"], ["y"], name="out"),
    ]
    inits = [
        init("w1", weights(20, 16)),
        init("b1", weights(1, 16)),
        init("w2", weights(16, 8)),
        init("b2", weights(8)),
        *bn_params("bn", 8),
    ]
    return model("mlp_matmul", nodes, inits, ["N", 20], ["N", 8], opset=None)


def residual_reshape():
    """A residual Add whose first operand is also read before its Relu (so that Relu stays a
    node), a Relu folded into the Add, AveragePool, Reshape to [0, -1], Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "c1"], ["s"], name="res"),
        helper.make_node("Relu", ["s"], ["rs"], name="relu_res"),
        helper.make_node("AveragePool", ["rs"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("w1", weights(4, 2, 3, 3)),
        init("b1", weights(4)),
        init("w2", weights(4, 4, 3, 3)),
        init("b2", weights(4)),
        init("flat_shape", np.array([0, -1], dtype=np.int64)),
        init("w3", weights(3, 64)),
        init("b3", weights(3)),
    ]
    return model("residual_reshape", nodes, inits, [1, 2, 8, 8], [1, 3])


def keras_pool():
    """The tail of Keras' DS-CNN as tf2onnx writes it: a pointwise Conv, Relu, an AveragePool
    whose kernel_shape and strides are the whole non-square map, Flatten, Gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("AveragePool", ["r1"], ["p"], name="pool", kernel_shape=[5, 3],
                         strides=[5, 3]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("w1", weights(4, 3, 1, 1)),
        init("b1", weights(4)),
        init("w2", weights(2, 4)),
        init("b2", weights(2)),
    ]
    return model("keras_pool", nodes, inits, [1, 3, 5, 3], [1, 2])


def softmax():
    """An operator caq does not have: the import must fail naming the node."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="sm", axis=1),
    ]
    inits = [init("w", weights(4, 6)), init("b", weights(4))]
    return model("softmax", nodes, inits, [1, 6], [1, 4])


def reference(m, x):
    return ReferenceEvaluator(m).run(None, {m.graph.input[0].name: x})[0]


def input_dims(m):
    return [d.dim_value if d.dim_value > 0 else 1 for d in m.graph.input[0].type.tensor_type.shape.dim]


def make(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    manifest = []
    for build in (conv_bn_pool, mlp_matmul, residual_reshape, keras_pool, softmax):
        m = build()
        name = m.graph.name
        path = os.path.join(out_dir, f"{name}.onnx")
        onnx.save(m, path)
        entry = {"name": name, "file": path}
        if name == "softmax":
            entry["error_contains"] = "node 'sm' (Softmax): operator not supported"
        else:
            x = RNG.standard_normal(input_dims(m)).astype(np.float32)
            entry["input"] = x.flatten().tolist()
            entry["output"] = reference(m, x).flatten().astype(float).tolist()
        manifest.append(entry)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def check(model_path, input_path, out_path):
    m = onnx.load(model_path)
    onnx.checker.check_model(m, full_check=True)
    with open(input_path) as f:
        flat = np.asarray(json.load(f)["input"], dtype=np.float32)
    x = flat.reshape(input_dims(m))
    y = reference(m, x)
    with open(out_path, "w") as f:
        json.dump({"output": y.flatten().astype(float).tolist(), "opset": m.opset_import[0].version}, f)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        check(*sys.argv[2:])
    else:
        sys.exit(__doc__)
