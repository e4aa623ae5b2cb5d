"""The low-precision modes of torchref: the seed's pure bf16 and slc's bf16-mixed.

Notation: b(x) rounds a float to bfloat16, round to nearest, ties to even (PyTorch's
float32 → bfloat16 conversion; NaN stays NaN); "fp32 math" means the op is evaluated
in float32 on its (exactly widened) inputs. GEMM(a, b) is a matrix product whose
element products are exact and whose sums are float32 (a bf16 × bf16 product has 16
significant bits, so it is exact in float32): torchref evaluates it as
torch.matmul(a.float(), b.float()).

## `--dtype bfloat16`: the seed's pure bf16 (torchrun_main.py --dtype bfloat16)

The seed builds the model, wraps it with SLTrain, then `model.to(dtype=torch.bfloat16)`:
every parameter (embeddings, norms, lm_head, lora_A, lora_B, sparse_value), every
gradient and AdamW's exp_avg/exp_avg_sq are bf16; there is no fp32 master copy;
sparse_index stays int64. On the seed's GPU every op reads bf16, computes in fp32 and
rounds its result to bf16 once; its autograd backward does the same per backward op.
torchref reproduces that op by op, with the seed's op graph:

- Embedding: h = E[ids]. Backward: dE = b(fp32 sum of the rows of dh per id) (CUDA's
  embedding backward accumulates in fp32).
- RMSNorm, HF 4.28 LlamaRMSNorm (the seed's copy): var = mean(x.to(float32)², −1) in
  fp32; n = b(x · rsqrt(var + eps)) (bf16 × fp32 promotes to fp32, one rounding);
  y = b(w · n). Backward: PyTorch autograd through these ops (dw = b(Σ b(dy·n)), …).
- Linear (full rank, lm_head): y = b(GEMM(x, Wᵀ)); dx = b(GEMM(dy, W)),
  dW = b(GEMM(dyᵀ, x)).
- SpLoRaLinear, the seed's splora_linear.py + sparse_linear.cpp: A_s = b(A·scale)
  (outside the custom function, so dA = b(dA_s·scale); the Python float scale is
  applied in fp32, as CUDA's kernels do with a scalar); W = b(GEMM(B, A_s)),
  W[idx] = b(W[idx] + v) (scatter_add_); y = b(GEMM(x, Wᵀ)). Backward rebuilds W the
  same way: dx = b(GEMM(dy, W)), dW = b(GEMM(dyᵀ, x)) (bf16, transient),
  dB = b(GEMM(dW, A_sᵀ)), dA_s = b(GEMM(Bᵀ, dW)), dv = dW.flat[idx].
- Rotary: cos/sin = b(fp32 tables) (the seed's fp32 cos_cached/sin_cached buffers are
  cast by model.to(bf16)); q' = b(b(q·cos) + b(rotate_half(q)·sin)).
- Attention: the seed's modeling_llama.py does NOT use HF 4.28's explicit softmax
  (`softmax(attn_weights, dtype=float32).to(bf16)`): it calls
  F.scaled_dot_product_attention(q, k, v, is_causal=True), and torchrun_main.py turns
  the flash and memory-efficient kernels off, so the GPU runs SDPA's math path
  (torch 2.1–2.4's attention.cpp; 2.0 divided by hd^¼ instead): c = √(1/√hd); q_s = b(q·c), k_s = b(k·c);
  S = b(GEMM(q_s, k_sᵀ)) + causal mask (0 / −inf); P = b(softmax_fp32(S));
  O = b(GEMM(P, v)). Backward is autograd through those ops: softmax's backward is
  b(P·(dP − Σ dP·P)) in fp32 from the bf16 P and dP. (HF 4.28's own path would give
  the same forward softmax value; it differs only in rounding S before the scale and
  in its backward reading an fp32 P.) That is torch 2.0–2.4. From torch 2.5 the math
  backend upcasts bf16 q, k, v to fp32 unless
  torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True): the whole attention in
  fp32, O = b(·) once, and the gradients of q, k, v rounded once; train.py
  --sdpa-precision fp32 selects that (bf16_sdpa(..., fp32=True)).
- MLP: down(b(silu_fp32(g)) · u) with b(·) after the product; silu's backward is
  b(dy·σ(g)(1 + g(1 − σ(g)))) in fp32.
- Loss, HF's CrossEntropyLoss on **bf16 logits**: neither HF 4.28 nor the seed's copy
  of modeling_llama.py upcasts them (`logits = logits.float()` is not in that file).
  lp = b(log_softmax_fp32(z)); loss = b(Σ_fp32(−lp[t]) / N) (CUDA nll_loss sums in
  fp32); backward: c = b(dloss / b(N)); dz = b(c·exp(lp) − c·[j = t]) in fp32.
- Gradient accumulation: loss/G in bf16 (CUDA divides by a scalar as a multiply by
  fp32(1/G): b(loss·fp32(1/G)), and so does its backward); p.grad += in bf16.
- Clipping: torch.nn.utils.clip_grad_norm_ on the bf16 grads (clip_grad_norm_bf16):
  per-tensor norms n_i = b(‖g_i‖), total = b(‖n‖), coef = b(b(1/b(total + 1e-6))·C)
  (PyTorch's `C / tensor` is reciprocal then multiply), clamped at 1, g = b(g·coef).
- AdamW: Bf16AdamW below, torch ≥ 2.1's AdamW (foreach, the CUDA default) op by op;
  Adam (L2 decay) and SGD likewise: Bf16Adam, Bf16SGD.

Where PyTorch 1.13's CPU bf16 kernels compute something else than the seed's GPU,
torchref computes the GPU's fp32-math-rounded-once result itself: silu (the CPU kernel
rounds inside), log_softmax (the same), `add(x, y, alpha=a)` (rounds a·y first),
the embedding backward (accumulates in bf16), softmax's backward (an ulp off), and —
the one that matters most — **every op between a bf16 tensor and a Python scalar**:
the CPU rounds the scalar to bf16 first (SDPA's q·0.5946 for head_dim 8 becomes
q·0.59375, AdamW's −lr/(1 − β1^t) and 1 − β2 lose their low bits), where CUDA keeps
it in fp32. So no bf16 tensor meets a Python scalar in a CPU kernel here: scalars go through
Bf16Scale, Bf16AdamW and clip_grad_norm_bf16. Every matmul is a GEMM over fp32 as well
(the CPU's bf16 matmul was bit-exact in tests, but its path depends on the CPU). The CPU
kernels used as they are (checked bit for bit against fp32 math rounded once,
selftest.py): add, sub, mul, div between tensors, bf16 × fp32 promotion, rsqrt, sqrt,
sum (fp32 accumulation; autograd's broadcast reductions), norm, clamp at 1, cat, neg,
masked fills, index_select. (bf16 `mean` is not one of them: it rounds the sum first.)

## `--dtype bf16-mixed`: slc's mixed precision (no seed equivalent)

- Storage: parameters (the master weights), gradients (accumulated over the G
  micro-batches), AdamW's exp_avg/exp_avg_sq: float32. AdamW, clipping, the loss and
  the reported figures: float32, exactly as in `--dtype float32`.
- Every matrix product, forward and backward, takes bf16-rounded operands and returns
  its fp32 accumulation **unrounded**: C = GEMM(b(A), b(B)), float32. The products are:
  every Linear (y = GEMM(b(x), b(W)ᵀ), dx = GEMM(b(dy), b(W)), dW = GEMM(b(dy)ᵀ, b(x)));
  lm_head likewise; SpLoRaLinear: W = GEMM(b(B), b(A·scale)) + scatter(v) in fp32,
  y = GEMM(b(x), b(W)ᵀ), dx = GEMM(b(dy), b(W)), dW = GEMM(b(dy)ᵀ, b(x)) (fp32,
  transient), dB = GEMM(b(dW), b(A·scale)ᵀ), dA = scale·GEMM(b(B)ᵀ, b(dW)),
  dv = dW.flat[idx] (from the fp32 dW); attention scores S = GEMM(b(q), b(k)ᵀ)/√hd
  and O = GEMM(b(P), b(v)), with dP = GEMM(b(dO), b(v)ᵀ), dv = GEMM(b(P)ᵀ, b(dO)),
  dq = GEMM(b(dS/√hd), b(k)), dk = GEMM(b(dS/√hd)ᵀ, b(q)).
- Every other op (embedding, RMSNorm, rotary, causal mask, softmax, SiLU, the gating
  product, residual adds, the loss) computes in fp32 on fp32 inputs and returns fp32;
  gradients flow between ops in fp32 and are rounded only where they enter a GEMM.
- Activations saved for backward are stored in bf16: whenever a backward formula reads
  a value the forward pass computed (not a parameter, not a constant table), it reads
  b(value); the forward pass itself goes on with the fp32 value. Per op, what the
  backward reads (slc's grad_rules.go reads the same tensors):
  RMSNorm y = w·(x·r), r = rsqrt(mean(x·x) + eps): b(x) (for x·x and x·r), b(r)
  (rsqrt's output, for rsqrt's and x·r's backward), b(x·r) and w in fp32 (for w·n);
  SiLU: b(g) (its input); the gating product silu(g)·u: b(silu(g)), b(u); softmax:
  b(P) (its output); the GEMMs: their rounded operands; the loss
  (SoftmaxCrossEntropy): b(z), the logits, with dz = (softmax_fp32(b(z)) − onehot(t))·
  dloss/N. Rotary, masks, reshapes and adds read nothing.
torchref implements the rounding of saved activations with
torch.autograd.graph.saved_tensors_hooks (every float32 non-leaf tensor an op saves is
packed as bf16), and the GEMMs and the loss as the custom functions below.
"""

