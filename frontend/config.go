package frontend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// LlamaConfig is an HF/SLTrain LLaMA config (the fields slc uses).
//
// The JSON field names are transformers 4.28's: model_type, hidden_size,
// intermediate_size, num_attention_heads, num_hidden_layers, vocab_size,
// max_sequence_length (the seed's name; HF's max_position_embeddings is read when
// it is absent), rms_norm_eps, initializer_range, hidden_act and
// tie_word_embeddings. Other fields (bos_token_id, use_cache, …) are kept in Raw
// and otherwise ignored.
type LlamaConfig struct {
	ModelType         string  // "llama"
	HiddenSize        int     // d, the model width
	IntermediateSize  int     // the MLP width
	NumAttentionHeads int     // H; head_dim = d/H
	NumHiddenLayers   int     // decoder layers
	VocabSize         int     // V
	MaxSequenceLength int     // the longest sequence a batch may hold
	RMSNormEps        float64 // ε of every RMSNorm
	InitializerRange  float64 // std of the normal init of Linear and Embedding weights
	HiddenAct         string  // must be "silu"
	TieWordEmbeddings bool    // lm_head reuses model.embed_tokens.weight
	Raw               []byte  // the file's bytes, kept for metadata/export
}

// Limits that keep every shape and parameter count far from integer overflow
// (and a typo such as "num_hidden_layers": 100000000 from exhausting memory while
// the graph is built). Real LLaMA models sit well inside them.
const (
	maxDim    = 1 << 24 // any width, vocabulary or sequence length
	maxLayers = 1024
)

// Defaults of transformers 4.28's LlamaConfig for the fields a config may omit.
// The size fields have no default here: HF's (a 7B model) would turn a forgotten
// field into a surprise, so they are required.
const (
	defaultRMSNormEps       = 1e-6
	defaultInitializerRange = 0.02
	defaultHiddenAct        = "silu"
	defaultMaxSeqLen        = 2048 // HF's max_position_embeddings default
	ropeBase                = 10000.0
)

// ReadLlamaConfig reads and validates a config file. Errors start with the path.
func ReadLlamaConfig(path string) (*LlamaConfig, error) {
	data, err := readSmallFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := ParseLlamaConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// maxConfigBytes bounds what ReadLlamaConfig reads: a config is a few hundred
// bytes, and a wrong path (a dataset, /dev/zero) must fail fast, not fill memory.
const maxConfigBytes = 1 << 20

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("larger than %d bytes: not a model config", maxConfigBytes)
	}
	return data, nil
}

// ParseLlamaConfig decodes and validates a config. Errors name the JSON field
// (`field "hidden_size": must be > 0, got 0`); a malformed document gives the line
// and column of the problem. Field names match exactly, as in Python: an unknown
// spelling such as "Hidden_Size" is ignored like any other extra field.
func ParseLlamaConfig(data []byte) (*LlamaConfig, error) {
	body := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // tolerate a UTF-8 BOM
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, documentError(body, err)
	}
	if m == nil {
		return nil, errors.New("config must be a JSON object, got null")
	}
	f := &fields{m: m}
	c := &LlamaConfig{
		ModelType:         f.str("model_type", "", true),
		HiddenSize:        f.int("hidden_size", 0, true),
		IntermediateSize:  f.int("intermediate_size", 0, true),
		NumAttentionHeads: f.int("num_attention_heads", 0, true),
		NumHiddenLayers:   f.int("num_hidden_layers", 0, true),
		VocabSize:         f.int("vocab_size", 0, true),
		RMSNormEps:        f.float("rms_norm_eps", defaultRMSNormEps),
		InitializerRange:  f.float("initializer_range", defaultInitializerRange),
		HiddenAct:         f.str("hidden_act", defaultHiddenAct, false),
		TieWordEmbeddings: f.bool("tie_word_embeddings", false),
	}
	if f.present("max_sequence_length") || !f.present("max_position_embeddings") {
		c.MaxSequenceLength = f.int("max_sequence_length", defaultMaxSeqLen, false)
	} else {
		c.MaxSequenceLength = f.int("max_position_embeddings", 0, false)
	}
	if f.err != nil {
		return nil, f.err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := f.unsupported(c); err != nil {
		return nil, err
	}
	c.Raw = bytes.Clone(data)
	return c, nil
}

