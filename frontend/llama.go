package frontend

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"gitee.com/gidean/conv-linn/frontend/nexttoken"
	"gitee.com/gidean/conv-linn/ir"
)

// Options fixes the static shapes and the initialisation of a built model.
// Errors about them use the seed's flag names (batch_size, max_length).
type Options struct {
	BatchSize int      // rows per micro-batch (> 0)
	SeqLen    int      // tokens per row (>= 2, <= MaxSequenceLength)
	Seed      uint64   // init seed; per-tensor seeds via ir.SeedFor(Seed, name)
	DType     ir.DType // F32 by default (zero value means F32); F64 is used by finite-difference tests
	// LossMask adds the data input "loss_mask" (f32[B, L−1]): the loss is
	// then the mean CE over the positions whose mask is 1 (HF's labels of −100
	// for the rest, as the seed sets them for pad tokens): Σ mask·CE / Σ mask
	// over the micro-batch, in f32, rounded once to the model's dtype.
	LossMask bool
}

// maxElements bounds every activation's element count so that its size in bytes
// (8 per f64 element) fits an int64.
const maxElements = math.MaxInt64 / 8

// BuildLlama returns a module holding one graph named "forward" with data input
// "input_ids" (i64[B, L]) and outputs "loss" (scalar, mean CE of the L−1 next-token
// predictions of each row, labels = input ids shifted by one; with
// Options.LossMask, of the positions the data input "loss_mask" keeps) and
// "logits" ([B, L, V]).
// Module.Meta records "model_config" (the raw JSON), "batch_size", "max_length", "seed", "dtype",
// and "rows": "documents" with LossMask.
//
// The graph is transformers 4.28's LlamaForCausalLM: parameters carry HF's names
// and appear in HF's state-dict order; every projection is a Linear node whose
// Name is its module's name (e.g. "model.layers.0.self_attn.q_proj"), other nodes
// are named after their enclosing module. Only shapes and initialiser specs are
// built, so even a 7B model is cheap.
//
// Two details of the seed are not modelled: its nn.Embedding has padding_idx =
// pad_token_id (-1 in its configs, so row V−1 starts at zero and never trains),
// and its training loop sets the labels of the tokenizer's pad tokens to -100 so
// that they drop out of the mean. Here every embedding row is initialised and
// trained alike and every position counts: the same loss and gradients as the
// seed for batches without pad tokens or token V−1.
func BuildLlama(cfg *LlamaConfig, opt Options) (*ir.Module, error) {
	if cfg == nil {
		return nil, errors.New("no model config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dt, err := opt.check(cfg)
	if err != nil {
		return nil, err
	}
	l := &llama{cfg: cfg, opt: opt, dt: dt, b: ir.NewBuilder("forward")}
	l.declareInputs()
	l.forward()
	if err := l.b.Err(); err != nil {
		// The config and options were validated, so this is a frontend bug; say so
		// rather than blame the user's file.
		return nil, fmt.Errorf("frontend: building the LLaMA graph: %w", err)
	}
	cfgJSON, err := cfg.json()
	if err != nil {
		return nil, err
	}
	meta := map[string]string{
		"model_config": string(cfgJSON),
		"batch_size":   strconv.Itoa(opt.BatchSize),
		"max_length":   strconv.Itoa(opt.SeqLen),
		"seed":         strconv.FormatUint(opt.Seed, 10),
		"dtype":        dt.String(),
	}
	if opt.LossMask {
		meta["rows"] = "documents" // the loss reads loss_mask: slc train's --rows documents
	}
	return &ir.Module{Meta: meta, Graphs: []*ir.Graph{l.b.G}}, nil
}

// check validates the options against the config and returns the float dtype.
func (opt Options) check(cfg *LlamaConfig) (ir.DType, error) {
	if opt.BatchSize < 1 {
		return 0, fmt.Errorf("batch_size must be >= 1, got %d", opt.BatchSize)
	}
	if opt.SeqLen < 2 {
		return 0, fmt.Errorf("max_length (tokens per row) must be >= 2 for a next-token loss, got %d", opt.SeqLen)
	}
	if opt.SeqLen > cfg.MaxSequenceLength {
		return 0, fmt.Errorf("max_length %d exceeds the model's field \"max_sequence_length\" (%d)", opt.SeqLen, cfg.MaxSequenceLength)
	}
	dt := opt.DType
	switch dt {
	case ir.InvalidDType:
		dt = ir.F32
	case ir.F32, ir.F64, ir.BF16:
	default:
		return 0, fmt.Errorf("dtype %v is not supported by the LLaMA frontend (want f32, bf16 or f64)", dt)
	}
	b, seq := opt.BatchSize, opt.SeqLen
	for _, s := range []struct {
		what string
		dims []int
	}{
		{"the logits", []int{b, seq, cfg.VocabSize}},
		{"the attention scores", []int{b, cfg.NumAttentionHeads, seq, seq}},
		{"the MLP activations", []int{b, seq, cfg.IntermediateSize}},
	} {
		if !fits(s.dims) {
			return 0, fmt.Errorf("batch_size %d × max_length %d is too large: %s %v would have more than %d elements", b, seq, s.what, s.dims, int64(maxElements))
		}
	}
	return dt, nil
}

// fits reports whether the product of positive dims is at most maxElements.
func fits(dims []int) bool {
	n := int64(1)
	for _, d := range dims {
		if int64(d) > maxElements/n {
			return false
		}
		n *= int64(d)
	}
	return true
}

// json returns the config's JSON for the module metadata: the file's own bytes
// when it came from one, else the fields slc reads under their HF names.
func (c *LlamaConfig) json() ([]byte, error) {
	if len(c.Raw) > 0 {
		return c.Raw, nil
	}
	data, err := json.Marshal(map[string]any{
		"model_type":          c.ModelType,
		"hidden_size":         c.HiddenSize,
		"intermediate_size":   c.IntermediateSize,
		"num_attention_heads": c.NumAttentionHeads,
		"num_hidden_layers":   c.NumHiddenLayers,
		"vocab_size":          c.VocabSize,
		"max_sequence_length": c.MaxSequenceLength,
		"rms_norm_eps":        c.RMSNormEps,
		"initializer_range":   c.InitializerRange,
		"hidden_act":          c.HiddenAct,
		"tie_word_embeddings": c.TieWordEmbeddings,
	})
	if err != nil {
		return nil, fmt.Errorf("frontend: encoding the model config: %w", err)
	}
	return data, nil
}

// llama holds the state of one BuildLlama call.
type llama struct {
	cfg *LlamaConfig
	opt Options
	dt  ir.DType
	b   *ir.Builder

	ids    string // input_ids
	embed  string // model.embed_tokens.weight
	layers []layerWeights
	norm   string // model.norm.weight
	lmHead string // lm_head.weight, or the embedding when tied
}

// layerWeights names the parameters of one decoder layer.
type layerWeights struct {
	q, k, v, o, gate, up, down, inputNorm, postNorm string
}

// declareInputs adds input_ids and then every parameter in the order of the
// seed's state_dict(), which follows module registration in its
// modeling_llama.py: embed_tokens; per layer self_attn (q, k, v, o), mlp (gate,
// down, up: LlamaMLP registers down_proj before up_proj), input_layernorm,
// post_attention_layernorm; model.norm; lm_head. (The state dict also holds the
// rotary inv_freq buffer; here the RoPE op computes it.)
func (l *llama) declareInputs() {
	c, b := l.cfg, l.b
	d, ff, v := c.HiddenSize, c.IntermediateSize, c.VocabSize
	l.ids = b.AddInput("input_ids", ir.T(ir.I64, l.opt.BatchSize, l.opt.SeqLen), ir.Data, nil)
	normal := func(name string, shape ...int) string {
		init := &ir.Init{Kind: ir.InitNormal, Std: c.InitializerRange, Seed: ir.SeedFor(l.opt.Seed, name)}
		return b.AddInput(name, ir.T(l.dt, shape...), ir.Param, init)
	}
	ones := func(name string, n int) string {
		return b.AddInput(name, ir.T(l.dt, n), ir.Param, &ir.Init{Kind: ir.InitOnes})
	}
	l.embed = normal("model.embed_tokens.weight", v, d)
	for i := range c.NumHiddenLayers {
		p := "model.layers." + strconv.Itoa(i) + "."
		var w layerWeights
		w.q = normal(p+"self_attn.q_proj.weight", d, d)
		w.k = normal(p+"self_attn.k_proj.weight", d, d)
		w.v = normal(p+"self_attn.v_proj.weight", d, d)
		w.o = normal(p+"self_attn.o_proj.weight", d, d)
		w.gate = normal(p+"mlp.gate_proj.weight", ff, d)
		w.down = normal(p+"mlp.down_proj.weight", d, ff)
		w.up = normal(p+"mlp.up_proj.weight", ff, d)
		w.inputNorm = ones(p+"input_layernorm.weight", d)
		w.postNorm = ones(p+"post_attention_layernorm.weight", d)
		l.layers = append(l.layers, w)
	}
	l.norm = ones("model.norm.weight", d)
	if c.TieWordEmbeddings {
		l.lmHead = l.embed
	} else {
		l.lmHead = normal("lm_head.weight", v, d)
	}
}

// forward emits LlamaForCausalLM.forward with labels = input_ids.
func (l *llama) forward() {
	b := l.b
	seq := l.opt.SeqLen

	b.Scope = "model.embed_tokens"
	x := b.Op("Gather", nil, l.embed, l.ids)
	for i := range l.layers {
		x = l.decoderLayer(i, x)
	}
	x = l.rmsNorm("model.norm", x, l.norm)
	logits := l.linear("lm_head", x, l.lmHead)

	// loss = mean over rows and positions of CE(logits[:, t], input_ids[:, t+1]).
	// The loss takes the hidden states of positions 0..L−2 through lm_head
	// itself, rather than slicing the logits: the same values, but the slice
	// (and its gradient) moves [B, L, d] instead of [B, L, V], and lm_head
	// does L−1 rows of work in training. The "logits" output keeps all L.
	b.Scope = "loss"
	head := l.linear("lm_head", b.Slice(x, 1, 0, seq-1), l.lmHead)
	loss := nexttoken.Loss(b, head, l.ids, l.opt.LossMask)
	b.Output("loss", loss)
	b.Output("logits", logits)
}

// decoderLayer is LlamaDecoderLayer: pre-norm attention and MLP, each added to
// the residual stream.
func (l *llama) decoderLayer(i int, x string) string {
	b, w := l.b, l.layers[i]
	p := "model.layers." + strconv.Itoa(i)
	h := l.attention(p+".self_attn", l.rmsNorm(p+".input_layernorm", x, w.inputNorm), w)
	b.Scope = p
	h = b.Add(x, h)
	m := l.mlp(p+".mlp", l.rmsNorm(p+".post_attention_layernorm", h, w.postNorm), w)
	b.Scope = p
	return b.Add(h, m)
}

// rmsNorm is LlamaRMSNorm: w · (x · rsqrt(mean(x², last axis) + ε)). In
// bf16 it is HF 4.28's: x goes to f32 for the variance and the product with
// rsqrt, which is cast back to bf16 before the weight multiplies it.
func (l *llama) rmsNorm(scope, x, w string) string {
	b := l.b
	b.Scope = scope
	xf := l.toF32(x)
	variance := b.Reduce("ReduceMean", b.Mul(xf, xf), true, -1)
	inv := b.Unary("Rsqrt", b.Add(variance, b.Scalar(l.cfg.RMSNormEps, xf)))
	return b.Mul(w, l.fromF32(b.Mul(xf, inv)))
}

// toF32 and fromF32 are the casts of HF 4.28's half-precision paths: for a
// bf16 model, to f32 and back to bf16; for f32 and f64 models, nothing.
func (l *llama) toF32(x string) string {
	if l.dt != ir.BF16 {
		return x
	}
	return l.b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, x)
}

func (l *llama) fromF32(x string) string {
	if l.dt != ir.BF16 {
		return x
	}
	return l.b.Op("Cast", ir.Attrs{"to": ir.String(l.dt.String())}, x)
}

// linear applies a bias-free nn.Linear; the node carries the module's name so
// that the SLTrain fusion pass can match it.
func (l *llama) linear(scope, x, w string) string {
	l.b.Scope = scope
	return l.b.Op("Linear", nil, x, w)
}

// attention is LlamaAttention: causal multi-head softmax attention with the
// rotary embedding applied to queries and keys.
func (l *llama) attention(scope, x string, w layerWeights) string {
	b := l.b
	bs, seq := l.opt.BatchSize, l.opt.SeqLen
	nh, hd := l.cfg.NumAttentionHeads, l.cfg.HeadDim()

	q := l.linear(scope+".q_proj", x, w.q)
	k := l.linear(scope+".k_proj", x, w.k)
	v := l.linear(scope+".v_proj", x, w.v)
	b.Scope = scope
	heads := func(t string) string { // [B, L, d] → [B, H, L, hd]
		return b.Transpose(b.Reshape(t, bs, seq, nh, hd), 0, 2, 1, 3)
	}
	rope := func(t string) string {
		return b.Op("RoPE", ir.Attrs{"base": ir.Float(ropeBase), "seq_axis": ir.Int(-2)}, t)
	}
	q, k, v = rope(heads(q)), rope(heads(k)), heads(v)
	if l.dt == ir.BF16 {
		// The seed's attention in bf16: F.scaled_dot_product_attention on
		// its math path (the seed turns the fused kernels off; torch
		// 2.1–2.4): q and k each times c = √(1/√hd) (f32 math, rounded),
		// a bf16 product, the causal mask, the softmax computed in f32 and
		// rounded, a bf16 product with v.
		c := math.Sqrt(1 / math.Sqrt(float64(hd)))
		scaled := func(t string) string { tf := l.toF32(t); return l.fromF32(b.Mul(tf, b.Scalar(c, tf))) }
		scores := b.MatMul(scaled(q), scaled(k), false, true)
		probs := l.fromF32(b.Op("Softmax", ir.Attrs{"axis": ir.Int(-1)}, l.toF32(b.Op("CausalMask", nil, scores))))
		return l.attentionOut(scope, probs, v, w)
	}
	scores := b.MatMul(q, k, false, true)
	scores = b.Mul(scores, b.Scalar(1/math.Sqrt(float64(hd)), scores))
	probs := b.Op("Softmax", ir.Attrs{"axis": ir.Int(-1)}, b.Op("CausalMask", nil, scores))
	return l.attentionOut(scope, probs, v, w)
}

// attentionOut is the attention's probs·v, heads merged, and o_proj.
func (l *llama) attentionOut(scope, probs, v string, w layerWeights) string {
	b := l.b
	bs, seq, d := l.opt.BatchSize, l.opt.SeqLen, l.cfg.HiddenSize
	out := b.MatMul(probs, v, false, false)
	out = b.Reshape(b.Transpose(out, 0, 2, 1, 3), bs, seq, d)
	return l.linear(scope+".o_proj", out, w.o)
}

// mlp is LlamaMLP: down(silu(gate(x)) · up(x)).
func (l *llama) mlp(scope, x string, w layerWeights) string {
	b := l.b
	g := l.linear(scope+".gate_proj", x, w.gate)
	b.Scope = scope
	g = b.Unary("Silu", g)
	u := l.linear(scope+".up_proj", x, w.up)
	b.Scope = scope
	return l.linear(scope+".down_proj", b.Mul(g, u), w.down)
}
