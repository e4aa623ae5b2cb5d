package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// TransformersVersion is the transformers release whose LlamaConfig the HF
// export's config.json is written for: the keys, types and spellings that
// release's LlamaConfig.save_pretrained writes for a LLaMA without GQA,
// biases, rotary scaling or dropout. 4.55 is the last line that spells the
// weights' dtype "torch_dtype" (4.56 renamed it "dtype" and still reads the old
// name, as transformers 5 does; 5 also reads the top-level rope_theta into its
// rope_parameters).
const TransformersVersion = "4.55.4"

// srcConfig names the source of the HF config in errors.
const srcConfig = "the checkpoint's " + ConfigFile

// sourceOnly are the keys of a source config that the HF config replaces or
// drops: the seed's max_sequence_length (written as max_position_embeddings),
// the dtype of other weights, the version that wrote it, and where it came
// from.
var sourceOnly = []string{"max_sequence_length", "torch_dtype", "dtype", "transformers_version", "_name_or_path"}

// sourceArchitectures are the architectures a source config may name: HF's
// current spelling and the one of the seed's configs (the LLaMA port before
// transformers 4.28 renamed it).
var sourceArchitectures = []string{"LlamaForCausalLM", "LLaMAForCausalLM"}

// torchDType is PyTorch's name of an export dtype, as config.json spells it.
func torchDType(dt ir.DType) (string, error) {
	switch dt {
	case ir.F32:
		return "float32", nil
	case ir.BF16:
		return "bfloat16", nil
	case ir.F16:
		return "float16", nil
	case ir.F64:
		return "float64", nil
	}
	return "", fmt.Errorf("export dtype must be f32, bf16, f16 or f64, got %v", dt)
}

// pyFloat is a float that JSON-encodes with a decimal point or an exponent,
// so that Python's json reads it as a float ("rope_theta": 10000.0), as
// transformers writes it.
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("%v is not a JSON number", v)
	}
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return []byte(s), nil
}

// hfConfigError names the source file and one of its fields.
func hfConfigError(field, format string, args ...any) error {
	return fmt.Errorf("%s: field %q: %s", srcConfig, field, fmt.Sprintf(format, args...))
}

