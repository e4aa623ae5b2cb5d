"""An independent PyTorch model of the seed's SLTrain LLaMA (the spec is /work/shared/DESIGN.md).

LLaMA as in transformers 4.28 (pre-norm RMSNorm, rotary attention with
rotate_half and base 10000, causal softmax attention, SwiGLU MLP, final RMSNorm,
untied lm_head, mean next-token cross-entropy), with every attention and MLP
projection optionally replaced by SLTrain's SpLoRaLinear: W = B·(A·scale) + S,
S sparse on a fixed sorted support, trained through a memory-saving custom
autograd function. Module names follow HF, so state_dict() names are the seed's.

Allocation and initialisation are separate: building a model allocates
uninitialised tensors (cheap, used to count parameters), init_weights() fills
them from a torch.Generator per DESIGN.md.

Precision: a model computes in its dtype (float32 or float64: "native", every op as
PyTorch does it) unless LlamaForCausalLM.to_bf16() (the seed's pure bf16) or
set_precision("mixed") (slc's bf16-mixed) switched it; precision.py defines both.
"""

import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import precision as P

__all__ = [
    "ConfigError",
    "LlamaConfig",
    "SLTrainOptions",
    "SpLoRaFunction",
    "SpLoRaLinear",
    "LlamaForCausalLM",
    "init_weights",
    "sparse_nnz",
    "count_params",
    "TARGET_KEYS",
    "PRECISIONS",
]

# "native": every op in the model's dtype as PyTorch computes it (float32, float64);
# "bf16": the seed's pure bf16; "mixed": slc's bf16-mixed (see precision.py).
PRECISIONS = ("native", "bf16", "mixed")

ROPE_BASE = 10000.0

# The seed's target_modules: a Linear whose module name contains one of these
# becomes SpLoRaLinear (all seven projections; embeddings and lm_head are not Linear
# modules under those names).
TARGET_KEYS = ("attn", "mlp", "attention")


class ConfigError(ValueError):
    """A model config or option that cannot describe a model."""


@dataclass
class LlamaConfig:
    """The fields of an HF/SLTrain LLaMA config that the model reads."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_hidden_layers: int
    vocab_size: int
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    max_sequence_length: int = 2048

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, path):
        """Read and validate a config file; errors name the file and field."""
        try:
            with open(path, "r", encoding="utf-8") as f:
                raw = json.load(f)
        except OSError as e:
            raise ConfigError(f"{path}: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a JSON file: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: not a JSON object")
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw, where="config"):
        def field(name, kind, default=None):
            if name not in raw or raw[name] is None:
                if default is None:
                    raise ConfigError(f'{where}: field "{name}" is missing')
                return default
            v = raw[name]
            if kind is int and (not isinstance(v, int) or isinstance(v, bool)):
                raise ConfigError(f'{where}: field "{name}": want an integer, got {v!r}')
            if kind is float and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise ConfigError(f'{where}: field "{name}": want a number, got {v!r}')
            return kind(v)

        c = cls(
            hidden_size=field("hidden_size", int),
            intermediate_size=field("intermediate_size", int),
            num_attention_heads=field("num_attention_heads", int),
            num_hidden_layers=field("num_hidden_layers", int),
            vocab_size=field("vocab_size", int),
            rms_norm_eps=field("rms_norm_eps", float, 1e-6),
            initializer_range=field("initializer_range", float, 0.02),
            max_sequence_length=field("max_sequence_length", int, field("max_position_embeddings", int, 2048)),
        )
        for name in ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "max_sequence_length"):
            if getattr(c, name) <= 0:
                raise ConfigError(f'{where}: field "{name}": must be > 0, got {getattr(c, name)}')
        if c.hidden_size % c.num_attention_heads:
            raise ConfigError(f'{where}: field "hidden_size": {c.hidden_size} is not a multiple of num_attention_heads {c.num_attention_heads}')
        if c.head_dim % 2:
            raise ConfigError(f'{where}: field "hidden_size": head_dim {c.head_dim} must be even (rotary embedding)')
        if not c.rms_norm_eps > 0 or not c.initializer_range > 0:
            raise ConfigError(f'{where}: rms_norm_eps and initializer_range must be > 0')
        if raw.get("tie_word_embeddings"):
            raise ConfigError(f'{where}: field "tie_word_embeddings": the seed\'s LLaMA has an untied lm_head; true is not supported')
        kv = raw.get("num_key_value_heads")
        if kv is not None and kv != c.num_attention_heads:
            raise ConfigError(f'{where}: field "num_key_value_heads": grouped-query attention is not supported')
        theta = raw.get("rope_theta")
        if theta is not None and theta != ROPE_BASE:
            raise ConfigError(f'{where}: field "rope_theta": only base {ROPE_BASE:g} is supported')
        if raw.get("rope_scaling") is not None:
            raise ConfigError(f'{where}: field "rope_scaling": not supported')
        return c


@dataclass
class SLTrainOptions:
    """SLTrain's layer options: rank r, sparsity ratio δ and lora_alpha (scale = alpha/r)."""

    rank: int = 128
    sp_ratio: float = 0.03
    lora_alpha: float = 32.0

    def check(self):
        if self.rank < 1:
            raise ConfigError(f"rank must be >= 1, got {self.rank}")
        if not 0 < self.sp_ratio < 1:
            raise ConfigError(f"sp_ratio must be in (0, 1), got {self.sp_ratio}")
        if not (self.lora_alpha > 0 and math.isfinite(self.lora_alpha)):
            raise ConfigError(f"lora_alpha must be a positive number, got {self.lora_alpha}")


