#!/usr/bin/env python3
"""Run an slc ONNX export with onnxruntime and compare its logits with PyTorch's.

onnxruntime is not in Debian; a machine that has it (the GPU machine's image)
runs this. From one checkpoint:

    slc export CKPT --format onnx -o model.onnx          (or --factored)
    slc export CKPT --format hf -o hf
    python3 scripts/onnx-ort-check.py model.onnx hf

The reference is tools/torchref's LLaMA loaded with the HF export's weights (a
checkpoint of a LLaMA config; an ONNX model's checkpoint has no HF export).
Exit status 1 when the logits differ by more than 1e-4 of their scale.
"""

import os
import sys

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "torchref"))
import model as M  # noqa: E402
import safetensors_io as S  # noqa: E402


def main(onnx_path, hf_dir):
    sess = ort.InferenceSession(onnx_path, providers=ort.get_available_providers())
    inp = sess.get_inputs()[0]
    b, l = inp.shape
    cfg = M.LlamaConfig.from_json(os.path.join(hf_dir, "config.json"))
    m = M.LlamaForCausalLM(cfg)
    state = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in S.load(os.path.join(hf_dir, "model.safetensors")).items()}
    m.load_state_dict(state)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(b, l), dtype=np.int64)
    got = sess.run(["logits"], {inp.name: ids})[0]
    with torch.no_grad():
        want = m.logits(torch.from_numpy(ids)).numpy()
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"onnxruntime {ort.__version__} ({sess.get_providers()[0]}): logits [{b}, {l}, {cfg.vocab_size}] within {rel:.3g} of PyTorch's (relative to their scale)")
    return 0 if rel <= 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