import math

import torch
import torch.nn.functional as F
from torch.autograd import Function

BF16 = torch.bfloat16
F32 = torch.float32

__all__ = [
    "Bf16Linear",
    "Bf16MatMul",
    "Bf16SpLoRaFunction",
    "Bf16Softmax",
    "Bf16Silu",
    "Bf16Embedding",
    "Bf16CrossEntropy",
    "bf16_sdpa",
    "Bf16Scale",
    "bf16_div_scalar",
    "clip_grad_norm_bf16",
    "Bf16AdamW",
    "MixedLinear",
    "MixedMatMul",
    "MixedSpLoRaFunction",
    "MixedCrossEntropy",
    "mixed_saved_tensors",
]


def _mm(a, b):
    """GEMM over fp32: exact products of the (bf16-valued) operands, fp32 sums."""
    return torch.matmul(a.float(), b.float())


# ---- the seed's pure bf16 -----------------------------------------------------


def _f32(s):
    """A Python scalar as CUDA's opmath float32 sees it (as a Python float)."""
    return float(torch.tensor(s, dtype=F32))


class Bf16Scale(Function):
    """y = b(x·s) with the scalar s in fp32 (CUDA's x * python_scalar); dx = b(dy·s)."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.s = _f32(s)
        return (x.float() * ctx.s).to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        return (dy.float() * ctx.s).to(dy.dtype), None


def bf16_div_scalar(x, d):
    """CUDA's x / python_scalar on bf16: b(x·fp32(1/fp32(d))), the backward likewise."""
    return Bf16Scale.apply(x, float(torch.tensor(1.0, dtype=F32) / torch.tensor(d, dtype=F32)))