// Validate checks that the config describes a LLaMA slc can build. Errors name
// the JSON field.
func (c *LlamaConfig) Validate() error {
	if c == nil {
		return errors.New("no model config")
	}
	if c.ModelType != "llama" {
		return fieldError("model_type", "must be \"llama\", got %s", clip(strconv.Quote(c.ModelType)))
	}
	if c.HiddenAct != "silu" {
		return fieldError("hidden_act", "must be \"silu\" (LLaMA's SwiGLU MLP), got %s", clip(strconv.Quote(c.HiddenAct)))
	}
	for _, s := range []struct {
		name      string
		v, lo, hi int
		why       string
	}{
		{"hidden_size", c.HiddenSize, 1, maxDim, ""},
		{"intermediate_size", c.IntermediateSize, 1, maxDim, ""},
		{"num_attention_heads", c.NumAttentionHeads, 1, maxDim, ""},
		{"num_hidden_layers", c.NumHiddenLayers, 1, maxLayers, ""},
		{"vocab_size", c.VocabSize, 1, maxDim, ""},
		{"max_sequence_length", c.MaxSequenceLength, 2, maxDim, " (the loss predicts each token from the ones before it)"},
	} {
		switch {
		case s.v < s.lo && s.lo == 1:
			return fieldError(s.name, "must be > 0, got %d", s.v)
		case s.v < s.lo:
			return fieldError(s.name, "must be >= %d%s, got %d", s.lo, s.why, s.v)
		case s.v > s.hi:
			return fieldError(s.name, "must be <= %d, got %d", s.hi, s.v)
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fieldError("hidden_size", "%d is not divisible by num_attention_heads (%d)", c.HiddenSize, c.NumAttentionHeads)
	}
	if hd := c.HeadDim(); hd%2 != 0 {
		return fieldError("hidden_size", "head_dim = hidden_size/num_attention_heads = %d/%d = %d must be even (the rotary embedding rotates pairs of features)",
			c.HiddenSize, c.NumAttentionHeads, hd)
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return fieldError("rms_norm_eps", "must be > 0 and finite, got %v", c.RMSNormEps)
	}
	if !(c.InitializerRange >= 0) || math.IsInf(c.InitializerRange, 0) {
		return fieldError("initializer_range", "must be >= 0 and finite, got %v", c.InitializerRange)
	}
	return nil
}

// HeadDim is hidden_size / num_attention_heads.
func (c *LlamaConfig) HeadDim() int { return c.HiddenSize / c.NumAttentionHeads }

// NumParams is the number of trainable parameters BuildLlama creates:
// V·d·(2, or 1 when tied) + L·(4d² + 3·d·ff + 2d) + d.
func (c *LlamaConfig) NumParams() int64 {
	v, d, ff, l := int64(c.VocabSize), int64(c.HiddenSize), int64(c.IntermediateSize), int64(c.NumHiddenLayers)
	emb := 2 * v * d
	if c.TieWordEmbeddings {
		emb = v * d
	}
	return emb + l*(4*d*d+3*d*ff+2*d) + d
}

func fieldError(name, format string, args ...any) error {
	return fmt.Errorf("field %q: %s", name, fmt.Sprintf(format, args...))
}

// documentError explains why the document is not a JSON object, with the line
// and column of a syntax error.
func documentError(data []byte, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line, col := ir.LineCol(data, errorOffset(data, se))
		return fmt.Errorf("line %d, column %d: malformed JSON: %v", line, col, se)
	case errors.As(err, &te):
		return fmt.Errorf("config must be a JSON object, got %s", te.Value)
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

// errorOffset is the offset of the byte a syntax error complains about.
// encoding/json reports the offset after reading it; at the end of the input
// there is no such byte and the position just past the end is used.
func errorOffset(data []byte, se *json.SyntaxError) int64 {
	off := se.Offset
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 && off <= int64(len(data)) && !strings.Contains(se.Error(), "unexpected end") {
		off--
	}
	return off
}

// fields reads typed values out of a decoded JSON object. The first error
// sticks, so the caller reads every field in a row and checks err once.
type fields struct {
	m   map[string]json.RawMessage
	err error
}

func (f *fields) fail(name, format string, args ...any) {
	if f.err == nil {
		f.err = fieldError(name, format, args...)
	}
}

func (f *fields) present(name string) bool {
	_, ok := f.m[name]
	return ok
}

// get returns the raw value of a field. A missing required field is an error;
// a null is an error for every field the caller asks for, since transformers
// would carry None into the model and fail there.
func (f *fields) get(name, want string, required bool) (string, bool) {
	raw, ok := f.m[name]
	if !ok {
		if required {
			f.fail(name, "missing (want %s)", want)
		}
		return "", false
	}
	s := strings.TrimSpace(string(raw))
	if s == "null" {
		f.fail(name, "must be %s, got null", want)
		return "", false
	}
	return s, true
}

func (f *fields) int(name string, def int64, required bool) int {
	s, ok := f.get(name, "an integer", required)
	if !ok {
		return int(def)
	}
	if !isNumber(s) {
		f.fail(name, "must be an integer, got %s", describe(s))
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			f.fail(name, "integer %s is out of range", clip(s))
		} else {
			f.fail(name, "must be an integer, got %s", describe(s))
		}
		return 0
	}
	if v > math.MaxInt32 || v < math.MinInt32 { // far beyond any limit, and beyond a 32-bit int
		f.fail(name, "integer %s is out of range", clip(s))
		return 0
	}
	return int(v)
}

func (f *fields) float(name string, def float64) float64 {
	s, ok := f.get(name, "a number", false)
	if !ok {
		return def
	}
	if !isNumber(s) {
		f.fail(name, "must be a number, got %s", describe(s))
		return 0
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		f.fail(name, "number %s is out of range", clip(s))
		return 0
	}
	return v
}

func (f *fields) bool(name string, def bool) bool {
	s, ok := f.get(name, "true or false", false)
	if !ok {
		return def
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	f.fail(name, "must be true or false, got %s", describe(s))
	return false
}

func (f *fields) str(name, def string, required bool) string {
	s, ok := f.get(name, "a string", required)
	if !ok {
		return def
	}
	var v string
	if s == "" || s[0] != '"' || json.Unmarshal([]byte(s), &v) != nil {
		f.fail(name, "must be a string, got %s", describe(s))
		return ""
	}
	return v
}

// unsupported rejects fields of later transformers versions that would change
// the model slc builds (grouped-query attention, a different rotary base, biases,
// dropout): building the 4.28 model instead would silently train something else.
// Present with their neutral value (or null), they are accepted.
func (f *fields) unsupported(c *LlamaConfig) error {
	if f.present("num_key_value_heads") && !f.isNull("num_key_value_heads") {
		if v := f.int("num_key_value_heads", 0, false); f.err == nil && v != c.NumAttentionHeads {
			f.fail("num_key_value_heads", "grouped-query attention is not supported: must equal num_attention_heads (%d), got %d", c.NumAttentionHeads, v)
		}
	}
	if f.present("head_dim") && !f.isNull("head_dim") {
		if v := f.int("head_dim", 0, false); f.err == nil && v != c.HeadDim() {
			f.fail("head_dim", "must equal hidden_size/num_attention_heads (%d), got %d", c.HeadDim(), v)
		}
	}
	if f.present("rope_theta") && !f.isNull("rope_theta") {
		if v := f.float("rope_theta", ropeBase); f.err == nil && v != ropeBase {
			f.fail("rope_theta", "only the LLaMA rotary base %v is supported, got %v", ropeBase, v)
		}
	}
	if f.present("rope_scaling") && !f.isNull("rope_scaling") {
		f.fail("rope_scaling", "rotary scaling is not supported (want null)")
	}
	for _, name := range []string{"attention_bias", "mlp_bias"} {
		if f.present(name) && !f.isNull(name) {
			if f.bool(name, false) && f.err == nil {
				f.fail(name, "biases are not supported (LLaMA's projections have none)")
			}
		}
	}
	if f.present("attention_dropout") && !f.isNull("attention_dropout") {
		if v := f.float("attention_dropout", 0); f.err == nil && v != 0 {
			f.fail("attention_dropout", "dropout is not supported: must be 0, got %v", v)
		}
	}
	return f.err
}

func (f *fields) isNull(name string) bool {
	return strings.TrimSpace(string(f.m[name])) == "null"
}

// isNumber reports whether a JSON value is a number token.
func isNumber(s string) bool { return s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') }

// describe names the kind of a JSON value for a message, with a short excerpt.
func describe(s string) string {
	switch {
	case s == "":
		return "nothing"
	case s[0] == '"':
		return "string " + clip(s)
	case s == "true" || s == "false":
		return "boolean " + s
	case s[0] == '[':
		return "an array"
	case s[0] == '{':
		return "an object"
	case isNumber(s):
		return "number " + clip(s)
	}
	return clip(s)
}

// clip shortens a JSON excerpt to one short line.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 40 {
		s = string(r[:37]) + "..."
	}
	return s
}
