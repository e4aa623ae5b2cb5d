#!/usr/bin/python3
"""Self-test of tools/torchref: /usr/bin/python3 tools/torchref/selftest.py [-v]

Checks the SLTrain custom autograd function against autograd through the dense
weight (torch.autograd.gradcheck and a direct comparison, float64), the seed's
parameter counts for llama_60m, the safetensors reader/writer, the schedules,
the batching contract, --init loading errors, and that train.py is bit-for-bit
deterministic on testdata/configs/llama_tiny.json. Runs in a few seconds.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import safetensors_io as st  # noqa: E402
import train as tr  # noqa: E402
from model import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    SLTrainOptions,
    SpLoRaFunction,
    SpLoRaLinear,
    count_params,
    init_weights,
    sparse_nnz,
)

CONFIGS = os.path.join(ROOT, "testdata", "configs")


def dense_reference(x, b, a, v, idx, scale):
    """y = x·Wᵀ with W = B·A·scale + scatter(v), all through plain autograd."""
    s = torch.zeros(b.shape[0] * a.shape[1], dtype=x.dtype).index_put((idx,), v)
    w = b @ a * scale + s.view(b.shape[0], a.shape[1])
    return x @ w.t()


class SpLoRaFunctionTest(unittest.TestCase):
    def factors(self, out_f=7, in_f=5, r=3, nnz=9, batch=(2, 4)):
        g = torch.Generator().manual_seed(1)

        def rnd(*shape):
            return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

        idx = torch.sort(torch.randperm(out_f * in_f, generator=g)[:nnz]).values
        return rnd(*batch, in_f), rnd(out_f, r), rnd(r, in_f), rnd(nnz), idx

    def test_gradcheck(self):
        for scale in (1.0, 32 / 3):
            x, b, a, v, idx = self.factors()
            ok = torch.autograd.gradcheck(lambda *t: SpLoRaFunction.apply(*t, idx, scale), (x, b, a, v), eps=1e-6, atol=1e-8, rtol=1e-7)
            self.assertTrue(ok)

    def test_equals_dense_autograd(self):
        x, b, a, v, idx = self.factors(out_f=11, in_f=6, r=4, nnz=20, batch=(3, 5))
        scale = 2.5
        dy = torch.randn(3, 5, 11, dtype=torch.float64)
        y1 = SpLoRaFunction.apply(x, b, a, v, idx, scale)
        g1 = torch.autograd.grad(y1, (x, b, a, v), dy)
        y2 = dense_reference(x, b, a, v, idx, scale)
        g2 = torch.autograd.grad(y2, (x, b, a, v), dy)
        self.assertTrue(torch.allclose(y1, y2, rtol=1e-12, atol=1e-12))
        for name, p, q in zip(("x", "B", "A", "values"), g1, g2):
            self.assertTrue(torch.allclose(p, q, rtol=1e-12, atol=1e-12), name)

    def test_layer_init(self):
        layer = SpLoRaLinear(40, 30, SLTrainOptions(rank=4, sp_ratio=0.1, lora_alpha=8))
        layer.reset_parameters(torch.Generator().manual_seed(0))
        idx = layer.sparse_index
        self.assertEqual(idx.numel(), 120)
        self.assertTrue(bool((idx[1:] > idx[:-1]).all()) and idx[0] >= 0 and idx[-1] < 1200)
        self.assertEqual(float(layer.lora_B.abs().max()), 0.0)
        bound = 1 / math.sqrt(40)
        self.assertLessEqual(float(layer.lora_A.abs().max()), bound)
        self.assertLessEqual(float(layer.sparse_value.abs().max()), bound)
        self.assertEqual(layer.scale, 2.0)


def numpy_llama_loss(sd, cfg, ids, scale=None):
    """The DESIGN.md forward written independently in numpy loops (float64).

    sd: name -> array; SLTrain layers are given densely as '<module>.weight'.
    """
    d, h = cfg.hidden_size, cfg.num_attention_heads
    hd = d // h

    def norm(x, w):
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_norm_eps))

    def rope(x):  # x [L, hd]; y[i] = x[i]cos − x[i+hd/2]sin, y[i+hd/2] = x[i+hd/2]cos + x[i]sin
        y = np.empty_like(x)
        for p in range(x.shape[0]):
            for i in range(hd // 2):
                th = p * 10000.0 ** (-2.0 * i / hd)
                c, s = math.cos(th), math.sin(th)
                y[p, i] = x[p, i] * c - x[p, i + hd // 2] * s
                y[p, i + hd // 2] = x[p, i + hd // 2] * c + x[p, i] * s
        return y

    total, count = 0.0, 0
    for row in ids:
        x = sd["model.embed_tokens.weight"][row]
        L = len(row)
        for li in range(cfg.num_hidden_layers):
            p = f"model.layers.{li}."
            a = norm(x, sd[p + "input_layernorm.weight"])
            q, k, v = (a @ sd[p + f"self_attn.{n}_proj.weight"].T for n in "qkv")
            out = np.zeros((L, d))
            for hh in range(h):
                sl = slice(hh * hd, (hh + 1) * hd)
                qh, kh, vh = rope(q[:, sl]), rope(k[:, sl]), v[:, sl]
                for t in range(L):
                    sc = np.array([qh[t] @ kh[j] / math.sqrt(hd) for j in range(t + 1)])
                    e = np.exp(sc - sc.max())
                    out[t, sl] = (e / e.sum()) @ vh[: t + 1]
            x = x + out @ sd[p + "self_attn.o_proj.weight"].T
            a = norm(x, sd[p + "post_attention_layernorm.weight"])
            g = a @ sd[p + "mlp.gate_proj.weight"].T
            u = a @ sd[p + "mlp.up_proj.weight"].T
            x = x + (g / (1 + np.exp(-g)) * u) @ sd[p + "mlp.down_proj.weight"].T
        logits = norm(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T
        for t in range(L - 1):
            z = logits[t] - logits[t].max()
            total += -(z[row[t + 1]] - math.log(np.exp(z).sum()))
            count += 1
    return total / count


class ForwardTest(unittest.TestCase):
    def test_matches_numpy_reference(self):
        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
        ids = torch.from_numpy(np.random.default_rng(2).integers(0, cfg.vocab_size, size=(2, 9)))
        for sl in (None, SLTrainOptions(rank=3, sp_ratio=0.2, lora_alpha=6)):
            m = LlamaForCausalLM(cfg, sl, torch.float64)
            init_weights(m, torch.Generator().manual_seed(11))
            sd = {}
            for n, mod in m.named_modules():
                if isinstance(mod, SpLoRaLinear):
                    with torch.no_grad():
                        mod.lora_B.normal_(0, 0.2, generator=torch.Generator().manual_seed(4))
                    sd[n + ".weight"] = mod.dense_weight().numpy()
            for n, t in m.state_dict().items():
                sd.setdefault(n, t.numpy())
            want = numpy_llama_loss(sd, cfg, ids.numpy())
            got = float(m(ids))
            self.assertAlmostEqual(got, want, places=11, msg=f"sltrain={sl is not None}")


class ParamCountTest(unittest.TestCase):
    def test_llama_60m(self):
        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_60m.json"))
        self.assertEqual(count_params(LlamaForCausalLM(cfg)), 58_073_600)
        sl = LlamaForCausalLM(cfg, SLTrainOptions(rank=128, sp_ratio=0.03, lora_alpha=32))
        self.assertEqual(count_params(sl), 43_529_832)

    def test_nnz(self):
        self.assertEqual(sparse_nnz(512, 512, 0.03), 7864)
        self.assertEqual(sparse_nnz(512, 1376, 0.03), 21135)

    def test_targets(self):
        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
        m = LlamaForCausalLM(cfg, SLTrainOptions(rank=2, sp_ratio=0.1, lora_alpha=4))
        fused = sorted(n for n, mod in m.named_modules() if isinstance(mod, SpLoRaLinear))
        self.assertEqual(len(fused), 7 * cfg.num_hidden_layers)
        self.assertIn("lm_head.weight", m.state_dict())
        self.assertIn("model.embed_tokens.weight", m.state_dict())


class SafetensorsTest(unittest.TestCase):
    def test_roundtrip(self):
        tensors = {
            "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
            "f64": np.array([1.5, -2.25]),
            "i64": np.array([3, 1 << 40], dtype=np.int64),
            "i32": np.array([[-1]], dtype=np.int32),
            "bf": np.array([1.0, -3.140625, 1.00390625, float("inf")], dtype=np.float32),
            "scalar": np.array(2.0, dtype=np.float32),
        }
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "t.safetensors")
            st.save(p, tensors, dtypes={"bf": "BF16"}, metadata={"k": "v"})
            back, dts, meta = st.load_with_dtypes(p)
            with open(p, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
            self.assertEqual(n % 8, 0)
        self.assertEqual(meta, {"k": "v"})
        self.assertEqual(dts, {"f32": "F32", "f64": "F64", "i64": "I64", "i32": "I32", "bf": "BF16", "scalar": "F32"})
        for k, v in tensors.items():
            self.assertEqual(back[k].shape, v.shape, k)
        for k in ("f32", "f64", "i64", "i32", "scalar"):
            self.assertTrue(np.array_equal(back[k], tensors[k]), k)
        # 1.00390625 = 1 + 2^-8 is a tie between bf16 neighbours 1 and 1+2^-7: rounds to even (1).
        self.assertEqual(back["bf"].tolist(), [1.0, -3.140625, 1.0, float("inf")])

    def test_malformed(self):
        cases = {
            "short": b"\x01\x00",
            "huge header": (1 << 40).to_bytes(8, "little") + b"{}",
            "not json": (3).to_bytes(8, "little") + b"{x}",
            "bad dtype": self._file({"a": {"dtype": "Q8", "shape": [1], "data_offsets": [0, 1]}}, b"\x00"),
            "size mismatch": self._file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 8),
            "out of range": self._file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 4),
            "overlap": self._file(
                {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}, b"\x00" * 8
            ),
        }
        with tempfile.TemporaryDirectory() as d:
            for name, blob in cases.items():
                p = os.path.join(d, "x.safetensors")
                with open(p, "wb") as f:
                    f.write(blob)
                with self.assertRaises(st.SafetensorsError, msg=name):
                    st.load(p)

    @staticmethod
    def _file(header, data):
        h = json.dumps(header).encode()
        return len(h).to_bytes(8, "little") + h + data


class ScheduleTest(unittest.TestCase):
    def test_values(self):
        n, w, m = 10, 2, 0.1
        cos = tr.lr_lambda("cosine", w, n, m)
        self.assertEqual([cos(0), cos(1)], [0.0, 0.5])
        self.assertEqual(cos(2), 1.0)
        self.assertAlmostEqual(cos(6), m + (1 - m) * 0.5 * (1 + math.cos(math.pi * 4 / 8)), places=15)
        lin = tr.lr_lambda("linear", w, n, m)
        self.assertEqual([lin(0), lin(1), lin(2), lin(6), lin(9)], [0.0, 0.5, 1.0, 0.5, 0.125])
        lmin = tr.lr_lambda("linear-min", w, n, m)
        self.assertAlmostEqual(lmin(6), 0.1 + 0.9 * 0.5, places=15)
        self.assertEqual(tr.lr_lambda("cosine", 0, 4, 0.5)(0), 1.0)

    def test_lambdalr_first_update(self):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=0.5)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, tr.lr_lambda("cosine", 4, 10, 0.1))
        seen = []
        for _ in range(3):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        self.assertEqual(seen, [0.0, 0.125, 0.25])


class BatchingTest(unittest.TestCase):
    def test_rows_wrap(self):
        tokens = np.arange(23, dtype=np.int64)  # 5 rows of 4, tail of 3 dropped
        b = tr.Batches(tokens, batch_size=2, max_length=4)
        firsts = [b.take()[:, 0].tolist() for _ in range(4)]
        self.assertEqual(firsts, [[0, 4], [8, 12], [16, 0], [4, 8]])

    def test_too_short(self):
        with self.assertRaises(tr.UsageError):
            tr.Batches(np.arange(3, dtype=np.int64), 1, 4)


def tiny_files(d, peft="sltrain"):
    """An init file and a token stream for llama_tiny in directory d."""
    cfg_path = os.path.join(CONFIGS, "llama_tiny.json")
    cfg = LlamaConfig.from_json(cfg_path)
    sl = SLTrainOptions(rank=4, sp_ratio=0.1, lora_alpha=8) if peft == "sltrain" else None
    m = LlamaForCausalLM(cfg, sl)
    init_weights(m, torch.Generator().manual_seed(7))
    if sl is not None:
        with torch.no_grad():  # non-zero B so that every gradient path is exercised
            for mod in m.modules():
                if isinstance(mod, SpLoRaLinear):
                    mod.lora_B.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    init = os.path.join(d, f"init_{peft}.safetensors")
    st.save(init, tr.state_arrays(m))
    tokens = os.path.join(d, "tokens.npy")
    np.save(tokens, np.random.default_rng(5).integers(0, cfg.vocab_size, size=1000, dtype=np.int64))
    return cfg_path, init, tokens, m


class TrainTest(unittest.TestCase):
    def run_train(self, *extra):
        cmd = [sys.executable, "-B", os.path.join(HERE, "train.py"), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    def common(self, cfg, init, tokens):
        return [
            "--config", cfg, "--peft", "sltrain", "--rank", "4", "--sp-ratio", "0.1", "--lora-alpha", "8",
            "--init", init, "--tokens", tokens, "--batch-size", "2", "--total-batch-size", "4",
            "--max-length", "16", "--num-training-steps", "6", "--warmup-steps", "2", "--lr", "0.01",
            "--min-lr-ratio", "0.1", "--scheduler", "cosine", "--weight-decay", "0.1", "--grad-clipping", "0.5",
            "--threads", "2",
        ]  # fmt: skip

    def test_deterministic(self):
        with tempfile.TemporaryDirectory() as d:
            cfg, init, tokens, _ = tiny_files(d)
            outs = []
            for i in range(2):
                out, met = os.path.join(d, f"out{i}.safetensors"), os.path.join(d, f"m{i}.jsonl")
                r = self.run_train(*self.common(cfg, init, tokens), "--out", out, "--metrics", met)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(out, "rb") as f, open(met, "rb") as g:
                    outs.append((f.read(), g.read()))
            self.assertEqual(outs[0], outs[1])
            recs = [json.loads(line) for line in outs[0][1].decode().splitlines()]
            self.assertEqual([r["step"] for r in recs], [1, 2, 3, 4, 5, 6])
            self.assertEqual(recs[0]["lr"], 0.0)
            self.assertEqual(recs[1]["lr"], 0.005)
            self.assertTrue(all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in recs))
            back = st.load(os.path.join(d, "out0.safetensors"))
            first = st.load(init)
            self.assertEqual(list(back), list(first))  # same names, same order
            self.assertTrue(np.array_equal(back["model.layers.0.mlp.up_proj.sparse_index"], first["model.layers.0.mlp.up_proj.sparse_index"]))
            self.assertFalse(np.array_equal(back["model.layers.0.mlp.up_proj.lora_A"], first["model.layers.0.mlp.up_proj.lora_A"]))

    def test_in_process_matches_manual_adamw(self):
        # One update with G = 2 in float64, checked against AdamW written out by hand.
        with tempfile.TemporaryDirectory() as d:
            cfg_path, init, tokens_path, _ = tiny_files(d)
            cfg = LlamaConfig.from_json(cfg_path)
            sl = SLTrainOptions(rank=4, sp_ratio=0.1, lora_alpha=8)
            m = LlamaForCausalLM(cfg, sl, torch.float64)
            tr.load_init(m, init)
            ref = {n: p.detach().clone() for n, p in m.named_parameters()}
            toks = tr.load_tokens(tokens_path, cfg.vocab_size)
            # reference gradient of the accumulated loss
            batches = tr.Batches(toks, 2, 16)
            m2 = LlamaForCausalLM(cfg, sl, torch.float64)
            tr.load_init(m2, init)
            loss = (m2(batches.take()) + m2(batches.take())) / 2
            loss.backward()
            grads = {n: p.grad.clone() for n, p in m2.named_parameters()}
            recs = tr.train(m, tr.Batches(toks, 2, 16), grad_accum=2, steps=1, lr=0.01, warmup=0, min_lr_ratio=0.1,
                            scheduler="cosine", weight_decay=0.1, grad_clipping=0.0)  # fmt: skip
            self.assertAlmostEqual(recs[0]["loss"], float(loss), places=12)
            lr, wd, eps = 0.01, 0.1, 1e-8
            for n, p in m.named_parameters():
                g = grads[n]
                mhat = (0.1 * g) / (1 - 0.9)
                vhat = (0.001 * g * g) / (1 - 0.999)
                want = ref[n] * (1 - lr * wd) - lr * mhat / (vhat.sqrt() + eps)
                self.assertTrue(torch.allclose(p.detach(), want, rtol=1e-10, atol=1e-12), n)

    def test_init_errors(self):
        with tempfile.TemporaryDirectory() as d:
            cfg, init, tokens, _ = tiny_files(d, peft="full")
            out, met = os.path.join(d, "o.safetensors"), os.path.join(d, "m.jsonl")
            r = self.run_train(*self.common(cfg, init, tokens), "--out", out, "--metrics", met)
            self.assertEqual(r.returncode, 1)
            self.assertIn("missing", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertFalse(os.path.exists(out) or os.path.exists(met))
            r = self.run_train(*self.common(cfg, init, tokens), "--peft", "full", "--out", out, "--metrics", met)
            self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
