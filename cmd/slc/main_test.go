package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/version"
)

// slcBin is the slc binary built once by TestMain; the tests run it as a user
// would, so exit statuses and the exact stderr are what a shell sees.
var slcBin string

const (
	config60M  = "../../testdata/configs/llama_60m.json"
	configTiny = "../../testdata/configs/llama_tiny.json"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slc-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	slcBin = filepath.Join(dir, "slc")
	// The SLTrain lowering times of auto are cached here, not in the
	// user's cache directory.
	os.Setenv("SLC_CACHE_DIR", filepath.Join(dir, "cache"))
	build := exec.Command("go", "build", "-o", slcBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building slc:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// slc runs the binary in this package's directory.
func slc(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(slcBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running slc %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// mustSlc runs slc and fails the test unless it succeeds quietly on stderr.
func mustSlc(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := slc(t, args...)
	if code != 0 || errs != "" {
		t.Fatalf("slc %v: exit %d, stderr %q", args, code, errs)
	}
	return out
}

func TestVersion(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		if out := mustSlc(t, flag); out != "slc version "+version.String()+"\n" {
			t.Errorf("slc %s printed %q", flag, out)
		}
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {}, {"compile", "--help"}, {"compile", "-h"}, {"inspect", "--help"}, {"help", "compile"}} {
		out := mustSlc(t, args...)
		if !strings.Contains(out, "USAGE:") {
			t.Errorf("slc %v: no usage in %q", args, out)
		}
	}
	out := mustSlc(t, "compile", "--help")
	for _, want := range []string{"--batch-size N, --batch_size N", "--max-length L, --max_length L", "--model-config PATH, --model_config PATH", "--output FILE, -o FILE", "--emit WHAT", "--seed S"} {
		if !strings.Contains(out, want) {
			t.Errorf("compile --help lacks %q:\n%s", want, out)
		}
	}
}

func TestCompile60M(t *testing.T) {
	out := mustSlc(t, "compile", config60M, "--peft", "full")
	for _, want := range []string{
		"Model: " + config60M + " (LLaMA config; batch 8, max length 256, seed 0, f32)",
		"Total params: 58.07M (58,073,600 in 75 tensors)",
		"input_ids   i64[8,256]  data",
		"Layers: 8 ",
		"model.layers.*.self_attn.q_proj.weight          f32[512,512]",
		"model.embed_tokens.weight  f32[32000,512]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// The seed's SLTrain size: llama_60m at r=128, δ=0.03 (the defaults) has 43.53M
// parameters, and every projection of every block is fused.
func TestCompile60MSLTrain(t *testing.T) {
	out := mustSlc(t, "compile", config60M)
	for _, want := range []string{
		"Total params: 43.53M (43,529,832 in 187 tensors)",
		"low-rank     9.99M   9,994,240      112",
		"sparse       0.76M     758,888       56",
		"train_step", "update", "eval", "infer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	fused := mustSlc(t, "compile", config60M, "--print-after", "sltrain-fuse")
	if n := strings.Count(fused, `"op": "LowRankSparseAdd"`); n != 56 {
		t.Errorf("--print-after sltrain-fuse shows %d LowRankSparseAdd ops, want 56", n)
	}
	for _, proj := range []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} {
		if strings.Contains(fused, proj+`.weight"`) {
			t.Errorf("a dense %s weight survived sltrain-fuse", proj)
		}
	}
	mem := mustSlc(t, "compile", config60M, "--memory")
	for _, want := range []string{"--peft full", "--peft sltrain (r 128, δ 0.03)", "parameters", "221.53", "168.95", "optimizer state", "activations (planned)"} {
		if !strings.Contains(mem, want) {
			t.Errorf("--memory lacks %q:\n%s", want, mem)
		}
	}
}

func TestEmitIRParses(t *testing.T) {
	out := mustSlc(t, "compile", configTiny, "--emit", "ir", "--batch-size", "2", "--max-length", "8", "--seed", "5", "--passes", "none")
	m, err := ir.ParseText([]byte(out))
	if err != nil {
		t.Fatalf("--emit ir output does not parse: %v", err)
	}
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	if g == nil || g.Input("input_ids") == nil || g.Input("input_ids").Type.String() != "i64[2,8]" {
		t.Fatalf("forward graph or its input_ids i64[2,8] is missing")
	}
	// The IR text compiles again to the same text.
	dir := t.TempDir()
	path := filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if again := mustSlc(t, "compile", path, "--emit", "ir"); again != out {
		t.Error("compiling the emitted IR text changed it")
	}
}

func TestWriteAndInspect(t *testing.T) {
	dir := t.TempDir()
	text, bin := filepath.Join(dir, "tiny.json"), filepath.Join(dir, "tiny.slir")
	out := mustSlc(t, "compile", configTiny, "--rank", "4", "-o", text)
	if !strings.Contains(out, "Wrote "+text) {
		t.Errorf("no 'Wrote' line:\n%s", out)
	}
	mustSlc(t, "compile", "--output", bin, configTiny, "--rank", "4")
	data, err := os.ReadFile(bin)
	if err != nil || len(data) < 12 || string(data[8:12]) != "SLIR" {
		t.Fatalf("%s is not binary IR (err %v)", bin, err)
	}
	tm, err := ir.ParseText(mustRead(t, text))
	if err != nil {
		t.Fatal(err)
	}
	bm, err := ir.ParseBinary(data)
	if err != nil {
		t.Fatal(err)
	}
	if !tm.Equal(bm) {
		t.Error("the .json and .slir files hold different modules")
	}
	var bodies []string
	for _, f := range []string{text, bin} {
		out := mustSlc(t, "inspect", f)
		for _, want := range []string{"File: " + f, "Total params: 0.00M (3,210 in 49 tensors)", `Ops of graph "train_step"`, `Ops of graph "update"`, "LowRankSparseAdd "} {
			if !strings.Contains(out, want) {
				t.Errorf("inspect %s lacks %q:\n%s", f, want, out)
			}
		}
		_, body, _ := strings.Cut(out, "\n")
		bodies = append(bodies, body)
	}
	if bodies[0] != bodies[1] {
		t.Errorf("inspect differs between text and binary:\n%s\nvs\n%s", bodies[0], bodies[1])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestAliasesAndFlagOrder(t *testing.T) {
	const want = "(LLaMA config; batch 3, max length 16, seed 7, f32)"
	for _, args := range [][]string{
		{"compile", configTiny, "--rank", "4", "--batch_size", "3", "--max_length", "16", "--seed", "7"},
		{"compile", "--batch-size=3", "--max-length", "16", "--seed", "7", configTiny, "--rank", "4"},
		{"compile", "--model_config", configTiny, "--rank", "4", "--batch_size=3", "--max_length=16", "--seed=7"},
		{"compile", "--seed", "7", "--model-config", configTiny, "--rank", "4", "--batch-size", "3", "--max-length", "16"},
	} {
		if out := mustSlc(t, args...); !strings.Contains(out, want) {
			t.Errorf("slc %v: want %q in\n%s", args, want, out)
		}
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	// A truncated copy of a real binary IR file.
	bin := filepath.Join(dir, "tiny.slir")
	mustSlc(t, "compile", configTiny, "--rank", "4", "-o", bin)
	truncated := filepath.Join(dir, "truncated.slir")
	if err := os.WriteFile(truncated, mustRead(t, bin)[:200], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string // substrings of the one stderr line
	}{
		// Bad models and files: exit 1, the message names the file and the field.
		{"malformed JSON", []string{"compile", "testdata/malformed.json"}, 1, []string{"testdata/malformed.json: line 5, column 2: malformed JSON"}},
		{"unknown model_type", []string{"compile", "testdata/unknown_model_type.json"}, 1, []string{"testdata/unknown_model_type.json: ", `field "model_type"`, "gpt2"}},
		{"heads do not divide", []string{"compile", "testdata/heads_not_divisible.json"}, 1, []string{"testdata/heads_not_divisible.json: ", `field "hidden_size"`, "num_attention_heads"}},
		{"zero size", []string{"compile", "testdata/zero_hidden_size.json"}, 1, []string{`testdata/zero_hidden_size.json: field "hidden_size": must be > 0, got 0`}},
		{"negative size", []string{"compile", "testdata/negative_layers.json"}, 1, []string{"testdata/negative_layers.json: ", `field "num_hidden_layers"`, "-2"}},
		{"missing file", []string{"compile", "testdata/nope.json"}, 1, []string{"testdata/nope.json: no such file"}},
		{"directory", []string{"compile", "testdata"}, 1, []string{"testdata: is a directory"}},
		{"not a model", []string{"compile", "testdata/not_a_model.json"}, 1, []string{"testdata/not_a_model.json: not a model", `"model_type"`, `"format"`}},
		{"onnx", []string{"compile", "testdata/model.onnx"}, 1, []string{"testdata/model.onnx: ONNX model has no graph"}},
		{"corrupt IR text", []string{"compile", "testdata/ir_truncated.json"}, 1, []string{"testdata/ir_truncated.json: line 13"}},
		{"corrupt IR binary", []string{"inspect", "testdata/ir_corrupt.slir"}, 1, []string{"testdata/ir_corrupt.slir: corrupt IR file", "root"}},
		{"truncated IR binary", []string{"compile", truncated}, 1, []string{truncated + ": corrupt IR file: truncated"}},
		{"unknown op", []string{"inspect", "testdata/ir_unknown_op.json"}, 1, []string{"testdata/ir_unknown_op.json: ", "node 1", `field "op"`, `"Frobnicate"`}},
		{"unknown dtype", []string{"compile", "testdata/ir_unknown_dtype.json"}, 1, []string{"testdata/ir_unknown_dtype.json: ", `field "type"`, `"q7"`}},
		{"IR does not verify", []string{"inspect", "testdata/ir_bad_shape.json"}, 1, []string{"testdata/ir_bad_shape.json: ", "node 1", "f32[2,5]"}},
		{"inspect a config", []string{"inspect", configTiny}, 1, []string{configTiny + ": is a LLaMA config"}},
		{"length beyond the model", []string{"compile", configTiny, "--max-length", "65"}, 2, []string{"flag --max-length: 65 is longer than the model's max_sequence_length 64 (" + configTiny + ")"}},

		// Usage errors: exit 2, one line with a hint, no help dump.
		{"unknown flag", []string{"compile", configTiny, "--frob"}, 2, []string{"unknown flag --frob", "slc compile --help"}},
		{"unknown global flag", []string{"--frob"}, 2, []string{"unknown flag --frob", "slc --help"}},
		{"bad --emit", []string{"compile", configTiny, "--emit", "frob"}, 2, []string{`flag --emit: "frob"`}},
		{"bad -o extension", []string{"compile", configTiny, "-o", filepath.Join(dir, "out.txt")}, 2, []string{"flag -o", `".txt"`, ".json", ".slir"}},
		{"-o without extension", []string{"compile", configTiny, "-o", filepath.Join(dir, "out")}, 2, []string{"flag -o", "no extension"}},
		{"-o without value", []string{"compile", configTiny, "-o"}, 2, []string{"flag -o needs a value"}},
		{"not a number", []string{"compile", configTiny, "--batch-size", "many"}, 2, []string{`flag --batch-size: invalid value "many"`}},
		{"negative seed", []string{"compile", configTiny, "--seed", "-1"}, 2, []string{`flag --seed: invalid value "-1"`}},
		{"zero batch", []string{"compile", configTiny, "--batch_size", "0"}, 2, []string{"flag --batch-size: must be >= 1, got 0"}},
		{"negative length", []string{"compile", configTiny, "--max-length", "-4"}, 2, []string{"flag --max-length: must be >= 2, got -4"}},
		{"bad dtype", []string{"compile", configTiny, "--dtype", "q7"}, 2, []string{"flag --dtype", `"q7"`}},
		{"missing MODEL", []string{"compile"}, 2, []string{"missing MODEL argument"}},
		{"two models", []string{"compile", configTiny, configTiny}, 2, []string{"want one MODEL, got 2"}},
		{"rank too big for the model", []string{"compile", configTiny}, 2, []string{"flag --rank: " + configTiny + ": rank must be in [1, 16]", "got 128"}},
		{"unknown lowering without -o", []string{"compile", configTiny, "--rank", "4", "--sltrain-lowering", "fused"}, 2, []string{`flag --sltrain-lowering: "fused" is not merged, factored or auto`}},
		{"unknown cpu", []string{"compile", configTiny, "--rank", "4", "--cpu", "pentium9"}, 2, []string{`flag --cpu: "pentium9" is not an x86-64 CPU`}},
		{"f16 model", []string{"compile", configTiny, "--rank", "4", "--dtype", "float16"}, 2, []string{`flag --dtype: "float16" is not f32, bf16, bf16-mixed or f64`}},
		{"unknown cpu, eval", []string{"eval", configTiny, "--data", configTiny, "--cpu", "pentium9"}, 2, []string{`flag --cpu: "pentium9"`, "slc eval --help"}},
		{"threads 0, eval", []string{"eval", configTiny, "--data", configTiny, "--threads", "0"}, 2, []string{"flag --threads: must be between 1 and"}},
		{"threads negative, generate", []string{"generate", configTiny, "--threads", "-1"}, 2, []string{"flag --threads: must be between 1 and"}},
		{"bad --peft", []string{"compile", configTiny, "--peft", "lora"}, 2, []string{`flag --peft: "lora"`}},
		{"sp_ratio 1", []string{"compile", configTiny, "--sp_ratio", "1"}, 2, []string{"flag --sp-ratio: must be in [0, 1)"}},
		{"unknown pass", []string{"compile", configTiny, "--passes", "frob"}, 2, []string{`flag --passes: unknown pass "frob"`}},
		{"unknown --print-after", []string{"compile", configTiny, "--print-after", "frob"}, 2, []string{`flag --print-after: unknown pass "frob"`}},
		{"MODEL and --model-config", []string{"compile", "--model-config", configTiny, configTiny}, 2, []string{"not both"}},
		{"missing FILE", []string{"inspect"}, 2, []string{"missing FILE argument", "slc inspect --help"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`}},
		{"help on an unknown command", []string{"help", "frobnicate"}, 2, []string{"frobnicate"}},
		{"build flag on IR", []string{"compile", "testdata/ir_small.json", "--batch-size", "4"}, 2, []string{"flag --batch-size applies to a LLaMA config", "testdata/ir_small.json is IR text"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errs, code := slc(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, c.code, errs)
			}
			if out != "" {
				t.Errorf("stdout is not empty: %q", out)
			}
			if !strings.HasPrefix(errs, "slc: ") || strings.Count(errs, "\n") != 1 || !strings.HasSuffix(errs, "\n") {
				t.Errorf("stderr is not one 'slc: ' line: %q", errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q lacks %q", errs, w)
				}
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("a failed command wrote files: %v", entries)
	}
}

// A failed compile leaves an existing output file as it was.
func TestFailureKeepsOutput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(out, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code := slc(t, "compile", "testdata/zero_hidden_size.json", "-o", out); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if got := string(mustRead(t, out)); got != "precious" {
		t.Fatalf("output file changed to %q", got)
	}
}

func TestGuardTurnsPanicsIntoOneLine(t *testing.T) {
	var stderr bytes.Buffer
	code := guard(&stderr, func() int { panic("index out of range\nwith a second line") })
	if code != exitInternal || stderr.String() != "slc: internal error: index out of range with a second line\n" {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestRunMainInProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"slc", "compile", "testdata/ir_small.json"}, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "Total params: 0.00M (12 in 1 tensor)") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range []struct{ in, want string }{
		{"slc compile m.json --batch-size 4", "slc compile --batch-size 4 m.json"},
		{"slc compile m.json -o out.slir --seed=3", "slc compile -o out.slir --seed=3 m.json"},
		{"slc compile --emit ir m.json", "slc compile --emit ir m.json"},
		{"slc compile m.json -h", "slc compile -h m.json"},
		{"slc compile m.json --frob x", "slc compile --frob m.json x"},
		{"slc compile --seed 1 -- -m.json", "slc compile --seed 1 -- -m.json"},
		{"slc --version", "slc --version"},
		{"slc unknown a --b", "slc unknown a --b"},
		{"slc", "slc"},
	} {
		got, err := reorderArgs(app, strings.Fields(c.in))
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.in, strings.Join(got, " "), err, c.want)
		}
	}
	if _, err := reorderArgs(app, strings.Fields("slc compile m.json --seed")); exitCode(err) != exitUsage {
		t.Errorf("a value flag without its value: got %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Native compilation: an artifact, the kernels' assembly (with FMAs in the
// GEMM) and a short benchmark of the tiny model.
func TestNativeCompileAndBench(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "tiny.slc")
	out := mustSlc(t, "compile", configTiny, "--rank", "4", "--batch-size", "2", "--max-length", "8", "-o", art)
	if !strings.Contains(out, "Wrote "+art) || !strings.Contains(out, "4 programs") {
		t.Errorf("compile -o .slc:\n%s", out)
	}
	asm := mustSlc(t, "compile", configTiny, "--rank", "4", "--batch-size", "2", "--max-length", "8", "--emit", "asm", "--cpu", "x86-64-v3")
	if !strings.Contains(asm, "vfmadd") || !strings.Contains(asm, "ymm") {
		t.Errorf("--emit asm for x86-64-v3 shows no AVX2 FMA")
	}
	for _, model := range []string{art, configTiny} {
		args := []string{"bench", model, "--steps", "1", "--warmup", "0", "--threads", "2"}
		if model == configTiny {
			args = append(args, "--rank", "4", "--batch-size", "2", "--max-length", "8")
		}
		out = mustSlc(t, args...)
		if !strings.Contains(out, "tokens/s") || !strings.Contains(out, "GFLOP/s") {
			t.Errorf("slc %v:\n%s", args, out)
		}
	}
}
