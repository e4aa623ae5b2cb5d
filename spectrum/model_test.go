package spectrum

import (
	"bytes"
	"encoding/csv"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// A tiny LLaMA's linear layers: d 6, ff 8, 2 blocks, SLTrain r 2, α 3.
const (
	tinyD, tinyFF, tinyBlocks, tinyR = 6, 8, 2, 2
	tinyAlpha                        = 3.0
	tinyScale                        = tinyAlpha / tinyR
)

var tinySL = map[string]any{"r": float64(tinyR), "lora_alpha": tinyAlpha, "sp_ratio": 0.25, "target_modules": []any{"attn", "mlp"}}

// tinyModule lists the tiny model's modules with their [out, in].
func tinyModules() (names []string, shapes [][2]int) {
	for b := range tinyBlocks {
		p := "model.layers." + strconv.Itoa(b) + "."
		// HF's file order (down before up), which Open must not keep.
		for _, m := range []struct {
			name    string
			out, in int
		}{{"self_attn.q_proj", tinyD, tinyD}, {"self_attn.k_proj", tinyD, tinyD}, {"self_attn.v_proj", tinyD, tinyD}, {"self_attn.o_proj", tinyD, tinyD},
			{"mlp.gate_proj", tinyFF, tinyD}, {"mlp.down_proj", tinyD, tinyFF}, {"mlp.up_proj", tinyFF, tinyD}} {
			names = append(names, p+m.name)
			shapes = append(shapes, [2]int{m.out, m.in})
		}
	}
	return names, shapes
}

// tinyTensors returns the tiny model's tensors: factored (with an embedding
// that is no target), and the same layers merged as dense F64 weights
// W = B·A·scale + S.
func tinyTensors() (factored, dense *safetensors.File) {
	rng := rand.New(rand.NewPCG(1, 2))
	factored, dense = &safetensors.File{}, &safetensors.File{}
	emb := safetensors.FromFloat32s("model.embed_tokens.weight", ir.F32, []int{10, tinyD}, make([]float32, 10*tinyD))
	factored.Tensors = append(factored.Tensors, emb)
	dense.Tensors = append(dense.Tensors, emb)
	names, shapes := tinyModules()
	for i, name := range names {
		out, in := shapes[i][0], shapes[i][1]
		a := make([]float64, tinyR*in)
		b := make([]float64, out*tinyR)
		for k := range a {
			a[k] = rng.Float64()*2 - 1
		}
		for k := range b {
			b[k] = rng.NormFloat64()
		}
		nnz := out * in / 4
		idx := make([]int64, 0, nnz)
		for _, j := range rng.Perm(out * in)[:nnz] {
			idx = append(idx, int64(j))
		}
		slices.Sort(idx)
		v := make([]float64, nnz)
		for k := range v {
			v[k] = rng.Float64() - 0.5
		}
		factored.Tensors = append(factored.Tensors,
			safetensors.FromFloat64s(name+".lora_A", ir.F64, []int{tinyR, in}, a),
			safetensors.FromFloat64s(name+".lora_B", ir.F64, []int{out, tinyR}, b),
			safetensors.FromFloat64s(name+".sparse_value", ir.F64, []int{nnz}, v),
			safetensors.FromInt64s(name+".sparse_index", ir.I64, []int{nnz}, idx))
		w := make([]float64, out*in)
		for o := range out {
			for j := range in {
				for k := range tinyR {
					w[o*in+j] += b[o*tinyR+k] * a[k*in+j] * tinyScale
				}
			}
		}
		for k, j := range idx {
			w[j] += v[k]
		}
		dense.Tensors = append(dense.Tensors, safetensors.FromFloat64s(name+".weight", ir.F64, []int{out, in}, w))
	}
	return factored, dense
}

var tinyConfig = []byte(`{"model_type": "llama", "hidden_size": 6}`)

// writeExport writes an export directory: model.safetensors, config.json
// and, for SLTrain, sltrain_config.json.
func writeExport(t *testing.T, dir string, f *safetensors.File, sl []byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), tinyConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	if sl != nil {
		if err := os.WriteFile(filepath.Join(dir, "sltrain_config.json"), sl, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tinyDirs writes the tiny model as an slc checkpoint, an SLTrain export and
// an HF export (dense, merged).
func tinyDirs(t *testing.T) (ckpt, sltrain, hf string) {
	t.Helper()
	root := t.TempDir()
	factored, dense := tinyTensors()
	ckpt = filepath.Join(root, "checkpoint-5")
	c := &checkpoint.Checkpoint{Model: factored, State: checkpoint.TrainingState{Step: 5}, Config: tinyConfig, SLTrain: tinySL}
	if err := checkpoint.Save(ckpt, c); err != nil {
		t.Fatal(err)
	}
	sltrain, hf = filepath.Join(root, "sltrain"), filepath.Join(root, "hf")
	writeExport(t, sltrain, factored, []byte(`{"r": 2, "lora_alpha": 3, "sp_ratio": 0.25}`))
	writeExport(t, hf, dense, nil)
	return ckpt, sltrain, hf
}

func TestOpenFindsLayers(t *testing.T) {
	ckpt, sltrain, hf := tinyDirs(t)
	var wantNames []string
	for b := range tinyBlocks {
		for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			wantNames = append(wantNames, "model.layers."+strconv.Itoa(b)+"."+m)
		}
	}
	for _, tc := range []struct {
		dir, kind string
		sl        bool
	}{{ckpt, "an slc checkpoint", true}, {sltrain, "an SLTrain export", true}, {hf, "an HF export", false}} {
		m, err := Open(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind != tc.kind || m.SLTrain() != tc.sl {
			t.Errorf("%s: kind %q, SLTrain %v; want %q, %v", tc.dir, m.Kind, m.SLTrain(), tc.kind, tc.sl)
		}
		if tc.sl && (m.Rank != tinyR || m.Scale != tinyScale) {
			t.Errorf("%s: r %d, scale %v; want %d, %v", tc.dir, m.Rank, m.Scale, tinyR, tinyScale)
		}
		var names, types []string
		for _, l := range m.Layers {
			names = append(names, l.Name)
			types = append(types, l.Type)
		}
		if !slices.Equal(names, wantNames) {
			t.Errorf("%s: layers %v, want %v", tc.dir, names, wantNames)
		}
		if want := append(slices.Clone(Types), Types...); !slices.Equal(types, want) {
			t.Errorf("%s: types %v, want %v", tc.dir, types, want)
		}
		if got := m.Blocks(); !slices.Equal(got, []int{0, 1}) {
			t.Errorf("%s: blocks %v", tc.dir, got)
		}
	}
}

// The factored analysis of a layer agrees with the dense analysis of its
// merged weight, and does not depend on the number of workers.
func TestAnalyzeFactoredMatchesDense(t *testing.T) {
	ckpt, _, hf := tinyDirs(t)
	mf, err := Open(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	md, err := Open(hf)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	one, err := Analyze(mf, Options{Workers: 1, Progress: func(done, total int) {
		calls++
		if done != calls || total != len(mf.Layers) {
			t.Errorf("progress %d/%d at call %d", done, total, calls)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if calls != len(mf.Layers) {
		t.Errorf("%d progress calls for %d layers", calls, len(mf.Layers))
	}
	three, err := Analyze(mf, Options{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	dense, err := Analyze(md, Options{Rank: tinyR})
	if err != nil {
		t.Fatal(err)
	}
	for i := range one {
		f, d := &one[i], &dense[i]
		if !slices.Equal(f.W, three[i].W) || !slices.Equal(f.L, three[i].L) || !slices.Equal(f.S, three[i].S) {
			t.Errorf("%s: 1 and 3 workers differ", f.Layer)
		}
		if len(f.L) != tinyR || len(f.S) != min(f.Out, f.In) || d.L != nil || d.S != nil {
			t.Errorf("%s: %d L, %d S values; dense %d, %d", f.Layer, len(f.L), len(f.S), len(d.L), len(d.S))
		}
		near(t, f.Layer+" L+S vs merged W", f.W, d.W, 1e-13)
		if d.TopR != tinyR || math.Abs(d.TopW-f.TopW) > 1e-12 || !math.IsNaN(d.SShare) || !math.IsNaN(d.CapturedL) {
			t.Errorf("%s: dense top-%d %v (factored %v), S share %v, captured %v", f.Layer, d.TopR, d.TopW, f.TopW, d.SShare, d.CapturedL)
		}
		if !(f.CapturedL > 0 && f.CapturedL <= f.TopW+1e-12 && f.SShare > 0 && f.SShare < 1) {
			t.Errorf("%s: captured %v, top %v, S share %v", f.Layer, f.CapturedL, f.TopW, f.SShare)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	root := t.TempDir()
	factored, _ := tinyTensors()
	without := func(drop string) *safetensors.File {
		f := &safetensors.File{}
		for _, x := range factored.Tensors {
			if x.Name != drop {
				f.Tensors = append(f.Tensors, x)
			}
		}
		return f
	}
	badIndex := without("")
	for i, x := range badIndex.Tensors {
		if x.Name == "model.layers.1.mlp.up_proj.sparse_index" {
			idx, _ := x.Int64s()
			idx[0] = 1 << 20
			badIndex.Tensors[i] = safetensors.FromInt64s(x.Name, ir.I64, x.Shape, idx)
		}
	}
	sl := []byte(`{"r": 2, "lora_alpha": 3}`)
	cases := []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"missing", func(string) {}, "no such file or directory"},
		{"empty", func(d string) { os.Mkdir(d, 0o755) }, "neither an slc checkpoint (no training_state.json) nor an export (no model.safetensors)"},
		{"file", func(d string) { os.WriteFile(d, nil, 0o644) }, "not a directory"},
		{"corrupt model", func(d string) {
			writeExport(t, d, factored, sl)
			os.WriteFile(filepath.Join(d, "model.safetensors"), []byte("not safetensors at all"), 0o644)
		}, "corrupt model file: " + filepath.Join(root, "corrupt model", "model.safetensors")},
		{"corrupt checkpoint", func(d string) {
			checkpoint.Save(d, &checkpoint.Checkpoint{Model: factored, Config: tinyConfig, SLTrain: tinySL})
			os.WriteFile(filepath.Join(d, "model.safetensors"), []byte{1, 2, 3}, 0o644)
		}, filepath.Join(root, "corrupt checkpoint", "model.safetensors") + ": checksum mismatch"}, // the checkpoint's own SHA-256 catches it first
		{"no sltrain config", func(d string) { writeExport(t, d, factored, nil) }, "has SLTrain factors but there is no SLTrain config (sltrain_config.json)"},
		{"bad sltrain config", func(d string) { writeExport(t, d, factored, []byte(`{"r": 0, "lora_alpha": 3}`)) }, `sltrain_config.json: SLTrain config field "r": want a positive integer, got 0`},
		{"rank mismatch", func(d string) { writeExport(t, d, factored, []byte(`{"r": 3, "lora_alpha": 3}`)) }, "rank 2, but the SLTrain config says r = 3"},
		{"missing factor", func(d string) { writeExport(t, d, without("model.layers.0.self_attn.v_proj.lora_B"), sl) }, "layer model.layers.0.self_attn.v_proj: has no model.layers.0.self_attn.v_proj.lora_B"},
		{"index out of range", func(d string) { writeExport(t, d, badIndex, sl) }, "sparse_index[0] = 1048576 is outside the [8, 6] weight"},
		{"no layers", func(d string) {
			writeExport(t, d, &safetensors.File{Tensors: factored.Tensors[:1]}, nil)
		}, "no linear layer of attention or MLP in it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(root, tc.name)
			tc.setup(dir)
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want an error containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("the error does not name %s: %v", dir, err)
			}
		})
	}
}

func TestOutputFiles(t *testing.T) {
	ckpt, _, hf := tinyDirs(t)
	var runs []Run
	for _, d := range []struct{ label, dir string }{{"sl", ckpt}, {"full, merged", hf}} {
		m, err := Open(d.dir)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Analyze(m, Options{Rank: tinyR})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, Run{Label: d.label, Model: m, Results: res})
	}
	// spectrum.csv holds every value exactly.
	rows, err := csv.NewReader(bytes.NewReader(SpectrumCSV(runs))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], []string{"run", "layer", "component", "index", "value"}) {
		t.Fatalf("header %v", rows[0])
	}
	got := map[string][]float64{}
	for _, r := range rows[1:] {
		v, err := strconv.ParseFloat(r[4], 64)
		if err != nil {
			t.Fatal(err)
		}
		k := r[0] + "|" + r[1] + "|" + r[2]
		if n, _ := strconv.Atoi(r[3]); n != len(got[k])+1 {
			t.Fatalf("row %v: index %s after %d values", r, r[3], len(got[k]))
		}
		got[k] = append(got[k], v)
	}
	for _, run := range runs {
		for _, r := range run.Results {
			for _, c := range []string{CompL, CompS, CompSum, CompDense} {
				if !slices.Equal(got[run.Label+"|"+r.Layer+"|"+c], r.Component(c)) {
					t.Errorf("spectrum.csv %s %s %s differs from the result", run.Label, r.Layer, c)
				}
			}
		}
	}
	sum, err := csv.NewReader(bytes.NewReader(SummaryCSV(runs))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(sum) != 1+2*len(runs[0].Results) || !slices.Equal(sum[0], SummaryColumns) {
		t.Fatalf("summary.csv: %d rows, header %v", len(sum), sum[0])
	}
	if dense := sum[1+len(runs[0].Results)]; dense[8] != "" || dense[10] == "" || dense[18] != "2" {
		t.Errorf("a dense layer's summary row: %v", dense)
	}

	files, err := Files(runs, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		if strings.HasSuffix(f.Name, ".png") {
			if _, err := png.Decode(bytes.NewReader(f.Data)); err != nil {
				t.Errorf("%s: %v", f.Name, err)
			}
		}
	}
	want := []string{"spectrum.csv", "summary.csv", "spectrum-1.png", "spectrum_tail-1.png", "spectrum-2.png", "spectrum_tail-2.png", "compare.png", "compare_tail.png"}
	if !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}

	out := filepath.Join(t.TempDir(), "analysis")
	if err := CheckOutput(out); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(out, files); err != nil {
		t.Fatal(err)
	}
	// A second analysis of one run replaces the directory whole.
	one, err := Files(runs[:1], 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckOutput(out); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(out, one); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(out)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"spectrum.csv", "spectrum.png", "spectrum_tail.png", "summary.csv"}; !slices.Equal(left, want) {
		t.Errorf("after the second write %s holds %v, want %v", out, left, want)
	}
	// A directory with a file of the user's is refused, and kept.
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	if err := CheckOutput(out); err == nil || !strings.Contains(err.Error(), `holds "notes.txt"`) {
		t.Errorf("CheckOutput: %v", err)
	}
	if err := WriteDir(out, one); err == nil {
		t.Error("WriteDir replaced a directory holding notes.txt")
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err != nil {
		t.Error(err)
	}
	// An output below a file cannot be written.
	if err := CheckOutput(filepath.Join(out, "notes.txt", "x")); err == nil || !strings.Contains(err.Error(), "cannot write there") {
		t.Errorf("CheckOutput below a file: %v", err)
	}
}

func TestAnalyzeRefusesNonFinite(t *testing.T) {
	factored, _ := tinyTensors()
	for i, x := range factored.Tensors {
		if x.Name == "model.layers.1.self_attn.o_proj.lora_B" {
			v, _ := x.Float64s()
			v[3] = math.NaN()
			factored.Tensors[i] = safetensors.FromFloat64s(x.Name, ir.F64, x.Shape, v)
		}
	}
	dir := filepath.Join(t.TempDir(), "nan")
	writeExport(t, dir, factored, []byte(`{"r": 2, "lora_alpha": 3}`))
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Analyze(m, Options{})
	if want := "layer model.layers.1.self_attn.o_proj: model.layers.1.self_attn.o_proj.lora_B[3] is NaN"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Analyze: %v; want %q", err, want)
	}
}