def sparse_nnz(in_features, out_features, sp_ratio):
    """The seed's support size: int(sp_ratio * (in·out)), i.e. floor for positive values."""
    return int(sp_ratio * (in_features * out_features))


class SpLoRaFunction(torch.autograd.Function):
    """y = x·Wᵀ with W = B·(A·scale) + scatter(values at index), memory-saving backward.

    Forward saves only x and the factors (never W). Backward rebuilds W and forms
    dW = dyᵀ·x transiently, then
        dx = dy·W,  dB = dW·(A·scale)ᵀ,  dA = scale·Bᵀ·dW,  dvalues = dW.flat[index].
    This is the seed's sltrain_linear backward; the gradients equal those of
    autograd through the dense W (selftest.py checks it with gradcheck).
    """

    @staticmethod
    def forward(ctx, x, lora_B, lora_A, values, index, scale):
        ctx.save_for_backward(x, lora_B, lora_A, values, index)
        ctx.scale = scale
        w = _dense_weight(lora_B, lora_A, values, index, scale)
        return F.linear(x, w)

    @staticmethod
    def backward(ctx, dy):
        x, lora_B, lora_A, values, index = ctx.saved_tensors
        scale = ctx.scale
        need_x, need_b, need_a, need_v = ctx.needs_input_grad[:4]
        dx = db = da = dv = None
        out_f, in_f = lora_B.shape[0], lora_A.shape[1]
        if need_x:
            w = _dense_weight(lora_B, lora_A, values, index, scale)
            dx = dy.matmul(w)
            del w
        if need_b or need_a or need_v:
            dw = dy.reshape(-1, out_f).t().matmul(x.reshape(-1, in_f))  # [out, in], transient
            if need_b:
                db = dw.matmul((lora_A * scale).t())
            if need_a:
                da = lora_B.t().matmul(dw).mul_(scale)
            if need_v:
                dv = dw.reshape(-1).index_select(0, index)
            del dw
        return dx, db, da, dv, None, None


def _dense_weight(lora_B, lora_A, values, index, scale):
    """W = B·(A·scale) with values added at the flat (row-major) index."""
    w = lora_B.matmul(lora_A * scale)
    w.view(-1).index_add_(0, index, values)
    return w


