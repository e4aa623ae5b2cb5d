#!/usr/bin/env python3
"""Write non-zero lora_B factors for a low-rank-only run (slc train --init).

With SLTrain's initialisation (B = 0) and no sparse part (--sp-ratio 0) every
fused layer starts as W = 0, and every block of the LLaMA then outputs zero:
the gradients of all lora_A and lora_B are exactly zero and stay so (a saddle
point), so only the embeddings, norms and lm_head train. This script draws
B ~ N(0, s^2) per layer, with s chosen so that W = B·A·scale has the standard
deviation of the dense init (initializer_range), given slc's A ~ U(±1/√in):
Var(W) = scale²·r·s²/(3·in). slc keeps its own seeded A (names absent from
the file keep their seeded values).

usage: lowrank_init.py CONFIG.json RANK LORA_ALPHA SEED OUT.safetensors
Standard library only; the file is written to a temporary name and renamed.
"""

import array
import json
import math
import os
import random
import struct
import sys


def shapes(cfg):
    """(name, out, in) of every Linear SLTrain fuses, with HF names."""
    d, ff, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    for i in range(n):
        p = f"model.layers.{i}."
        for m in ("q", "k", "v", "o"):
            yield f"{p}self_attn.{m}_proj", d, d
        yield f"{p}mlp.gate_proj", ff, d
        yield f"{p}mlp.up_proj", ff, d
        yield f"{p}mlp.down_proj", d, ff


def main(argv):
    if len(argv) != 6:
        sys.exit("usage: lowrank_init.py CONFIG.json RANK LORA_ALPHA SEED OUT.safetensors")
    config, rank, alpha, seed, out = argv[1], int(argv[2]), float(argv[3]), int(argv[4]), argv[5]
    with open(config) as f:
        cfg = json.load(f)
    std = cfg.get("initializer_range", 0.02)
    scale = alpha / rank
    rng = random.Random(seed)
    header, blobs, offset = {}, [], 0
    for name, n_out, n_in in shapes(cfg):
        s = std / (scale * math.sqrt(rank / (3.0 * n_in)))
        b = array.array("f", (rng.gauss(0.0, s) for _ in range(n_out * rank)))
        if sys.byteorder != "little":
            b.byteswap()
        data = b.tobytes()
        header[name + ".lora_B"] = {"dtype": "F32", "shape": [n_out, rank], "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for data in blobs:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv)
