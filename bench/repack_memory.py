"""Memory onnxruntime keeps for INT4 MatMulNBits weights at accuracy level 0 and 4, on the CPU it runs on.

Builds two graphs of E2B-sized MatMulNBits nodes (K 1536, N 6144, block 32, float scales, no zero points, as the
q4 exports carry), a small and a large one, and loads each at each level in a fresh process. The growth of
anonymous RSS from the small to the large graph, over the INT4 bytes it adds, is what the kernel keeps per weight
byte (the fixed costs of the runtime cancel out). Needs only numpy, onnx and onnxruntime, so it also runs inside
the emulated Raspberry Pi OS of `make test-arm64` (Cortex-A76 features, as on a Pi 5):

    R=/var/cache/edge-agent-arm64/rootfs; cp bench/repack_memory.py $R/tmp/
    mount -t proc proc $R/proc && mount --bind deploy/arm64/cpuinfo-pi5 $R/proc/cpuinfo
    QEMU_CPU=cortex-a76 chroot $R /opt/edge-agent/bin/python /tmp/repack_memory.py
    umount $R/proc/cpuinfo $R/proc

Under qemu the runtime's own growth differs, which is why only the difference between the two graphs is read.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

K, N, BLOCK = 1536, 6144, 32


def build(folder: Path, layers: int, level: int) -> Path:
    """A chain of `layers` MatMulNBits nodes with random INT4 weights, saved with external data."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, current = [], [], "x"
    for index in range(layers):
        packed = rng.integers(0, 255, size=(N, K // BLOCK, BLOCK // 2), dtype=np.uint8)
        scales = rng.random((N, K // BLOCK), dtype=np.float32) * 0.01
        weights += [numpy_helper.from_array(packed, f"b{index}"), numpy_helper.from_array(scales, f"s{index}")]
        attrs = {"K": K, "N": N, "bits": 4, "block_size": BLOCK, "accuracy_level": level}
        matmul = helper.make_node(
            "MatMulNBits",
            ["x" if index == 0 else current, f"b{index}", f"s{index}"],
            [f"y{index}"],
            domain="com.microsoft",
            **attrs,
        )
        cut = helper.make_node("Slice", [f"y{index}", "start", "end", "axis"], [f"x{index}"])
        nodes += [matmul, cut]
        current = f"x{index}"
    weights += [
        numpy_helper.from_array(np.array([value]), name) for name, value in (("start", 0), ("end", K), ("axis", -1))
    ]
    graph = helper.make_graph(
        nodes,
        "repack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, None)],
        weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10  # readable by older runtimes too
    path = folder / f"mnb{layers}_level{level}.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + "_data", size_threshold=1024)
    return path


def status_mb() -> dict[str, float]:
    """Resident memory of this process by kind, MiB (Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(line.split()[1]) / 1024
    return fields


def measure(path: Path) -> None:
    """Child: load `path`, run it once, print the growth (MiB) as JSON."""
    import numpy as np
    import onnxruntime as ort

    before = status_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.ones((1, K), np.float32)})
    after = status_mb()
    print(
        json.dumps({"anon_mb": after["RssAnon"] - before["RssAnon"], "file_mb": after["RssFile"] - before["RssFile"]})
    )


def main() -> None:
    """Build, measure in fresh processes, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=8, help="MatMulNBits nodes in the small graph")
    parser.add_argument("--large", type=int, default=32, help="MatMulNBits nodes in the large graph")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    import onnxruntime as ort

    added_int4 = (args.large - args.small) * N * K / 2 / 2**20
    print(
        f"{platform.machine()}, onnxruntime {ort.__version__}: {args.large - args.small} nodes of {K}x{N} at block "
        f"{BLOCK} add {added_int4:.0f} MiB of INT4 weights"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for level in (0, 4):
            grown = {}
            for layers in (args.small, args.large):
                path = build(Path(tmp), layers, level)
                out = (
                    subprocess.run(
                        [sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, check=True
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                grown[layers] = json.loads(out)["anon_mb"]
            per_int4 = (grown[args.large] - grown[args.small]) / added_int4
            print(f"  accuracy level {level}: anonymous memory {per_int4:.2f} x the INT4 bytes")


if __name__ == "__main__":
    main()