class SpLoRaLinear(nn.Module):
    """SLTrain's linear layer (no bias): parameters lora_A [r, in], lora_B [out, r],
    sparse_value [nnz]; buffer sparse_index [nnz] (int64, sorted, flat row-major)."""

    def __init__(self, in_features, out_features, opts, dtype=torch.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.r = opts.rank
        self.lora_alpha = opts.lora_alpha
        self.scale = opts.lora_alpha / opts.rank
        self.nnz = sparse_nnz(in_features, out_features, opts.sp_ratio)
        self.lora_A = nn.Parameter(torch.empty(self.r, in_features, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(out_features, self.r, dtype=dtype))
        self.sparse_value = nn.Parameter(torch.empty(self.nnz, dtype=dtype))
        self.register_buffer("sparse_index", torch.zeros(self.nnz, dtype=torch.int64))

    def reset_parameters(self, gen):
        """DESIGN.md's init: B = 0, A and values ~ U(±1/√in), support = the first nnz
        of a random permutation of [0, out·in), sorted."""
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.lora_B.zero_()
            self.lora_A.uniform_(-bound, bound, generator=gen)
            perm = torch.randperm(self.in_features * self.out_features, generator=gen)[: self.nnz]
            self.sparse_index.copy_(torch.sort(perm).values)
            self.sparse_value.uniform_(-bound, bound, generator=gen)

    precision = "native"

    def forward(self, x):
        if self.precision == "bf16":  # the seed: lora_A * scale outside the custom function
            a_s = P.Bf16Scale.apply(self.lora_A, self.scale)
            return P.Bf16SpLoRaFunction.apply(x, self.lora_B, a_s, self.sparse_value, self.sparse_index)
        if self.precision == "mixed":
            return P.MixedSpLoRaFunction.apply(x, self.lora_B, self.lora_A, self.sparse_value, self.sparse_index, self.scale)
        if torch.is_autocast_cpu_enabled() or (x.is_cuda and torch.is_autocast_enabled()):
            # Under torch.autocast (bench.py --dtype bf16-mixed, PyTorch's own mixed
            # precision): what torch.cuda.amp.custom_fwd(cast_inputs=dtype) does on a
            # GPU — every float input cast to the autocast dtype by autograd-tracked
            # casts, the function run with autocast off.
            d = torch.get_autocast_gpu_dtype() if x.is_cuda else torch.get_autocast_cpu_dtype()
            with torch.autocast("cuda" if x.is_cuda else "cpu", enabled=False):
                args = (t.to(d) for t in (x, self.lora_B, self.lora_A, self.sparse_value))
                return SpLoRaFunction.apply(*args, self.sparse_index, self.scale)
        return SpLoRaFunction.apply(x, self.lora_B, self.lora_A, self.sparse_value, self.sparse_index, self.scale)

    def dense_weight(self):
        """The effective W [out, in] (no gradient tracking)."""
        with torch.no_grad():
            return _dense_weight(self.lora_B, self.lora_A, self.sparse_value, self.sparse_index, self.scale)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, nnz={self.nnz}, scale={self.scale:g}"


class RMSNorm(nn.Module):
    """HF 4.28 LlamaRMSNorm: weight · (x · rsqrt(mean(x²) + eps)), in the model dtype.

    In bf16 it is HF's code with a bf16 weight: the variance of x.to(float32) in fp32,
    x · rsqrt in fp32 (type promotion), cast to bf16, then times the weight in bf16.
    """

    precision = "native"

    def __init__(self, size, eps, dtype):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(size, dtype=dtype))

    def forward(self, x):
        if self.precision == "bf16":
            var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
            return self.weight * (x * torch.rsqrt(var + self.eps)).to(self.weight.dtype)
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotary_tables(seq_len, head_dim, dtype):
    """cos, sin [L, head_dim] of HF 4.28's LlamaRotaryEmbedding (positions 0..L−1).

    For float32 it reproduces HF's arithmetic exactly (inv_freq and the outer
    product in float32); for float64 the same formula is evaluated in float64.
    """
    work = torch.float64 if dtype == torch.float64 else torch.float32
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=work) / head_dim))
    t = torch.arange(seq_len, dtype=work)
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Linear(nn.Linear):
    """A bias-free nn.Linear whose product follows the model's precision."""

    precision = "native"

    def forward(self, x):
        if self.precision == "bf16":
            return P.Bf16Linear.apply(x, self.weight)
        if self.precision == "mixed":
            return P.MixedLinear.apply(x, self.weight)
        return F.linear(x, self.weight)