// HFConfig returns the config.json of the HF export of a model with the
// source config raw (a checkpoint's config.json: the seed's transformers-4.28
// LLaMA config, or an HF one) and weights in dt: the keys transformers
// TransformersVersion's LlamaConfig writes, sorted and indented as
// save_pretrained writes them, which LlamaConfig and
// LlamaForCausalLM.from_pretrained accept as they are:
//
//	architectures ["LlamaForCausalLM"], model_type "llama", transformers_version,
//	torch_dtype (dt: "float32", "bfloat16", …), hidden_size, intermediate_size,
//	num_hidden_layers, num_attention_heads, num_key_value_heads (= heads),
//	head_dim (hidden_size/heads), hidden_act "silu", max_position_embeddings
//	(the seed's max_sequence_length), rms_norm_eps, initializer_range,
//	vocab_size, tie_word_embeddings, rope_theta 10000.0, rope_scaling null,
//	attention_bias false, attention_dropout 0.0, mlp_bias false,
//	pretraining_tp 1, use_cache, bos_token_id, eos_token_id, pad_token_id.
//
// The token ids are the source's when they name a token of the vocabulary;
// absent or negative (the seed's pad_token_id is -1: no padding token) they
// are written as null, never left out: transformers would take its own
// defaults (bos 1, eos 2), and a pad id of -1 would make its embedding's
// padding_idx the last row, which slc trains like any other.
//
// The source config must describe a LLaMA slc builds (frontend's checks:
// silu, no GQA, no biases, rotary base 10000, …). Keys the HF config does
// not write or replace (max_sequence_length, torch_dtype, dtype,
// transformers_version, _name_or_path) are carried over as they are, as
// transformers keeps unknown config keys: slc train accepted the file, so its
// export must not fail on it after the run. Errors name the file and the
// field.
func HFConfig(raw []byte, dt ir.DType) ([]byte, error) {
	cfg, m, err := parseSource(raw)
	if err != nil {
		return nil, err
	}
	td, err := torchDType(dt)
	if err != nil {
		return nil, err
	}
	out := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"transformers_version":    TransformersVersion,
		"torch_dtype":             td,
		"hidden_size":             cfg.HiddenSize,
		"intermediate_size":       cfg.IntermediateSize,
		"num_hidden_layers":       cfg.NumHiddenLayers,
		"num_attention_heads":     cfg.NumAttentionHeads,
		"num_key_value_heads":     cfg.NumAttentionHeads,
		"head_dim":                cfg.HeadDim(),
		"hidden_act":              cfg.HiddenAct,
		"max_position_embeddings": cfg.MaxSequenceLength,
		"rms_norm_eps":            pyFloat(cfg.RMSNormEps),
		"initializer_range":       pyFloat(cfg.InitializerRange),
		"vocab_size":              cfg.VocabSize,
		"tie_word_embeddings":     cfg.TieWordEmbeddings,
		"rope_theta":              pyFloat(10000),
		"rope_scaling":            nil,
		"attention_bias":          false,
		"attention_dropout":       pyFloat(0),
		"mlp_bias":                false,
		"pretraining_tp":          1,
		"use_cache":               true,
	}
	for _, k := range []string{"architectures", "max_position_embeddings", "use_cache", "pretraining_tp"} {
		if err := checkSourceField(k, m[k], cfg, out); err != nil {
			return nil, err
		}
	}
	if cfg.InitializerRange > 1 {
		// transformers 5's LlamaConfig validates 0 <= initializer_range <= 1.
		return nil, hfConfigError("initializer_range", "must be <= 1 for transformers, got %v", cfg.InitializerRange)
	}
	for _, k := range []string{"bos_token_id", "eos_token_id", "pad_token_id"} {
		v, err := tokenID(k, m[k], cfg.VocabSize)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	for k, v := range m {
		if _, ok := out[k]; !ok && !slices.Contains(sourceOnly, k) {
			out[k] = v // as transformers does: an extra key stays an attribute of the config
		}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the HF %s: %w", ConfigFile, err)
	}
	return append(data, '\n'), nil
}

// parseSource reads a source config with frontend's checks and as a map of
// its keys.
func parseSource(raw []byte) (*frontend.LlamaConfig, map[string]json.RawMessage, error) {
	cfg, err := frontend.ParseLlamaConfig(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", srcConfig, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")), &m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", srcConfig, err)
	}
	return cfg, m, nil
}

// checkSourceField checks a source field that frontend does not read, or
// reads under a rule the HF config adds to (raw nil: absent); out holds the
// HF values.
func checkSourceField(k string, raw json.RawMessage, cfg *frontend.LlamaConfig, out map[string]any) error {
	if raw == nil || isNull(raw) {
		return nil
	}
	switch k {
	case "architectures":
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			return hfConfigError(k, "must be a list of names, got %s", clip(raw))
		}
		for _, n := range names {
			if !slices.Contains(sourceArchitectures, n) {
				return hfConfigError(k, "%q is not a LLaMA causal LM (want LlamaForCausalLM)", n)
			}
		}
	case "max_position_embeddings":
		v, err := intField(k, raw)
		if err != nil {
			return err
		}
		if v != cfg.MaxSequenceLength {
			return hfConfigError(k, "%d disagrees with max_sequence_length %d", v, cfg.MaxSequenceLength)
		}
	case "use_cache":
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return hfConfigError(k, "must be true or false, got %s", clip(raw))
		}
		out[k] = b
	case "pretraining_tp":
		// HF's slices of a tensor-parallel pretraining compute the same
		// product; the export's unsplit weights are pretraining_tp 1.
		v, err := intField(k, raw)
		if err != nil {
			return err
		}
		if v < 1 {
			return hfConfigError(k, "must be >= 1, got %d", v)
		}
	}
	return nil
}