@torch.no_grad()
def clip_grad_norm_bf16(params, max_norm):
    """torch.nn.utils.clip_grad_norm_(params, max_norm) on bf16 gradients, as the GPU
    computes it (see the module docstring); returns the total norm (a bf16 tensor)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0, dtype=BF16)
    norms = torch.stack([torch.linalg.vector_norm(g.float()).to(BF16) for g in grads])
    total = torch.linalg.vector_norm(norms.float()).to(BF16)
    shifted = (total.float() + _f32(1e-6)).to(BF16)
    coef = ((1.0 / shifted.float()).to(BF16).float() * _f32(max_norm)).to(BF16).clamp(max=1.0)
    for g in grads:
        g.copy_((g.float() * coef.float()).to(g.dtype))
    return total


class Bf16Linear(Function):
    """y = b(GEMM(x, Wᵀ)); dx = b(GEMM(dy, W)), dW = b(GEMM(dyᵀ, x)). x, W bf16."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return _mm(x, w.t()).to(BF16)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _mm(dy, w).to(BF16)
        if ctx.needs_input_grad[1]:
            dw = _mm(dy.reshape(-1, w.shape[0]).t(), x.reshape(-1, w.shape[1])).to(BF16)
        return dx, dw


class Bf16MatMul(Function):
    """C = b(GEMM(a, b)) over the last two axes (same batch shape); da = b(GEMM(dC, bᵀ)), db = b(GEMM(aᵀ, dC))."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _mm(a, b).to(BF16)

    @staticmethod
    def backward(ctx, dc):
        a, b = ctx.saved_tensors
        da = db = None
        if ctx.needs_input_grad[0]:
            da = _mm(dc, b.transpose(-1, -2)).to(BF16)
        if ctx.needs_input_grad[1]:
            db = _mm(a.transpose(-1, -2), dc).to(BF16)
        return da, db


def _bf16_dense_weight(lora_B, lora_A_s, values, index):
    """The seed's sparse_linear.cpp in bf16: W = b(GEMM(B, A_s)); W.flat[index] = b(W.flat[index] + v)."""
    w = _mm(lora_B, lora_A_s).to(BF16)
    flat = w.view(-1)
    flat[index] = (flat[index].float() + values.float()).to(BF16)  # scatter_add_: one add per (unique) index
    return w


