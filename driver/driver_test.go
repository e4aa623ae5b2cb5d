package driver

import (
	"errors"
	"os"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

const tinyConfig = "../testdata/configs/llama_tiny.json"

// A model file is told by its content: a config, IR text, binary IR,
// ONNX; what is none of them says why.
func TestSniff(t *testing.T) {
	cfg, err := os.ReadFile(tinyConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		data []byte
		kind Kind
		err  string
	}{
		{"m.json", cfg, KindConfig, ""},
		{"m.json", []byte(`{"format": "slc-ir"}`), KindText, ""},
		{"m.onnx", []byte{0x08, 0x07}, KindONNX, ""},
		{"m.json", []byte("  "), 0, "empty file"},
		{"m.json", []byte(`{"a": 1}`), 0, "not a model"},
		{"m.json", []byte("{\n  \"a\": ,\n}"), 0, "line 2, column"},
		{"m.slir", []byte("{}"), 0, "not binary slc IR"},
		{"m.onnx", []byte("xyz"), 0, "not an ONNX model"},
	} {
		k, err := Sniff(c.path, c.data)
		if c.err == "" && (err != nil || k != c.kind) || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Sniff(%s, %q) = %v, %v; want %v, %q", c.path, c.data, k, err, c.kind, c.err)
		}
	}
}

func TestPrecision(t *testing.T) {
	for s, want := range map[string]Precision{"f32": F32, "float32": F32, "BF16": BF16, "bfloat16": BF16, "bf16-mixed": BF16Mixed, "mixed": BF16Mixed} {
		if p, ok := ParsePrecision(s); !ok || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, p, ok)
		}
	}
	if _, ok := ParsePrecision("f16"); ok {
		t.Error("f16 parses as a training precision")
	}
	if p, ok := ModulePrecision(map[string]string{"dtype": "f32", "precision": "bf16-mixed"}); !ok || p != BF16Mixed || p.String() != "bf16-mixed" || p.TorchName() != "bf16-mixed" {
		t.Errorf("a mixed module: %v, %v", p, ok)
	}
	if p, ok := ModulePrecision(map[string]string{}); !ok || p != F32 {
		t.Errorf("a module without dtype: %v, %v", p, ok)
	}
	if BF16.TorchName() != "bfloat16" || (Precision{DType: ir.F64}).TorchName() != "float64" {
		t.Error("torch names")
	}
}

// A config's model takes the spec; the length shrinks to the model's
// maximum unless it was given, and a given one above it is a usage error.
func TestOpenConfig(t *testing.T) {
	spec := Spec{BatchSize: 2, MaxLength: 4096, Seed: 3, Precision: BF16Mixed, Rows: "documents", PEFT: "sltrain", Rank: 4, SpRatio: 0.1, LoraAlpha: 8, Optimizer: "sgd", Beta1: 0.5}
	m, err := Open(tinyConfig, &spec, OpenOptions{Cmd: "train"})
	if err != nil {
		t.Fatal(err)
	}
	if spec.MaxLength != m.Config.MaxSequenceLength || m.Build.SeqLen != spec.MaxLength || m.Build.BatchSize != 2 || !m.Build.LossMask || m.Build.DType != ir.F32 {
		t.Errorf("build options %+v (spec length %d)", m.Build, spec.MaxLength)
	}
	if !m.Passes.BF16Mixed || m.Passes.Rank != 4 || m.Passes.Optimizer != "sgd" || m.Passes.Beta1 != 0.5 || m.Passes.Seed != 3 {
		t.Errorf("pass options %+v", m.Passes)
	}
	spec.MaxLength = 4096
	_, err = Open(tinyConfig, &spec, OpenOptions{Cmd: "train", LengthSet: true})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "flag --max-length") || !strings.Contains(err.Error(), "slc train --help") {
		t.Errorf("a given length above the maximum: %v", err)
	}
	_, err = Open(tinyConfig, &spec, OpenOptions{Cmd: "train", ONNXFlags: true})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "apply to an ONNX model") {
		t.Errorf("ONNX flags on a config: %v", err)
	}
}

func TestParseDims(t *testing.T) {
	d, err := ParseDims([]string{"batch=2", " seq = 16 "})
	if err != nil || d["batch"] != 2 || d["seq"] != 16 {
		t.Errorf("ParseDims = %v, %v", d, err)
	}
	for _, bad := range [][]string{{"x"}, {"x=0"}, {"=3"}, {"a=1", "a=2"}} {
		if _, err := ParseDims(bad); err == nil {
			t.Errorf("ParseDims(%q) accepted", bad)
		}
	}
}
