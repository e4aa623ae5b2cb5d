package frontend

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// tinyJSON is llama_tiny.json on one line per field, so cases can edit a field.
const tinyJSON = `{
  "architectures": ["LLaMAForCausalLM"],
  "hidden_act": "silu",
  "hidden_size": 16,
  "intermediate_size": 24,
  "initializer_range": 0.02,
  "max_sequence_length": 64,
  "model_type": "llama",
  "num_attention_heads": 2,
  "num_hidden_layers": 2,
  "rms_norm_eps": 1e-06,
  "vocab_size": 32
}`

// edit replaces the line of one field (`"name": value`) by repl ("" deletes it,
// keeping the JSON valid because the field is never the last one edited that way).
func edit(t *testing.T, field, repl string) string {
	t.Helper()
	lines := strings.Split(tinyJSON, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), `"`+field+`":`) {
			if repl == "" {
				return strings.Join(append(lines[:i:i], lines[i+1:]...), "\n")
			}
			comma := ""
			if strings.HasSuffix(l, ",") {
				comma = ","
			}
			lines[i] = `  "` + field + `": ` + repl + comma
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no field %q", field)
	return ""
}

// add puts extra fields at the start of the object.
func add(fields string) string { return strings.Replace(tinyJSON, "{", "{"+fields+",", 1) }