class Bf16SpLoRaFunction(Function):
    """The seed's lora_sparse_linear in bf16, with A_s = b(A·scale) formed by the caller (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, lora_B, lora_A_s, values, index):
        ctx.save_for_backward(x, lora_B, lora_A_s, values, index)
        w = _bf16_dense_weight(lora_B, lora_A_s, values, index)
        return _mm(x, w.t()).to(BF16)

    @staticmethod
    def backward(ctx, dy):
        x, lora_B, lora_A_s, values, index = ctx.saved_tensors
        need_x, need_b, need_a, need_v = ctx.needs_input_grad[:4]
        out_f, in_f = lora_B.shape[0], lora_A_s.shape[1]
        dx = db = da = dv = None
        if need_x:
            w = _bf16_dense_weight(lora_B, lora_A_s, values, index)
            dx = _mm(dy, w).to(BF16)
            del w
        if need_b or need_a or need_v:
            dw = _mm(dy.reshape(-1, out_f).t(), x.reshape(-1, in_f)).to(BF16)
            if need_b:
                db = _mm(dw, lora_A_s.t()).to(BF16)
            if need_a:
                da = _mm(lora_B.t(), dw).to(BF16)
            if need_v:
                dv = dw.reshape(-1).index_select(0, index)
            del dw
        return dx, db, da, dv, None


class Bf16Softmax(Function):
    """P = b(softmax_fp32(x)) over the last axis; dx = b(P·(dP − Σ dP·P)) in fp32 from the bf16 P, dP."""

    @staticmethod
    def forward(ctx, x):
        p = torch.softmax(x.float(), dim=-1).to(BF16)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, dp):
        (p,) = ctx.saved_tensors
        p32, g32 = p.float(), dp.float()
        return (p32 * (g32 - (g32 * p32).sum(-1, keepdim=True))).to(BF16)


class Bf16Silu(Function):
    """b(silu_fp32(x)); dx = b(dy·σ(x)(1 + x(1 − σ(x)))) in fp32 (PyTorch's silu_backward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.silu(x.float()).to(BF16)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        x32 = x.float()
        s = torch.sigmoid(x32)
        return (dy.float() * (s * (1 + x32 * (1 - s)))).to(BF16)


class Bf16Embedding(Function):
    """h = E[ids]; dE = b(fp32 sum of dh's rows per id), row padding_idx zero when given."""

    @staticmethod
    def forward(ctx, weight, ids, padding_idx):
        ctx.save_for_backward(ids)
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        return weight.index_select(0, ids.reshape(-1)).view(*ids.shape, weight.shape[1])

    @staticmethod
    def backward(ctx, dh):
        (ids,) = ctx.saved_tensors
        dw = torch.zeros(ctx.shape, dtype=F32)
        dw.index_add_(0, ids.reshape(-1), dh.reshape(-1, ctx.shape[1]).float())
        if ctx.padding_idx is not None:
            dw[ctx.padding_idx] = 0
        return dw.to(BF16), None, None


class Bf16CrossEntropy(Function):
    """HF's CrossEntropyLoss (mean) on bf16 logits z [N, V], targets t [N], as CUDA computes it.

    lp = b(log_softmax_fp32(z)); loss = b(Σ_fp32(−lp[i, t_i]) / N); backward:
    c = b(dloss / b(N)), dz = b(c·exp(lp) − c·[j = t]) in fp32 (log_softmax's backward
    gO − exp(lp)·Σ gO with gO = −c at the targets).
    """

    @staticmethod
    def forward(ctx, z, t):
        lp = torch.log_softmax(z.float(), dim=-1).to(BF16)
        n = t.numel()
        loss = (-(lp.float().gather(1, t.view(-1, 1)).sum()) / n).to(BF16)
        ctx.save_for_backward(lp, t)
        ctx.total_weight = torch.tensor(float(n), dtype=BF16)
        return loss

    @staticmethod
    def backward(ctx, dloss):
        lp, t = ctx.saved_tensors
        c = (dloss.float() / ctx.total_weight.float()).to(BF16).float()
        go = torch.zeros(lp.shape, dtype=F32)
        go.scatter_(1, t.view(-1, 1), -c.expand(t.numel(), 1))
        dz = go - torch.exp(lp.float()) * go.sum(-1, keepdim=True)
        return dz.to(BF16), None


def bf16_sdpa(q, k, v, fp32=False):
    """The seed's F.scaled_dot_product_attention(q, k, v, is_causal=True) on the math
    path in bf16: q_s = b(q·c), k_s = b(k·c), c = √(1/√hd); S = b(GEMM(q_s, k_sᵀ)) +
    mask(0 / −inf); P = b(softmax_fp32(S)); O = b(GEMM(P, v)). q, k, v [B, H, L, hd].

    fp32=True: torch ≥ 2.5's math path, the same ops on q, k, v upcast to fp32 and O
    rounded once (autograd rounds the gradients of q, k, v once, at the upcast)."""
    hd, l = q.shape[-1], q.shape[-2]
    c = math.sqrt(1.0 / math.sqrt(hd))
    if fp32:
        q32, k32, v32 = q.float(), k.float(), v.float()
        s = torch.matmul(q32 * c, k32.transpose(-2, -1) * c)
        s = s.masked_fill(torch.ones(l, l, dtype=torch.bool).triu(1), float("-inf"))
        return torch.matmul(torch.softmax(s, dim=-1), v32).to(q.dtype)
    qs = Bf16Scale.apply(q, c)  # query_ * scaling_factor
    kst = Bf16Scale.apply(k.transpose(-2, -1), c)  # key.transpose(-2, -1) * scaling_factor
    mask = torch.zeros(l, l, dtype=BF16).masked_fill(torch.ones(l, l, dtype=torch.bool).triu(1), float("-inf"))
    scores = Bf16MatMul.apply(qs, kst) + mask
    return Bf16MatMul.apply(Bf16Softmax.apply(scores), v)


class Bf16AdamW(torch.optim.AdamW):
    """torch.optim.AdamW on bf16 parameters with bf16 state, as torch ≥ 2.1's foreach
    AdamW computes it on the seed's GPU (each op fp32 math on the widened bf16 values,
    scalars in fp32, one rounding):

        p = b(p·(1 − lr·wd))                       (_foreach_mul_)
        m = b(m + (1−β1)·(g − m))                  (_foreach_lerp_, weight < 0.5 branch)
        v = b(v·β2);  v = b(v + (1−β2)·g·g)        (_foreach_mul_, _foreach_addcmul_)
        d = b(√v);  d = b(d / √(1 − β2^t));  d = b(d + eps)
        p = b(p + (−lr/(1 − β1^t))·(m / d))        (_foreach_addcdiv_)

    The state keys are torch's (step, exp_avg, exp_avg_sq); exp_avg/exp_avg_sq have the
    parameter's dtype (bf16). On float32 parameters this is AdamW up to fp32 rounding.
    torch 1.13's own AdamW is not usable for this on the CPU: it would round each Python
    scalar to bf16 (p·0.99609375 for p·0.999) and (1−β1)·g before adding it; torch ≤ 2.0
    used mul_ + add_ for m where ≥ 2.1 uses lerp_. amsgrad/maximize unsupported.
    """

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        for g in self.param_groups:
            if g.get("amsgrad") or g.get("maximize"):
                raise ValueError("Bf16AdamW: amsgrad and maximize are not supported")

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None
        for group in self.param_groups:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, v, dt = st["exp_avg"], st["exp_avg_sq"], p.dtype
                st["step"] += 1
                t = float(st["step"])
                r = lambda x: x.to(dt).float()  # noqa: E731  (b(·) for bf16 parameters)
                g32, m32, v32 = p.grad.float(), m.float(), v.float()
                p32 = p.float()
                if wd != 0:
                    p32 = r(p32 * _f32(1 - lr * wd))
                w = _f32(1 - beta1)
                m32 = r(m32 + w * (g32 - m32)) if w < 0.5 else r(g32 - (g32 - m32) * _f32(1 - w))
                v32 = r(v32 * _f32(beta2))
                v32 = r(v32 + _f32(1 - beta2) * (g32 * g32))
                bc1, bc2 = 1 - beta1**t, 1 - beta2**t
                d = r(v32.sqrt())
                d = r(d / _f32(math.sqrt(bc2)))
                d = r(d + _f32(eps))
                p32 = r(p32 + _f32(-(lr / bc1)) * (m32 / d))
                m.copy_(m32)
                v.copy_(v32)
                p.copy_(p32)
        return None


class Bf16Adam(Bf16AdamW):
    """torch.optim.Adam (the seed's default optimizer: L2 weight decay added to the
    gradient) on bf16 parameters, as torch >= 2.1's foreach Adam computes it on the GPU:
    g = b(g + wd·p) (_foreach_add with alpha=wd), then Bf16AdamW's steps without the
    decoupled decay."""

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None
        saved = []
        for group in self.param_groups:
            wd = group["weight_decay"]
            saved.append(wd)
            for p in group["params"]:
                if p.grad is not None and wd != 0:
                    p.grad.copy_((p.grad.float() + _f32(wd) * p.float()).to(p.dtype))
            group["weight_decay"] = 0
        super().step()
        for group, wd in zip(self.param_groups, saved):
            group["weight_decay"] = wd
        return None


class Bf16SGD(torch.optim.SGD):
    """torch.optim.SGD(momentum=μ, dampening=0, nesterov=False) on bf16 parameters, as
    torch >= 2.1's foreach SGD computes it on the GPU, each op rounded once:
    g = b(g + wd·p); buf = g on the first step, else b(b(buf·μ) + g); p = b(p − lr·buf)."""

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                dt = p.dtype
                r = lambda x: x.to(dt).float()  # noqa: E731
                g = p.grad.float()
                if wd != 0:
                    g = r(g + _f32(wd) * p.float())
                if mu != 0:
                    st = self.state[p]
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = g.to(dt).clone()
                    else:
                        buf = st["momentum_buffer"]
                        st["momentum_buffer"] = r(r(buf.float() * _f32(mu)) + g).to(dt)
                    g = st["momentum_buffer"].float()
                p.copy_(r(p.float() + _f32(-lr) * g))
        return None


# ---- slc's bf16-mixed ---------------------------------------------------------


class MixedLinear(Function):
    """y = GEMM(b(x), b(W)ᵀ) in fp32; dx = GEMM(b(dy), b(W)), dW = GEMM(b(dy)ᵀ, b(x)). Saves b(x) as bf16."""

    @staticmethod
    def forward(ctx, x, w):
        xb = x.to(BF16)
        ctx.save_for_backward(xb, w)
        return _mm(xb, w.to(BF16).t())

    @staticmethod
    def backward(ctx, dy):
        xb, w = ctx.saved_tensors
        gb = dy.to(BF16)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _mm(gb, w.to(BF16))
        if ctx.needs_input_grad[1]:
            dw = _mm(gb.reshape(-1, w.shape[0]).t(), xb.reshape(-1, w.shape[1]))
        return dx, dw


class MixedMatMul(Function):
    """C = GEMM(b(a), b(b)) in fp32; da = GEMM(b(dC), b(b)ᵀ), db = GEMM(b(a)ᵀ, b(dC)). Saves the bf16 operands."""

    @staticmethod
    def forward(ctx, a, b):
        ab, bb = a.to(BF16), b.to(BF16)
        ctx.save_for_backward(ab, bb)
        return _mm(ab, bb)

    @staticmethod
    def backward(ctx, dc):
        ab, bb = ctx.saved_tensors
        gb = dc.to(BF16)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = _mm(gb, bb.transpose(-1, -2))
        if ctx.needs_input_grad[1]:
            db = _mm(ab.transpose(-1, -2), gb)
        return da, db


def _mixed_dense_weight(lora_B, lora_A, values, index, scale):
    """W = GEMM(b(B), b(A·scale)) + scatter(values), fp32."""
    w = _mm(lora_B.to(BF16), (lora_A * scale).to(BF16))
    w.view(-1).index_add_(0, index, values)
    return w


class MixedSpLoRaFunction(Function):
    """SpLoRaLinear in bf16-mixed (see the module docstring); saves b(x) as bf16 and the fp32 factors."""

    @staticmethod
    def forward(ctx, x, lora_B, lora_A, values, index, scale):
        xb = x.to(BF16)
        ctx.save_for_backward(xb, lora_B, lora_A, values, index)
        ctx.scale = scale
        w = _mixed_dense_weight(lora_B, lora_A, values, index, scale)
        return _mm(xb, w.to(BF16).t())

    @staticmethod
    def backward(ctx, dy):
        xb, lora_B, lora_A, values, index = ctx.saved_tensors
        scale = ctx.scale
        need_x, need_b, need_a, need_v = ctx.needs_input_grad[:4]
        out_f, in_f = lora_B.shape[0], lora_A.shape[1]
        gb = dy.to(BF16)
        dx = db = da = dv = None
        if need_x:
            w = _mixed_dense_weight(lora_B, lora_A, values, index, scale)
            dx = _mm(gb, w.to(BF16))
            del w
        if need_b or need_a or need_v:
            dw = _mm(gb.reshape(-1, out_f).t(), xb.reshape(-1, in_f))  # fp32, transient
            if need_b or need_a:
                dwb = dw.to(BF16)
            if need_b:
                db = _mm(dwb, (lora_A * scale).to(BF16).t())
            if need_a:
                da = _mm(lora_B.to(BF16).t(), dwb).mul_(scale)
            if need_v:
                dv = dw.reshape(-1).index_select(0, index)
            del dw
        return dx, db, da, dv, None, None


class MixedCrossEntropy(Function):
    """Mean cross-entropy of fp32 logits z [N, V] (the fp32 value of F.cross_entropy);
    backward reads b(z): dz = (softmax_fp32(b(z)) − onehot(t))·dloss/N (slc's SoftmaxCrossEntropyGrad)."""

    @staticmethod
    def forward(ctx, z, t):
        ctx.save_for_backward(z.to(BF16), t)
        return F.cross_entropy(z, t)

    @staticmethod
    def backward(ctx, dloss):
        zb, t = ctx.saved_tensors
        p = torch.softmax(zb.float(), dim=-1)
        p.scatter_add_(1, t.view(-1, 1), torch.full((t.numel(), 1), -1.0))
        return p * (dloss / t.numel()), None


def _pack(t):
    if t.dtype == F32 and t.requires_grad and not t.is_leaf:
        return (True, t.to(BF16))
    return (False, t)


def _unpack(packed):
    rounded, t = packed
    return t.float() if rounded else t


def mixed_saved_tensors():
    """Context manager: every float32 non-leaf tensor an op saves for backward is stored as bf16."""
    return torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)
