#!/usr/bin/env python3
"""Builds worker/models/yunet_n.bin, the face detector's weights, from YuNet's ONNX export, and the
reference outputs the detector's test compares against.

YuNet-n (libfacedetection.train, Apache-2.0: LICENSE-yunet beside this script) is a small
convolutional network: 3x3 and depthwise 3x3 convolutions, 1x1 convolutions, ReLU, 2x2 max pooling
and nearest-neighbour upsampling added to a skip connection, with heads at strides 8, 16 and 32.
imgfleet runs it in pure Rust (worker/src/pipeline/face/net.rs). This script writes the network as
the list of those operations, in order, with their weights; it drops what only reshapes outputs
(Transpose, Reshape, the shape arithmetic), the Sigmoid the detector applies itself, and the
landmark heads imgfleet does not use.

Usage (needs `onnx`, `onnxruntime`, `numpy`, `Pillow`):
    git clone https://github.com/ShiqiYu/libfacedetection.train
    git -C libfacedetection.train checkout 0047ac24afb1a50a0c6105001c89d1b5b805dbf1
    python3 worker/models/make_yunet.py libfacedetection.train/onnx/yunet_n_dynamic.onnx

Writes worker/models/yunet_n.bin, and worker/tests/fixtures/yunet/*.png (network inputs cut from
the crop evaluation photos) with *.heads (onnxruntime's outputs on the unmodified ONNX for each).

File format, little-endian: b"YUNET-N1", u32 count of operations, then each operation:
  0 conv:     u32 input, output, in_channels, out_channels, kernel, stride, pad, groups, relu;
              f32 weights [out][in/groups][kernel][kernel]; f32 bias [out]
  1 maxpool:  u32 input, output (2x2, stride 2)
  2 upadd:    u32 small, large, output (small upsampled x2, nearest, plus large)
then u32 count of outputs (9: cls, obj, bbox at strides 8, 16, 32) and their tensor ids. Tensor 0
is the input (BGR, 0-255, channels first).
"""

import hashlib
import os
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from PIL import Image

ONNX_SHA256 = "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12"
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "yunet")
FACES = os.path.join(HERE, "..", "tests", "fixtures", "faces")
OUTPUTS = ["cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32"]
# Network inputs for the reference check: photos from the crop evaluation set, longest side 160.
REFERENCE_PHOTOS = ["02-headshot-suit.jpg", "04-three-astronauts.jpg", "11-woman-profile.jpg", "27-plane-noface.jpg"]
SIDE = 160


def convert(model):
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    ids = {"input": 0}
    ops = []

    def tid(name):
        if name not in ids:
            ids[name] = len(ids)
        return ids[name]

    # What the kept outputs need: walk back from each output through the ops that only reshape.
    def source(name):
        n = producers.get(name)
        while n is not None and n.op_type in ("Sigmoid", "Reshape", "Transpose"):
            name = n.input[0]
            n = producers.get(name)
        return name

    needed = set()

    def need(name):
        if name in needed or name == "input" or name in init:
            return
        needed.add(name)
        n = producers[name]
        for i in n.input[:1] if n.op_type in ("Conv", "Relu", "MaxPool") else n.input[:2]:
            need(i)

    heads = [source(o) for o in OUTPUTS]
    for h in heads:
        need(h)
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    fused = set()
    for n in model.graph.node:
        if n.output[0] not in needed or n.output[0] in fused:
            continue
        a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
        if n.op_type == "Conv":
            w = init[n.input[1]].astype(np.float32)
            b = init[n.input[2]].astype(np.float32) if len(n.input) > 2 else np.zeros(w.shape[0], np.float32)
            k = a["kernel_shape"]
            assert k[0] == k[1] and a.get("strides", [1, 1])[0] == a.get("strides", [1, 1])[1]
            pads = a.get("pads", [0, 0, 0, 0])
            assert len(set(pads)) == 1, pads
            out = n.output[0]
            after = consumers.get(out, [])
            relu = len(after) == 1 and after[0].op_type == "Relu" and after[0].output[0] in needed
            if relu:
                fused.add(after[0].output[0])
                out = after[0].output[0]
            group = a.get("group", 1)
            fields = [tid(n.input[0]), tid(out), w.shape[1] * group, w.shape[0], k[0], a.get("strides", [1, 1])[0],
                      pads[0], group, int(relu)]
            ops.append((0, fields, [w.ravel(), b.ravel()]))
        elif n.op_type == "MaxPool":
            assert a["kernel_shape"] == [2, 2] and a["strides"] == [2, 2] and not a.get("ceil_mode", 0)
            ops.append((1, [tid(n.input[0]), tid(n.output[0])], []))
        elif n.op_type == "Add":
            up = producers[n.input[1]]
            assert up.op_type == "Resize", up.op_type
            ra = {x.name: onnx.helper.get_attribute_value(x) for x in up.attribute}
            assert ra["mode"] == b"nearest", ra
            ops.append((2, [tid(up.input[0]), tid(n.input[0]), tid(n.output[0])], []))
        elif n.op_type in ("Resize", "Relu"):
            assert n.op_type == "Resize" or n.output[0] in fused
        else:
            raise SystemExit(f"unexpected operation {n.op_type}")
    out = bytearray(b"YUNET-N1")
    out += struct.pack("<I", len(ops))
    for kind, fields, blobs in ops:
        out += struct.pack("<B", kind) + struct.pack(f"<{len(fields)}I", *fields)
        for blob in blobs:
            out += blob.astype("<f4").tobytes()
    out += struct.pack("<I", len(heads)) + struct.pack(f"<{len(heads)}I", *[ids[h] for h in heads])
    return bytes(out)


def network_input(photo):
    """The photo at most SIDE a side (Pillow's Lanczos), padded with black to multiples of 32."""
    img = Image.open(os.path.join(FACES, photo)).convert("RGB")
    scale = SIDE / max(img.size)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    img = img.resize((w, h), Image.LANCZOS)
    canvas = Image.new("RGB", ((w + 31) // 32 * 32, (h + 31) // 32 * 32))
    canvas.paste(img, (0, 0))
    return canvas


def main():
    path = sys.argv[1]
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != ONNX_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {ONNX_SHA256} (onnx/yunet_n_dynamic.onnx at the commit above)")
    model = onnx.load_from_string(data)
    blob = convert(model)
    open(os.path.join(HERE, "yunet_n.bin"), "wb").write(blob)
    print("yunet_n.bin", len(blob), "bytes")
    os.makedirs(FIXTURES, exist_ok=True)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for photo in REFERENCE_PHOTOS:
        canvas = network_input(photo)
        name = os.path.splitext(photo)[0]
        canvas.save(os.path.join(FIXTURES, name + ".png"), optimize=True)
        x = np.asarray(canvas, dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1)[None].copy()
        outs = session.run(OUTPUTS, {"input": x})
        with open(os.path.join(FIXTURES, name + ".heads"), "wb") as f:
            for o in outs:
                f.write(np.ascontiguousarray(o, dtype="<f4").tobytes())
        print(name, canvas.size, [o.shape for o in outs])


if __name__ == "__main__":
    main()
