package codegen

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/target"
)

// sltrainModule is one graph with one LowRankSparseAdd of the given shape.
// A bf16 x with f32 factors is the mixed form (out_dtype f32).
func sltrainModule(t *testing.T, rows, in, out, r, nnz int, xt, dt ir.DType) *ir.Module {
	t.Helper()
	b := ir.NewBuilder("infer")
	x := b.AddInput("x", ir.T(xt, rows, in), ir.Data, nil)
	B := b.AddInput("layer.lora_B", ir.T(dt, out, r), ir.Param, nil)
	A := b.AddInput("layer.lora_A", ir.T(dt, r, in), ir.Param, nil)
	v := b.AddInput("layer.sparse_value", ir.T(dt, nnz), ir.Param, nil)
	idx := b.AddInput("layer.sparse_index", ir.T(ir.I64, nnz), ir.Buffer, nil)
	b.Scope = "layer"
	attrs := ir.Attrs{"scale": ir.Float(2)}
	if xt != dt {
		attrs["out_dtype"] = ir.String("f32")
	}
	y := b.Op("LowRankSparseAdd", attrs, x, B, A, v, idx)
	b.Output("y", y)
	if xt != dt {
		y = b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, y)
	}
	// A second layer of another shape (out → in/2) reads y.
	B2 := b.AddInput("layer2.lora_B", ir.T(dt, in/2, r), ir.Param, nil)
	A2 := b.AddInput("layer2.lora_A", ir.T(dt, r, out), ir.Param, nil)
	v2 := b.AddInput("layer2.sparse_value", ir.T(dt, nnz), ir.Param, nil)
	idx2 := b.AddInput("layer2.sparse_index", ir.T(ir.I64, nnz), ir.Buffer, nil)
	b.Scope = "layer2"
	b.Output("y2", b.Op("LowRankSparseAdd", attrs, y, B2, A2, v2, idx2))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return &ir.Module{Graphs: []*ir.Graph{b.G}}
}

// TestCalibrationTiny times both lowerings of a tiny layer, checks that
// the compile explains the measured pick, that a second compile takes the
// times from the cache (and writes the same code), and that a corrupt
// cache file is a warning and a new measurement, never a failure.
func TestCalibrationTiny(t *testing.T) {
	dir := t.TempDir()
	for _, dt := range [][2]ir.DType{{ir.F32, ir.F32}, {ir.BF16, ir.BF16}, {ir.BF16, ir.F32}} {
		m := sltrainModule(t, 32, 48, 40, 8, 57, dt[0], dt[1])
		var ex, prog bytes.Buffer
		opt := Options{MeasureSLTrain: true, Threads: 2, CacheDir: dir, Explain: &ex, Progress: &prog}
		art1, err := compilePlanned(m, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ex.String(), "2 timed now") || !strings.Contains(prog.String(), "slc: timing merged and factored") {
			t.Errorf("%v: first compile did not time:\n%s\n%s", dt, ex.String(), prog.String())
		}
		if !measuredNote.MatchString(ex.String()) {
			t.Errorf("%v: no measured note in\n%s", dt, ex.String())
		}
		ex.Reset()
		prog.Reset()
		art2, err := compilePlanned(m, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ex.String(), "times from the cache") || prog.Len() != 0 {
			t.Errorf("%v: second compile did not use the cache:\n%s\n%s", dt, ex.String(), prog.String())
		}
		if !bytes.Equal(art1.Code, art2.Code) {
			t.Errorf("%v: the cached compile's code differs", dt)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 6 {
		t.Fatalf("%d cache files, want 6", len(files))
	}
	for _, f := range files {
		if err := os.WriteFile(f, []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var prog bytes.Buffer
	m := sltrainModule(t, 32, 48, 40, 8, 57, ir.F32, ir.F32)
	if _, err := compilePlanned(m, Options{MeasureSLTrain: true, Threads: 1, CacheDir: dir, Progress: &prog}); err != nil {
		t.Fatal(err)
	}
	// Threads 1 is another key: no file read. Back to 2 threads: corrupt.
	prog.Reset()
	if _, err := compilePlanned(m, Options{MeasureSLTrain: true, Threads: 2, CacheDir: dir, Progress: &prog, Warnings: &prog}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.String(), "is corrupt") || !strings.Contains(prog.String(), "slc: timing merged") {
		t.Errorf("a corrupt cache file was not reported and replaced:\n%s", prog.String())
	}
}

// TestCalibrationNotHost: another CPU's target keeps the cost model and
// says why.
func TestCalibrationNotHost(t *testing.T) {
	var ex bytes.Buffer
	cpu := "x86-64-v2"
	m := sltrainModule(t, 16, 16, 16, 4, 7, ir.F32, ir.F32)
	if _, err := compilePlanned(m, Options{Target: target.NewCPU(cpu, ""), MeasureSLTrain: true, CacheDir: t.TempDir(), Explain: &ex}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ex.String(), "not measured (--cpu x86-64-v2 is not this machine's CPU") ||
		!strings.Contains(ex.String(), "LowRankSparseAdd factored (cost merged") {
		t.Errorf("explain:\n%s", ex.String())
	}
}

var measuredNote = regexp.MustCompile(`layer: LowRankSparseAdd (merged|factored) \(measured merged [0-9.]+ ms, factored [0-9.]+ ms; rows 32, in 48, out 40, r 8, nnz 57\)`)

func TestTimingCache(t *testing.T) {
	dir := t.TempDir()
	var warnings []string
	warn := func(s string) { warnings = append(warnings, s) }
	s := lower.SLTrainShape{Rows: 2048, In: 512, Out: 1376, R: 128, NNZ: 21135, X: ir.BF16, W: ir.F32, V: ir.F32, Index: ir.I64, Y: ir.F32, LowRank: true}
	want := lower.SLTrainTiming{Merged: 3 * time.Millisecond, Factored: 2500 * time.Microsecond}
	c := newTimingCache(dir, "machine A", warn)
	if _, ok := c.get(s); ok {
		t.Fatal("hit in an empty cache")
	}
	c.put(s, want)
	if got, ok := c.get(s); !ok || got != want {
		t.Errorf("round trip: %v, %v; want %v", got, ok, want)
	}
	if _, ok := newTimingCache(dir, "machine B", warn).get(s); ok {
		t.Error("another machine's times were used")
	}
	s2 := s
	s2.Rows = 1024
	if _, ok := c.get(s2); ok {
		t.Error("another shape's times were used")
	}
	for _, bad := range []string{"", "{", `{"machine": "machine A"}`, `{"merged_ns": -1, "factored_ns": 3}`} {
		warnings = nil
		if err := os.WriteFile(c.path(s), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.get(s); ok || len(warnings) != 1 || !strings.Contains(warnings[0], "corrupt") {
			t.Errorf("corrupt file %q: ok %v, warnings %q", bad, ok, warnings)
		}
	}
	c.put(s, want)
	if got, ok := c.get(s); !ok || got != want {
		t.Errorf("after a rewrite: %v, %v", got, ok)
	}
	// No directory at all: misses, no warnings.
	warnings = nil
	none := &timingCache{ident: "x", warn: warn}
	none.put(s, want)
	if _, ok := none.get(s); ok || warnings != nil {
		t.Errorf("a cache without a directory: %v %q", ok, warnings)
	}
}