// tokenID returns the HF value of a token id field: the id when it is in
// [0, vocab), nil (null) when absent, null or negative. eos_token_id may be a
// list of ids, as HF allows.
func tokenID(k string, raw json.RawMessage, vocab int) (any, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	inRange := func(v int) error {
		if v >= vocab {
			return hfConfigError(k, "%d is not a token of the vocabulary (vocab_size %d)", v, vocab)
		}
		return nil
	}
	if k == "eos_token_id" && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
		var ids []json.RawMessage
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, hfConfigError(k, "must be an integer or a list of integers, got %s", clip(raw))
		}
		list := make([]int, 0, len(ids))
		for _, r := range ids {
			v, err := intField(k, r)
			if err != nil {
				return nil, err
			}
			if v < 0 {
				return nil, hfConfigError(k, "%d in the list is not a token id", v)
			}
			if err := inRange(v); err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	}
	v, err := intField(k, raw)
	if err != nil {
		return nil, err
	}
	if v < 0 {
		return nil, nil
	}
	if err := inRange(v); err != nil {
		return nil, err
	}
	return v, nil
}

// intField decodes an integer field.
func intField(k string, raw json.RawMessage) (int, error) {
	s := strings.TrimSpace(string(raw))
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, hfConfigError(k, "integer %s is out of range", clip(raw))
		}
		return 0, hfConfigError(k, "must be an integer, got %s", clip(raw))
	}
	return int(v), nil
}

func isNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// clip shortens a raw JSON value for an error message.
func clip(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// hfTensor is one tensor of LlamaForCausalLM's state dict.
type hfTensor struct {
	name  string
	shape []int
}

// hfStateDict lists the state dict of transformers' LlamaForCausalLM for cfg
// (without the rotary inv_freq buffers, which are not saved), in its order.
func hfStateDict(cfg *frontend.LlamaConfig) []hfTensor {
	d, ff, v := cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize
	ts := []hfTensor{{"model.embed_tokens.weight", []int{v, d}}}
	for i := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ts = append(ts,
			hfTensor{p + "self_attn.q_proj.weight", []int{d, d}},
			hfTensor{p + "self_attn.k_proj.weight", []int{d, d}},
			hfTensor{p + "self_attn.v_proj.weight", []int{d, d}},
			hfTensor{p + "self_attn.o_proj.weight", []int{d, d}},
			hfTensor{p + "mlp.gate_proj.weight", []int{ff, d}},
			hfTensor{p + "mlp.up_proj.weight", []int{ff, d}},
			hfTensor{p + "mlp.down_proj.weight", []int{d, ff}},
			hfTensor{p + "input_layernorm.weight", []int{d}},
			hfTensor{p + "post_attention_layernorm.weight", []int{d}})
	}
	ts = append(ts, hfTensor{"model.norm.weight", []int{d}})
	if !cfg.TieWordEmbeddings {
		ts = append(ts, hfTensor{"lm_head.weight", []int{v, d}})
	}
	return ts
}

// checkHFTensors checks that the export's tensors are exactly the state dict
// the config makes transformers build, so that from_pretrained neither
// initializes a missing weight at random nor drops an unexpected one.
func checkHFTensors(raw []byte, header *safetensors.File) error {
	cfg, err := frontend.ParseLlamaConfig(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", srcConfig, err)
	}
	sizes := fmt.Sprintf("vocab_size %d, hidden_size %d, intermediate_size %d, num_hidden_layers %d, tie_word_embeddings %v",
		cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.TieWordEmbeddings)
	want := map[string][]int{}
	for _, t := range hfStateDict(cfg) {
		want[t.name] = t.shape
	}
	for _, t := range header.Tensors {
		shape, ok := want[t.Name]
		if !ok {
			return fmt.Errorf("tensor %s is not a weight of LlamaForCausalLM with %s (%s)", t.Name, srcConfig, sizes)
		}
		if !ir.ShapeEqual(t.Shape, shape) {
			return fmt.Errorf("tensor %s is %v, but %s (%s) makes it %v", t.Name, t.Shape, srcConfig, sizes, shape)
		}
	}
	for _, t := range hfStateDict(cfg) {
		if header.Get(t.name) == nil {
			return fmt.Errorf("the checkpoint has no %s, a weight of LlamaForCausalLM with %s (%s)", t.name, srcConfig, sizes)
		}
	}
	return nil
}