def _dense(in_f, out_f, dtype):
    lin = Linear(in_f, out_f, bias=False, device="meta")
    lin.weight = nn.Parameter(torch.empty(out_f, in_f, dtype=dtype))
    return lin


def _linear(in_f, out_f, name, sl, dtype):
    """A projection: SpLoRaLinear when SLTrain is on and the name is a target, else a bias-free Linear."""
    if sl is not None and any(k in name for k in TARGET_KEYS):
        return SpLoRaLinear(in_f, out_f, sl, dtype)
    return _dense(in_f, out_f, dtype)


class Attention(nn.Module):
    precision = "native"
    sdpa_fp32 = False  # bf16 only: torch ≥ 2.5's math SDPA, which computes in fp32 (precision.bf16_sdpa)

    def __init__(self, cfg, prefix, sl, dtype):
        super().__init__()
        d = cfg.hidden_size
        self.n_heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.q_proj = _linear(d, d, prefix + "q_proj", sl, dtype)
        self.k_proj = _linear(d, d, prefix + "k_proj", sl, dtype)
        self.v_proj = _linear(d, d, prefix + "v_proj", sl, dtype)
        self.o_proj = _linear(d, d, prefix + "o_proj", sl, dtype)

    def forward(self, x, cos, sin):
        b, l, d = x.shape

        def heads(t):
            return t.view(b, l, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.precision == "bf16":  # the seed's SDPA(is_causal=True), math path
            return self.o_proj(P.bf16_sdpa(q, k, v, self.sdpa_fp32).transpose(1, 2).reshape(b, l, d))
        matmul = P.MixedMatMul.apply if self.precision == "mixed" else torch.matmul
        scores = matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        causal = torch.ones(l, l, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        out = matmul(probs, v).transpose(1, 2).reshape(b, l, d)
        return self.o_proj(out)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x)). Registration order gate, down, up is the seed's."""

    precision = "native"

    def __init__(self, cfg, prefix, sl, dtype):
        super().__init__()
        d, ff = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = _linear(d, ff, prefix + "gate_proj", sl, dtype)
        self.down_proj = _linear(ff, d, prefix + "down_proj", sl, dtype)
        self.up_proj = _linear(d, ff, prefix + "up_proj", sl, dtype)

    def forward(self, x):
        silu = P.Bf16Silu.apply if self.precision == "bf16" else F.silu
        return self.down_proj(silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, i, sl, dtype):
        super().__init__()
        p = f"model.layers.{i}."
        self.self_attn = Attention(cfg, p + "self_attn.", sl, dtype)
        self.mlp = MLP(cfg, p + "mlp.", sl, dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg, sl, dtype, padding_idx):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=padding_idx, _weight=torch.empty(cfg.vocab_size, cfg.hidden_size, dtype=dtype))
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, sl, dtype) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)