func TestParseTiny(t *testing.T) {
	c, err := ParseLlamaConfig([]byte(tinyJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := LlamaConfig{ModelType: "llama", HiddenSize: 16, IntermediateSize: 24, NumAttentionHeads: 2, NumHiddenLayers: 2,
		VocabSize: 32, MaxSequenceLength: 64, RMSNormEps: 1e-6, InitializerRange: 0.02, HiddenAct: "silu"}
	got := *c
	got.Raw = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if string(c.Raw) != tinyJSON {
		t.Error("Raw is not the input")
	}
}

func TestParseDefaultsAndAliases(t *testing.T) {
	for _, c := range []struct {
		name, json string
		check      func(*LlamaConfig) bool
	}{
		{"eps default", edit(t, "rms_norm_eps", ""), func(c *LlamaConfig) bool { return c.RMSNormEps == 1e-6 }},
		{"init default", edit(t, "initializer_range", ""), func(c *LlamaConfig) bool { return c.InitializerRange == 0.02 }},
		{"act default", edit(t, "hidden_act", ""), func(c *LlamaConfig) bool { return c.HiddenAct == "silu" }},
		{"max len default", edit(t, "max_sequence_length", ""), func(c *LlamaConfig) bool { return c.MaxSequenceLength == 2048 }},
		{"max_position_embeddings", strings.Replace(tinyJSON, `"max_sequence_length": 64`, `"max_position_embeddings": 128`, 1),
			func(c *LlamaConfig) bool { return c.MaxSequenceLength == 128 }},
		{"max_sequence_length wins", add(`"max_position_embeddings": 128`), func(c *LlamaConfig) bool { return c.MaxSequenceLength == 64 }},
		{"tied", add(`"tie_word_embeddings": true`), func(c *LlamaConfig) bool { return c.TieWordEmbeddings }},
		{"untied", add(`"tie_word_embeddings": false`), func(c *LlamaConfig) bool { return !c.TieWordEmbeddings }},
		{"integer-valued float field", edit(t, "rms_norm_eps", "1"), func(c *LlamaConfig) bool { return c.RMSNormEps == 1 }},
		{"zero init", edit(t, "initializer_range", "0"), func(c *LlamaConfig) bool { return c.InitializerRange == 0 }},
		{"neutral newer fields", add(`"num_key_value_heads": 2, "rope_theta": 10000.0, "rope_scaling": null, "attention_bias": false, "mlp_bias": false, "attention_dropout": 0.0, "head_dim": 8, "pretraining_tp": 1`),
			func(c *LlamaConfig) bool { return true }},
		{"byte order mark", "\xef\xbb\xbf" + tinyJSON, func(c *LlamaConfig) bool { return c.HiddenSize == 16 }},
		{"case-sensitive names", add(`"Hidden_Size": 0`), func(c *LlamaConfig) bool { return c.HiddenSize == 16 }},
		{"duplicate key: last wins", add(`"hidden_size": 0`), func(c *LlamaConfig) bool { return c.HiddenSize == 16 }},
	} {
		cfg, err := ParseLlamaConfig([]byte(c.json))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.check(cfg) {
			t.Errorf("%s: got %+v", c.name, *cfg)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, json string
		want       []string // substrings of the error
	}{
		// Malformed documents: line and column.
		{"syntax", "{\n  \"hidden_size\": 16,\n  \"vocab_size\" 32\n}", []string{"line 3, column 16", "malformed JSON"}},
		{"trailing comma", "{\n  \"hidden_size\": 16,\n}", []string{"line 3, column 1"}},
		{"truncated", "{\n  \"hidden_size\": 1", []string{"line 2, column 19", "unexpected end"}},
		{"empty", "", []string{"line 1, column 1", "unexpected end"}},
		{"garbage after", tinyJSON + " x", []string{"line 13, column 3", "after top-level value"}},
		{"not an object", "[1, 2]", []string{"must be a JSON object, got array"}},
		{"null document", "null", []string{"must be a JSON object, got null"}},
		// Wrong JSON types: the field is named.
		{"string size", edit(t, "hidden_size", `"16"`), []string{`field "hidden_size"`, "must be an integer", `string "16"`}},
		{"float size", edit(t, "num_hidden_layers", `2.5`), []string{`field "num_hidden_layers"`, "must be an integer", "2.5"}},
		{"float-looking size", edit(t, "vocab_size", `32.0`), []string{`field "vocab_size"`, "must be an integer"}},
		{"huge size", edit(t, "vocab_size", `123456789012345678901234567890`), []string{`field "vocab_size"`, "out of range"}},
		{"array size", edit(t, "intermediate_size", `[24]`), []string{`field "intermediate_size"`, "an array"}},
		{"null size", edit(t, "num_attention_heads", `null`), []string{`field "num_attention_heads"`, "got null"}},
		{"string eps", edit(t, "rms_norm_eps", `"1e-6"`), []string{`field "rms_norm_eps"`, "must be a number"}},
		{"overflowing eps", edit(t, "rms_norm_eps", `1e999`), []string{`field "rms_norm_eps"`, "out of range"}},
		{"bool init", edit(t, "initializer_range", `true`), []string{`field "initializer_range"`, "boolean true"}},
		{"number act", edit(t, "hidden_act", `1`), []string{`field "hidden_act"`, "must be a string"}},
		{"object model type", edit(t, "model_type", `{"a": 1}`), []string{`field "model_type"`, "an object"}},
		{"string tie", add(`"tie_word_embeddings": "yes"`), []string{`field "tie_word_embeddings"`, "true or false"}},
		{"string max len", edit(t, "max_sequence_length", `"64"`), []string{`field "max_sequence_length"`}},
		{"string max pos", strings.Replace(tinyJSON, `"max_sequence_length": 64`, `"max_position_embeddings": "x"`, 1), []string{`field "max_position_embeddings"`}},
		// Missing required fields.
		{"no model_type", edit(t, "model_type", ""), []string{`field "model_type"`, "missing"}},
		{"no hidden_size", edit(t, "hidden_size", ""), []string{`field "hidden_size"`, "missing"}},
		{"no vocab_size", strings.Replace(edit(t, "vocab_size", ""), "1e-06,", "1e-06", 1), []string{`field "vocab_size"`, "missing"}},
		// Values slc cannot build.
		{"model type", edit(t, "model_type", `"gpt2"`), []string{`field "model_type"`, `must be "llama"`, "gpt2"}},
		{"activation", edit(t, "hidden_act", `"gelu"`), []string{`field "hidden_act"`, `"silu"`, "gelu"}},
		{"zero hidden", edit(t, "hidden_size", `0`), []string{`field "hidden_size": must be > 0, got 0`}},
		{"negative ff", edit(t, "intermediate_size", `-24`), []string{`field "intermediate_size": must be > 0, got -24`}},
		{"zero heads", edit(t, "num_attention_heads", `0`), []string{`field "num_attention_heads": must be > 0`}},
		{"zero layers", edit(t, "num_hidden_layers", `0`), []string{`field "num_hidden_layers": must be > 0`}},
		{"too many layers", edit(t, "num_hidden_layers", `100000000`), []string{`field "num_hidden_layers": must be <= 1024`}},
		{"zero vocab", edit(t, "vocab_size", `0`), []string{`field "vocab_size": must be > 0`}},
		{"huge vocab", edit(t, "vocab_size", `99999999`), []string{`field "vocab_size": must be <= 16777216, got 99999999`}},
		{"int32 overflow", edit(t, "vocab_size", `9999999999`), []string{`field "vocab_size": integer 9999999999 is out of range`}},
		{"zero max len", edit(t, "max_sequence_length", `0`), []string{`field "max_sequence_length"`, ">= 2"}},
		{"max len 1", edit(t, "max_sequence_length", `1`), []string{`field "max_sequence_length"`, ">= 2"}},
		{"heads do not divide", edit(t, "num_attention_heads", `3`), []string{`field "hidden_size"`, "not divisible by num_attention_heads (3)"}},
		{"odd head dim", edit(t, "num_attention_heads", `16`), []string{`field "hidden_size"`, "head_dim", "= 1 must be even"}},
		{"zero eps", edit(t, "rms_norm_eps", `0`), []string{`field "rms_norm_eps": must be > 0`}},
		{"negative eps", edit(t, "rms_norm_eps", `-1e-6`), []string{`field "rms_norm_eps": must be > 0`}},
		{"negative init", edit(t, "initializer_range", `-0.02`), []string{`field "initializer_range": must be >= 0`}},
		// Fields of later transformers versions that would change the model.
		{"gqa", add(`"num_key_value_heads": 1`), []string{`field "num_key_value_heads"`, "grouped-query"}},
		{"rope theta", add(`"rope_theta": 500000.0`), []string{`field "rope_theta"`}},
		{"rope scaling", add(`"rope_scaling": {"type": "linear", "factor": 2.0}`), []string{`field "rope_scaling"`}},
		{"bias", add(`"attention_bias": true`), []string{`field "attention_bias"`}},
		{"mlp bias", add(`"mlp_bias": true`), []string{`field "mlp_bias"`}},
		{"dropout", add(`"attention_dropout": 0.1`), []string{`field "attention_dropout"`}},
		{"head dim", add(`"head_dim": 4`), []string{`field "head_dim"`}},
		{"bad gqa type", add(`"num_key_value_heads": "2"`), []string{`field "num_key_value_heads"`, "integer"}},
	} {
		cfg, err := ParseLlamaConfig([]byte(c.json))
		if err == nil {
			t.Errorf("%s: no error, got %+v", c.name, cfg)
			continue
		}
		if cfg != nil {
			t.Errorf("%s: a config came back with the error", c.name)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("%s: error is not one line: %q", c.name, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not contain %q", c.name, msg, w)
			}
		}
	}
}

// TestValidate covers configs built in code (no JSON), where the same field
// names must appear.
func TestValidate(t *testing.T) {
	base, err := ParseLlamaConfig([]byte(tinyJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	var nilCfg *LlamaConfig
	if err := nilCfg.Validate(); err == nil {
		t.Error("nil config validated")
	}
	for _, c := range []struct {
		field string
		edit  func(*LlamaConfig)
	}{
		{"model_type", func(c *LlamaConfig) { c.ModelType = "" }},
		{"hidden_act", func(c *LlamaConfig) { c.HiddenAct = "swiglu" }},
		{"hidden_size", func(c *LlamaConfig) { c.HiddenSize = -1 }},
		{"intermediate_size", func(c *LlamaConfig) { c.IntermediateSize = 0 }},
		{"num_attention_heads", func(c *LlamaConfig) { c.NumAttentionHeads = 0 }},
		{"num_hidden_layers", func(c *LlamaConfig) { c.NumHiddenLayers = 1 << 20 }},
		{"vocab_size", func(c *LlamaConfig) { c.VocabSize = 1 << 30 }},
		{"max_sequence_length", func(c *LlamaConfig) { c.MaxSequenceLength = 1 }},
		{"hidden_size", func(c *LlamaConfig) { c.NumAttentionHeads = 5 }},
		{"rms_norm_eps", func(c *LlamaConfig) { c.RMSNormEps = 0 }},
		{"initializer_range", func(c *LlamaConfig) { c.InitializerRange = -1 }},
	} {
		cfg := *base
		c.edit(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), `field "`+c.field+`"`) {
			t.Errorf("%s: got %v", c.field, err)
		}
	}
}

func TestReadLlamaConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "x.json")
	if err := os.WriteFile(bad, []byte(edit(t, "num_attention_heads", "3")), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, maxConfigBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{bad, bad + `: field "hidden_size": 16 is not divisible by num_attention_heads (3)`},
		{big, big + ": larger than 1048576 bytes: not a model config"},
		{filepath.Join(dir, "missing.json"), filepath.Join(dir, "missing.json") + ": no such file or directory"},
		{dir, dir + ": is a directory"},
	} {
		_, err := ReadLlamaConfig(c.path)
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
	c, err := ReadLlamaConfig(filepath.Join(configDir, "llama_60m.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HiddenSize != 512 || c.IntermediateSize != 1376 || c.NumAttentionHeads != 8 || c.NumHiddenLayers != 8 ||
		c.VocabSize != 32000 || c.MaxSequenceLength != 1024 || c.RMSNormEps != 1e-6 || c.InitializerRange != 0.02 || c.TieWordEmbeddings {
		t.Errorf("llama_60m: %+v", *c)
	}
}
