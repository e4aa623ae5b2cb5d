#!/usr/bin/python3
"""Self-test of tools/torchref: /usr/bin/python3 tools/torchref/selftest.py [-v]

Checks the SLTrain custom autograd function against autograd through the dense
weight (torch.autograd.gradcheck and a direct comparison, float64), the seed's
parameter counts for llama_60m, the safetensors reader/writer, the schedules,
the batching contract, --init loading errors, and that train.py is bit-for-bit
deterministic on testdata/configs/llama_tiny.json. The low-precision modes
(precision.py): the CPU bf16 kernels relied on equal fp32 math rounded once; every
custom bf16 and mixed function against its formula; bf16 and bf16-mixed runs of the
tiny config train (finite, falling losses), with bf16 parameters, gradients and AdamW
state in bf16 and fp32 masters in mixed; the same start as a float64 --round-init bf16
run; the error against float64 of the xcheck setup in range; and
scripts/xcheck_compare.py's bf16 check accepting a torchref variant that rounds at
other points while rejecting a broken one. Runs in about 15 s.
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

import precision as prec  # noqa: E402
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


BF = torch.bfloat16


def rnd_bf16(gen, *shape, scale=1.0):
    return (torch.randn(*shape, generator=gen) * scale).to(BF)


def rounded(x):
    """b(x) of a float32 tensor, as bf16."""
    return x.to(BF)


class CpuBf16KernelTest(unittest.TestCase):
    """The PyTorch 1.13 CPU bf16 kernels that precision.py uses as they are compute fp32 math rounded once."""

    def test_elementwise_and_reductions(self):
        g = torch.Generator().manual_seed(0)
        a, b = rnd_bf16(g, 64, 200), rnd_bf16(g, 64, 200)
        pos = (a.abs() + 0.5).to(BF)
        f = lambda t: t.float()  # noqa: E731
        cases = {
            "add": (lambda: a + b, lambda: f(a) + f(b)),
            "sub": (lambda: a - b, lambda: f(a) - f(b)),
            "mul": (lambda: a * b, lambda: f(a) * f(b)),
            "div": (lambda: a / pos, lambda: f(a) / f(pos)),
            "rsqrt": (lambda: pos.rsqrt(), lambda: f(pos).rsqrt()),
            "sqrt": (lambda: pos.sqrt(), lambda: f(pos).sqrt()),
            "clamp at 1": (lambda: a.clamp(max=1.0), lambda: f(a).clamp(max=1.0)),
            "sum dim 0": (lambda: a.sum(0), lambda: f(a).sum(0)),
            "sum dims 0,1": (lambda: a.view(8, 8, 200).sum((0, 1)), lambda: f(a).view(8, 8, 200).sum((0, 1))),
            "norm": (lambda: torch.norm(a), lambda: torch.norm(f(a))),
            "bf16 * fp32": (lambda: (a * f(b)).to(BF), lambda: f(a) * f(b)),
        }
        for name, (native, fp32) in cases.items():
            got, want = native(), fp32().to(BF)
            self.assertEqual(got.dtype, BF, name)
            self.assertTrue(torch.equal(got, want), name)

    def test_scalars_and_clipping(self):
        # A Python scalar meets bf16 in fp32 (CUDA's opmath): b(x·s); x/d is b(x·fp32(1/d)).
        g = torch.Generator().manual_seed(1)
        x = rnd_bf16(g, 300).requires_grad_()
        c = math.sqrt(1 / math.sqrt(8))  # SDPA's scale for head_dim 8
        y = prec.Bf16Scale.apply(x, c)
        self.assertTrue(torch.equal(y, (x.float() * c).to(BF)))
        self.assertFalse(torch.equal(y, x.detach() * c))  # the CPU kernel multiplies by b(c) = 0.59375
        dy = rnd_bf16(g, 300)
        y.backward(dy)
        self.assertTrue(torch.equal(x.grad, (dy.float() * c).to(BF)))
        inv3 = float(torch.tensor(1.0) / torch.tensor(3.0))
        self.assertTrue(torch.equal(prec.bf16_div_scalar(x.detach(), 3), (x.detach().float() * inv3).to(BF)))
        # clip_grad_norm_ on bf16 grads: norms, their norm, coef = b(b(1/b(t + 1e-6))·C), clamp, g·coef.
        ps = [torch.nn.Parameter(torch.zeros(n, dtype=BF)) for n in (40, 7, 300)]
        for p in ps:
            p.grad = rnd_bf16(g, p.numel())
        grads = [p.grad.clone() for p in ps]
        total = prec.clip_grad_norm_bf16(ps, 0.3)
        norms = torch.stack([torch.norm(x) for x in grads])  # the CPU's bf16 norm: fp32 math, one rounding
        t = torch.norm(norms)
        self.assertTrue(torch.equal(total, t))
        qs = [torch.nn.Parameter(torch.zeros_like(x)) for x in grads]
        for q, x in zip(qs, grads):
            q.grad = x.clone()
        self.assertEqual(tr.global_grad_norm(qs), float(total))  # the metric is the same norm
        coef = ((1 / (t.float() + 1e-6).to(BF).float()).to(BF).float() * 0.3).to(BF).clamp(max=1.0)
        self.assertLess(float(coef), 1.0)
        for p, x in zip(ps, grads):
            self.assertTrue(torch.equal(p.grad, (x.float() * coef.float()).to(BF)))


class Bf16FunctionTest(unittest.TestCase):
    """The seed-bf16 custom functions against their formulas (precision.py)."""

    def test_linear_and_matmul(self):
        g = torch.Generator().manual_seed(2)
        x, w, dy = rnd_bf16(g, 3, 5, 24), rnd_bf16(g, 16, 24), rnd_bf16(g, 3, 5, 16)
        x.requires_grad_(), w.requires_grad_()
        y = prec.Bf16Linear.apply(x, w)
        self.assertTrue(torch.equal(y, rounded(x.float() @ w.float().t())))
        y.backward(dy)
        self.assertTrue(torch.equal(x.grad, rounded(dy.float() @ w.float())))
        self.assertTrue(torch.equal(w.grad, rounded(dy.float().reshape(-1, 16).t() @ x.float().reshape(-1, 24))))
        a, b, dc = rnd_bf16(g, 2, 3, 6, 8), rnd_bf16(g, 2, 3, 8, 6), rnd_bf16(g, 2, 3, 6, 6)
        a.requires_grad_(), b.requires_grad_()
        c = prec.Bf16MatMul.apply(a, b)
        self.assertTrue(torch.equal(c, rounded(a.float() @ b.float())))
        c.backward(dc)
        self.assertTrue(torch.equal(a.grad, rounded(dc.float() @ b.float().transpose(-1, -2))))
        self.assertTrue(torch.equal(b.grad, rounded(a.float().transpose(-1, -2) @ dc.float())))

    def test_splora(self):
        g = torch.Generator().manual_seed(3)
        out_f, in_f, r = 12, 10, 3
        x, bb, a_s, v = rnd_bf16(g, 2, 4, in_f), rnd_bf16(g, out_f, r), rnd_bf16(g, r, in_f), rnd_bf16(g, 20)
        idx = torch.sort(torch.randperm(out_f * in_f, generator=g)[:20]).values
        for t in (x, bb, a_s, v):
            t.requires_grad_()
        y = prec.Bf16SpLoRaFunction.apply(x, bb, a_s, v, idx)
        w = rounded(bb.float() @ a_s.float()).float().reshape(-1)
        w[idx] = rounded(w[idx] + v.float()).float()
        w = w.view(out_f, in_f)
        self.assertTrue(torch.equal(y, rounded(x.float() @ w.t())))
        dy = rnd_bf16(g, 2, 4, out_f)
        y.backward(dy)
        dw = rounded(dy.float().reshape(-1, out_f).t() @ x.float().reshape(-1, in_f)).float()
        self.assertTrue(torch.equal(x.grad, rounded(dy.float() @ w)))
        self.assertTrue(torch.equal(bb.grad, rounded(dw @ a_s.float().t())))
        self.assertTrue(torch.equal(a_s.grad, rounded(bb.float().t() @ dw)))
        self.assertTrue(torch.equal(v.grad, rounded(dw.reshape(-1)[idx])))

    def test_softmax_silu_embedding_loss(self):
        g = torch.Generator().manual_seed(4)
        x = rnd_bf16(g, 6, 9).requires_grad_()
        p = prec.Bf16Softmax.apply(x)
        self.assertTrue(torch.equal(p, rounded(torch.softmax(x.float(), -1))))
        dp = rnd_bf16(g, 6, 9)
        p.backward(dp)
        pf, gf = p.float(), dp.float()
        self.assertTrue(torch.equal(x.grad, rounded(pf * (gf - (gf * pf).sum(-1, keepdim=True)))))
        x = rnd_bf16(g, 6, 9, scale=3).requires_grad_()
        y = prec.Bf16Silu.apply(x)
        self.assertTrue(torch.equal(y, rounded(torch.nn.functional.silu(x.float()))))
        y.backward(dp)
        want = torch.ops.aten.silu_backward(dp.float(), x.float())
        self.assertLessEqual(float((x.grad.float() - want).abs().max()), float(want.abs().max()) * 2**-8)
        e = rnd_bf16(g, 5, 4).requires_grad_()
        ids = torch.tensor([[0, 1, 1], [1, 4, 1]])
        h = prec.Bf16Embedding.apply(e, ids, 4)
        self.assertTrue(torch.equal(h, e.detach()[ids]))
        dh = rnd_bf16(g, 2, 3, 4)
        h.backward(dh)
        d1 = rounded(dh.float()[0, 1] + dh.float()[0, 2] + dh.float()[1, 0] + dh.float()[1, 2])
        self.assertTrue(torch.equal(e.grad[1], d1))
        self.assertTrue(torch.equal(e.grad[4], torch.zeros(4, dtype=BF)))  # padding_idx
        self.assertTrue(torch.equal(e.grad[2], torch.zeros(4, dtype=BF)))
        z = rnd_bf16(g, 7, 11, scale=2).requires_grad_()
        t = torch.tensor([0, 3, 10, 3, 5, 1, 2])
        loss = prec.Bf16CrossEntropy.apply(z, t)
        lp = rounded(torch.log_softmax(z.float(), -1)).float()
        self.assertEqual(loss.dtype, BF)
        self.assertTrue(torch.equal(loss, rounded(-lp[torch.arange(7), t].sum() / 7)))
        (loss / 2).backward()
        c = rounded(torch.tensor(0.5) / 7).float()
        want = c * lp.exp()
        want[torch.arange(7), t] -= c
        self.assertTrue(torch.equal(z.grad, rounded(want)))

    def test_sdpa(self):
        g = torch.Generator().manual_seed(8)
        q, k, v = (rnd_bf16(g, 2, 2, 5, 8) for _ in range(3))
        c = math.sqrt(1 / math.sqrt(8))
        mask = torch.ones(5, 5, dtype=torch.bool).triu(1)
        qs, ks = rounded(q.float() * c), rounded(k.float() * c)
        s = rounded(qs.float() @ ks.float().transpose(-1, -2)).float().masked_fill(mask, float("-inf"))
        p = rounded(torch.softmax(s, -1))
        self.assertTrue(torch.equal(prec.bf16_sdpa(q, k, v), rounded(p.float() @ v.float())))
        s32 = ((q.float() * c) @ (k.float().transpose(-1, -2) * c)).masked_fill(mask, float("-inf"))
        self.assertTrue(torch.equal(prec.bf16_sdpa(q, k, v, fp32=True), rounded(torch.softmax(s32, -1) @ v.float())))

    def test_adamw_algorithm(self):
        # On float32 parameters Bf16AdamW is torch.optim.AdamW up to fp32 rounding (lerp vs mul+add).
        g = torch.Generator().manual_seed(5)
        p0 = torch.randn(50, generator=g)
        grads = [torch.randn(50, generator=g) for _ in range(4)]
        runs = []
        for cls in (torch.optim.AdamW, prec.Bf16AdamW):
            p = torch.nn.Parameter(p0.clone())
            opt = cls([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
            for gr in grads:
                p.grad = gr.clone()
                opt.step()
            runs.append(p.detach().clone())
        self.assertTrue(torch.allclose(runs[0], runs[1], rtol=1e-6, atol=1e-8))
        # on bf16 parameters the state is bf16 and every op rounds once
        p = torch.nn.Parameter(p0.to(BF))
        opt = prec.Bf16AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
        p.grad = grads[0].to(BF)
        opt.step()
        st_ = opt.state[p]
        self.assertEqual((st_["exp_avg"].dtype, st_["exp_avg_sq"].dtype), (BF, BF))
        gf = grads[0].to(BF).float()
        m = rounded(0.1 * gf).float()  # fp32 tensor ⊗ Python float: the scalar in fp32
        v = rounded(0.001 * (gf * gf)).float()
        d = rounded(rounded(rounded(v.sqrt()).float() / math.sqrt(0.001)).float() + 1e-8).float()
        pw = rounded(p0.to(BF).float() * (1 - 0.01 * 0.1)).float()
        self.assertTrue(torch.equal(st_["exp_avg"], rounded(m)))
        self.assertTrue(torch.equal(st_["exp_avg_sq"], rounded(v)))
        self.assertTrue(torch.equal(p.detach(), rounded(pw + (-(0.01 / 0.1)) * (m / d))))


class MixedFunctionTest(unittest.TestCase):
    """bf16-mixed: GEMMs on rounded operands with fp32 results, activations saved as bf16."""

    def test_gemms(self):
        g = torch.Generator().manual_seed(6)
        b = lambda t: t.to(BF).float()  # noqa: E731
        x, w, dy = torch.randn(3, 5, 24, generator=g), torch.randn(16, 24, generator=g), torch.randn(3, 5, 16, generator=g)
        x.requires_grad_(), w.requires_grad_()
        y = prec.MixedLinear.apply(x, w)
        self.assertEqual(y.dtype, torch.float32)
        self.assertTrue(torch.equal(y, b(x) @ b(w).t()))
        y.backward(dy)
        self.assertTrue(torch.equal(x.grad, b(dy) @ b(w)))
        self.assertTrue(torch.equal(w.grad, b(dy).reshape(-1, 16).t() @ b(x).reshape(-1, 24)))
        out_f, in_f, r, scale = 12, 10, 3, 2.5
        x = torch.randn(2, 4, in_f, generator=g, requires_grad=True)
        bb, a, v = (torch.randn(*s, generator=g, requires_grad=True) for s in ((out_f, r), (r, in_f), (20,)))
        idx = torch.sort(torch.randperm(out_f * in_f, generator=g)[:20]).values
        y = prec.MixedSpLoRaFunction.apply(x, bb, a, v, idx, scale)
        wd = (b(bb) @ b(a * scale)).reshape(-1)
        wd = wd.index_add(0, idx, v.detach()).view(out_f, in_f)
        self.assertTrue(torch.equal(y, b(x) @ b(wd).t()))
        dy = torch.randn(2, 4, out_f, generator=g)
        y.backward(dy)
        dw = b(dy).reshape(-1, out_f).t() @ b(x).reshape(-1, in_f)
        self.assertTrue(torch.equal(x.grad, b(dy) @ b(wd)))
        self.assertTrue(torch.equal(bb.grad, b(dw) @ b(a * scale).t()))
        self.assertTrue(torch.equal(a.grad, (b(bb).t() @ b(dw)) * scale))
        self.assertTrue(torch.equal(v.grad, dw.reshape(-1)[idx]))

    def test_saved_activations_are_bf16(self):
        g = torch.Generator().manual_seed(7)
        w = torch.randn(8, generator=g, requires_grad=True)  # a leaf: read in fp32
        z = torch.randn(4, 8, generator=g, requires_grad=True)
        with prec.mixed_saved_tensors():
            x = z * 1.0  # an activation
            y = (w * (x * x)).sum()
        y.backward()
        xb = x.detach().to(BF).float()
        nb = (x.detach() * x.detach()).to(BF).float()
        self.assertTrue(torch.equal(w.grad, nb.sum(0)))  # w·n reads b(n), n = x·x
        self.assertTrue(torch.equal(z.grad, w.detach() * xb + w.detach() * xb))  # x·x reads b(x) twice
        zl = torch.randn(5, 7, generator=g, requires_grad=True)
        t = torch.tensor([0, 6, 2, 2, 5])
        loss = prec.MixedCrossEntropy.apply(zl, t)
        self.assertTrue(torch.equal(loss, torch.nn.functional.cross_entropy(zl, t)))
        loss.backward()
        p = torch.softmax(zl.detach().to(BF).float(), -1)
        p[torch.arange(5), t] -= 1
        self.assertTrue(torch.equal(zl.grad, p * (torch.tensor(1.0) / 5)))


def xcheck_like_init(d, peft, seed=7):
    """An init like scripts/xcheck.sh's (slc's seeded init: lora_B = 0), lora_alpha 32, rank 4."""
    cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
    sl = SLTrainOptions(rank=4, sp_ratio=0.1, lora_alpha=32) if peft == "sltrain" else None
    m = LlamaForCausalLM(cfg, sl)
    init_weights(m, torch.Generator().manual_seed(seed))
    path = os.path.join(d, f"xinit_{peft}_{seed}.safetensors")
    st.save(path, tr.state_arrays(m))
    return cfg, sl, path


def shakespeare_tokens(n=8192, offset=0):
    with open(os.path.join(ROOT, "testdata", "tinyshakespeare.txt"), "rb") as f:
        b = np.frombuffer(f.read(offset + n), dtype=np.uint8)[offset:]
    return b.astype(np.int64) % 32


def run_mode(cfg, sl, init, tokens, mode, round_init=False, steps=8, lr=0.01, warmup=2, wd=0.1, clip=0.5):
    """train.train() in-process the way train.py runs --dtype mode; returns (model, records)."""
    m = LlamaForCausalLM(cfg, sl, torch.float64 if mode == "float64" else torch.float32)
    tr.load_init(m, init)
    if round_init:
        tr.round_init_bf16(m)
    if mode == "bfloat16":
        m.to_bf16()
    elif mode == "bf16-mixed":
        m.set_precision("mixed")
    recs = tr.train(m, tr.Batches(tokens, 2, 16), grad_accum=2, steps=steps, lr=lr, warmup=warmup, min_lr_ratio=0.1,
                    scheduler="cosine", weight_decay=wd, grad_clipping=clip)  # fmt: skip
    return m, recs


def weights(m):
    return {n: a.astype(np.float64) if a.dtype.kind == "f" else a for n, a in tr.state_arrays(m).items()}


def metrics(recs):
    return {r["step"]: (r["loss"], r["lr"]) for r in recs}


class LowPrecisionTrainTest(unittest.TestCase):
    def test_bf16_and_mixed_learn(self):
        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
        tokens = shakespeare_tokens(64)  # 4 rows: the loss must fall
        with tempfile.TemporaryDirectory() as d:
            for peft in ("sltrain", "full"):
                _, sl, init = xcheck_like_init(d, peft)
                for mode in ("bfloat16", "bf16-mixed"):
                    m, recs = run_mode(cfg, sl, init, tokens, mode, steps=6, lr=0.02, warmup=0, wd=0.0, clip=1.0)
                    losses = [r["loss"] for r in recs]
                    self.assertTrue(all(math.isfinite(x) for x in losses), (peft, mode, losses))
                    self.assertLess(losses[-1], losses[0] - 0.3, (peft, mode, losses))
                    self.assertTrue(all(b < a for a, b in zip(losses[1:], losses[2:])), (peft, mode, losses))
                    want = BF if mode == "bfloat16" else torch.float32
                    for n, t in m.state_dict().items():
                        self.assertEqual(t.dtype, torch.int64 if n.endswith("sparse_index") else want, (mode, n))
                    # gradients and AdamW state: one more micro-batch and update
                    loss = m(tr.Batches(tokens, 2, 16).take())
                    self.assertEqual(loss.dtype, want)
                    loss.backward()
                    params = [p for p in m.parameters()]
                    self.assertTrue(all(p.grad is not None and p.grad.dtype == want for p in params), mode)
                    opt = (prec.Bf16AdamW if mode == "bfloat16" else torch.optim.AdamW)(params, lr=0.01)
                    opt.step()
                    for p in params:
                        s = opt.state[p]
                        self.assertEqual((s["exp_avg"].dtype, s["exp_avg_sq"].dtype), (want, want), mode)

    def test_same_start_as_rounded_float64(self):
        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
        with tempfile.TemporaryDirectory() as d:
            _, sl, init = xcheck_like_init(d, "sltrain")
            a = LlamaForCausalLM(cfg, sl)
            tr.load_init(a, init)
            a.to_bf16()
            b = LlamaForCausalLM(cfg, sl, torch.float64)
            tr.load_init(b, init)
            tr.round_init_bf16(b)
            c = LlamaForCausalLM(cfg, sl, torch.float64)
            tr.load_init(c, init)
            changed = 0
            for n, t in a.state_dict().items():
                u = b.state_dict()[n]
                self.assertTrue(torch.equal(t.double() if t.is_floating_point() else t, u), n)
                changed += not torch.equal(u, c.state_dict()[n])
            self.assertGreater(changed, 10)  # the rounding did something

    def test_error_against_float64(self):
        # The xcheck setup (B = 0 init, accumulation, clipping, weight decay, 8 updates):
        # PyTorch-bf16 against float64 of the rounded init, mixed against plain float64.
        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
        tokens = shakespeare_tokens()
        with tempfile.TemporaryDirectory() as d:
            for peft in ("sltrain", "full"):
                _, sl, init = xcheck_like_init(d, peft)
                m64, r64 = run_mode(cfg, sl, init, tokens, "float64", round_init=True)
                mf, rf = run_mode(cfg, sl, init, tokens, "float64")
                mb, rb = run_mode(cfg, sl, init, tokens, "bfloat16")
                mm, rm = run_mode(cfg, sl, init, tokens, "bf16-mixed")
                w64, wf, wb, wm = weights(m64), weights(mf), weights(mb), weights(mm)
                lb = max(abs(x["loss"] - y["loss"]) for x, y in zip(rb, r64))
                lm = max(abs(x["loss"] - y["loss"]) for x, y in zip(rm, rf))
                self.assertLess(lb, 0.02, peft)  # a few bf16 quanta (2^-6 near 3.4)
                self.assertLess(lm, 2e-3, peft)
                pb = [np.percentile(np.abs(wb[n] - w64[n]), 90) for n in w64 if w64[n].dtype.kind == "f"]
                pm = [np.percentile(np.abs(wm[n] - wf[n]), 90) for n in wf if wf[n].dtype.kind == "f"]
                travel = sum(r["lr"] for r in rb)  # ≈ 0.0425: how far AdamW moves an element
                self.assertLess(float(np.median(pb)), 0.1 * travel, peft)
                self.assertLess(float(np.median(pm)), float(np.median(pb)), peft)  # mixed is the more accurate
                self.assertGreater(float(np.median(pb)), 1e-5, peft)  # and bf16 really is bf16

    def test_compare_accepts_a_variant_and_rejects_a_bug(self):
        # scripts/xcheck_compare.py's bf16 check, end to end on real runs: torchref with
        # RMSNorm rounded once (fused) and the attention scale applied in fp32 before
        # rounding — a correct bf16 implementation that rounds at other points — passes;
        # with lora_B's gradient dropped, it fails.
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import xcheck_compare as xc

        cfg = LlamaConfig.from_json(os.path.join(CONFIGS, "llama_tiny.json"))
        tokens = shakespeare_tokens()
        with tempfile.TemporaryDirectory() as d:
            _, sl, init = xcheck_like_init(d, "sltrain")
            m64, r64 = run_mode(cfg, sl, init, tokens, "float64", round_init=True)
            mb, rb = run_mode(cfg, sl, init, tokens, "bfloat16")
            import model as model_mod

            rms, sdpa, bwd = model_mod.RMSNorm.forward, prec.bf16_sdpa, prec.Bf16SpLoRaFunction.backward

            def rms_fused(self, x):
                x32 = x.float()
                return (self.weight.float() * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps))).to(BF)

            def sdpa_scaled(q, k, v, fp32=False):
                s = prec._mm(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
                s = s.masked_fill(torch.ones(s.shape[-1], s.shape[-1], dtype=torch.bool).triu(1), float("-inf")).to(BF)
                return prec.Bf16MatMul.apply(prec.Bf16Softmax.apply(s), v)

            def no_db(ctx, dy):
                out = list(bwd(ctx, dy))
                out[1] = torch.zeros_like(out[1])
                return tuple(out)

            try:
                model_mod.RMSNorm.forward, prec.bf16_sdpa = rms_fused, sdpa_scaled
                mv, rv = run_mode(cfg, sl, init, tokens, "bfloat16")
                prec.Bf16SpLoRaFunction.backward = staticmethod(no_db)
                mx, rx = run_mode(cfg, sl, init, tokens, "bfloat16")
            finally:
                model_mod.RMSNorm.forward, prec.bf16_sdpa = rms, sdpa
                prec.Bf16SpLoRaFunction.backward = staticmethod(bwd)
            quiet = lambda line: None  # noqa: E731
            ref = (metrics(rb), metrics(r64), weights(mb), weights(m64))

            def check(m, recs):
                return xc.compare_low("bfloat16", metrics(recs), ref[0], ref[1], weights(m), ref[2], ref[3], weight_decay=0.1, out=quiet)

            self.assertTrue(check(mb, rb))  # PyTorch against itself
            self.assertTrue(check(mv, rv))
            self.assertFalse(check(mx, rx))

    def test_cli(self):
        with tempfile.TemporaryDirectory() as d:
            cfg, init, tokens, _ = tiny_files(d)
            base = TrainTest.common(None, cfg, init, tokens)
            outs = {}
            runs = (("bf16", []), ("bfloat16", []), ("sdpa32", ["--sdpa-precision", "fp32"]), ("bf16-mixed", []), ("float64", ["--round-init", "bf16"]))
            for name, extra in runs:
                dt = "bfloat16" if name == "sdpa32" else name
                out, met = os.path.join(d, f"{name}.safetensors"), os.path.join(d, f"{name}.jsonl")
                r = TrainTest.run_train(None, *base, "--dtype", dt, *extra, "--out", out, "--metrics", met)
                self.assertEqual(r.returncode, 0, r.stderr)
                t, dts, meta = st.load_with_dtypes(out)
                with open(out, "rb") as f, open(met, "rb") as g:
                    outs[name] = (f.read(), g.read())
                want = {"bf16": "BF16", "bfloat16": "BF16", "bf16-mixed": "F32", "float64": "F64"}[dt]
                self.assertTrue(all(v == ("I64" if n.endswith("sparse_index") else want) for n, v in dts.items()), (dt, dts))
                self.assertEqual(meta["dtype"], "bfloat16" if dt == "bf16" else dt)
                recs = [json.loads(line) for line in outs[name][1].decode().splitlines()]
                self.assertEqual(len(recs), 6)
                self.assertTrue(all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in recs), dt)
            self.assertEqual(outs["bf16"], outs["bfloat16"])  # the alias, and bit-for-bit deterministic
            self.assertNotEqual(outs["sdpa32"][0], outs["bfloat16"][0])
            self.assertEqual(st.load_with_dtypes(os.path.join(d, "sdpa32.safetensors"))[2].get("sdpa_precision"), "fp32")
            self.assertEqual(st.load_with_dtypes(os.path.join(d, "float64.safetensors"))[2].get("round_init"), "bf16")

    def test_xcheck_compare_selftest(self):
        r = subprocess.run([sys.executable, "-B", os.path.join(ROOT, "scripts", "xcheck_compare.py"), "--selftest"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