class LlamaForCausalLM(nn.Module):
    """HF 4.28 LlamaForCausalLM with SLTrain projections when sltrain is given.

    forward(ids) returns the mean cross-entropy of the L−1 next-token predictions
    of each row over the whole batch (labels = ids shifted by one).

    seed_padding_idx=True reproduces one more detail of the seed: its embedding has
    padding_idx = pad_token_id = −1, i.e. row V−1, whose gradient is always zero
    (and which init_weights zeroes). Off by default, as in slc (see README).
    """

    def __init__(self, cfg, sltrain=None, dtype=torch.float32, seed_padding_idx=False):
        super().__init__()
        if sltrain is not None:
            sltrain.check()
        self.config, self.sltrain, self.dtype = cfg, sltrain, dtype
        self.model = LlamaModel(cfg, sltrain, dtype, cfg.vocab_size - 1 if seed_padding_idx else None)
        self.lm_head = _dense(cfg.hidden_size, cfg.vocab_size, dtype)
        self._rope = {}
        self.precision = "native"

    def set_precision(self, precision):
        """Switch every module to "native", "bf16" or "mixed" (see precision.py).

        "bf16" wants bf16 parameters (use to_bf16()); "mixed" wants float32 ones.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        want = {"bf16": torch.bfloat16, "mixed": torch.float32}.get(precision)
        if want is not None and self.dtype != want:
            raise ValueError(f"precision {precision!r} wants {want} parameters, the model has {self.dtype}")
        for m in self.modules():
            if isinstance(m, (SpLoRaLinear, RMSNorm, Linear, Attention, MLP, LlamaForCausalLM)):
                m.precision = precision
        return self

    def to_bf16(self, sdpa_fp32=False):
        """The seed's --dtype bfloat16: model.to(dtype=torch.bfloat16) after the SLTrain
        wrapping (every float parameter rounded to bf16, nearest even; sparse_index stays
        int64), then bf16 computation throughout. sdpa_fp32: the attention as torch ≥ 2.5's
        math SDPA computes it (in fp32, see precision.bf16_sdpa); default torch 2.0–2.4's."""
        self.to(dtype=torch.bfloat16)
        self.dtype = torch.bfloat16
        self._rope = {}
        for m in self.modules():
            if isinstance(m, Attention):
                m.sdpa_fp32 = bool(sdpa_fp32)
        return self.set_precision("bf16")

    def rope(self, seq_len):
        if seq_len not in self._rope:
            self._rope[seq_len] = rotary_tables(seq_len, self.config.head_dim, self.dtype)
        return self._rope[seq_len]

    def logits(self, ids):
        cos, sin = self.rope(ids.shape[1])
        if cos.device != ids.device:  # a model moved to a GPU (bench.py --device cuda)
            cos, sin = cos.to(ids.device), sin.to(ids.device)
            self._rope[ids.shape[1]] = (cos, sin)
        emb = self.model.embed_tokens
        if self.precision == "bf16":
            h = P.Bf16Embedding.apply(emb.weight, ids, emb.padding_idx)
        else:
            h = emb(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin)
        return self.lm_head(self.model.norm(h))

    def forward(self, ids, labels=None):
        """The mean next-token cross-entropy; labels (default: ids) of -100 are left
        out of the mean, as HF's LlamaForCausalLM does (float32/float64 only)."""
        if labels is not None and self.precision != "native":
            raise NotImplementedError("labels with -100 are built for the native precisions")
        if self.precision == "mixed":
            with P.mixed_saved_tensors():
                return self._loss(ids)
        return self._loss(ids, labels)

    def _loss(self, ids, labels=None):
        logits = self.logits(ids)
        v = logits.shape[-1]
        if labels is not None:
            return F.cross_entropy(logits[:, :-1, :].reshape(-1, v), labels[:, 1:].reshape(-1), ignore_index=-100)
        z, t = logits[:, :-1, :].reshape(-1, v), ids[:, 1:].reshape(-1)
        if self.precision == "bf16":
            return P.Bf16CrossEntropy.apply(z.contiguous(), t.contiguous())
        if self.precision == "mixed":
            return P.MixedCrossEntropy.apply(z, t)
        return F.cross_entropy(z, t)


def init_weights(model, gen):
    """DESIGN.md's init: Linear and Embedding ~ N(0, initializer_range), norms = 1,
    SpLoRaLinear per SpLoRaLinear.reset_parameters; modules in registration order."""
    std = model.config.initializer_range
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SpLoRaLinear):
                m.reset_parameters(gen)
            elif isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std, generator=gen)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)


def count_params(model):
    """Number of parameter elements (buffers such as sparse_index excluded), as the seed's 'Total params'."""
    return sum(p.numel() for p in model.parameters())
