package train

import (
	"bytes"
	"errors"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/data"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/safetensors"
	"gitee.com/gidean/conv-linn/version"
)

// The tiny LLaMA (vocab 32, d 16, 2 layers) at B × L, SLTrain r 4, δ 0.1,
// compiled once for the package's tests.
const (
	tinyB = 2
	tinyL = 8
	vocab = 32
)

var (
	tinyOnce sync.Once
	tinyArt  *artifact.Artifact
	tinyErr  error
)

// tinyRuntime loads a fresh runtime of the tiny model (the same seeded
// initial state every time).
func tinyRuntime(t *testing.T) *runtime.Runtime {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler to link kernels")
	}
	tinyOnce.Do(func() {
		cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
		if err != nil {
			tinyErr = err
			return
		}
		m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: tinyB, SeqLen: tinyL, Seed: 3})
		if err != nil {
			tinyErr = err
			return
		}
		o := passes.DefaultOptions()
		o.Rank, o.SpRatio, o.Seed = 4, 0.1, 3
		s := &passes.State{Module: m, Options: o}
		if tinyErr = passes.Run(s, passes.Pipeline); tinyErr != nil {
			return
		}
		tinyArt, tinyErr = codegen.Compile(m, codegen.Options{Groups: s.Groups, Plans: s.Plans})
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	rt, err := runtime.Load(tinyArt, runtime.Options{Threads: 2, Version: version.Version})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// tokens is a seeded random stream of n ids below vocab.
func tokens(n int, seed uint64) []int32 {
	r := ir.NewRNG(seed)
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(r.Uint64n(vocab))
	}
	return out
}

func batcher(t *testing.T, toks []int32, shuffle bool) *data.Batcher {
	t.Helper()
	b, err := data.NewBatcher(toks, tinyL, tinyB, shuffle, 7)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func options(dir string, total, accum int) Options {
	return Options{
		Schedule:    Schedule{Kind: Cosine, LR: 1e-2, Warmup: 2, Total: total, MinLRRatio: 0.1},
		Accum:       accum,
		WeightDecay: 0.1,
		MaxGradNorm: 1,
		SaveDir:     dir,
		Seed:        7,
		Args:        map[string]any{"batch_size": tinyB},
	}
}

// An update's loss is the mean of its micro-batch losses, each the mean CE of
// its rows: the eval program on the same rows, before the update, gives
// them. The update uses lr·λ(0) and advances the data by G·B rows.
func TestUpdateLossIsMeanOfMicroBatches(t *testing.T) {
	rt := tinyRuntime(t)
	toks := tokens(40*tinyL, 1)
	const g = 3
	probe := batcher(t, toks, false)
	var want float64
	for i := 0; i < g; i++ {
		out, err := rt.Run("eval", runtime.Inputs{Data: map[string][]int64{"input_ids": probe.Next()}})
		if err != nil {
			t.Fatal(err)
		}
		l, _ := out["loss"].Scalar()
		want += l / g
	}
	tb := batcher(t, toks, false)
	opt := options(t.TempDir(), 10, g)
	opt.Schedule.Warmup = 0
	tn, err := New(rt, tb, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tn.Update()
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Loss-want) > 1e-6*want {
		t.Errorf("update loss %.9g, mean of the micro-batch losses %.9g", r.Loss, want)
	}
	if r.Step != 1 || r.LR != opt.Schedule.At(0) || r.TokensSeen != g*tinyB*tinyL {
		t.Errorf("record %+v: want step 1, lr %g, %d tokens", r, opt.Schedule.At(0), g*tinyB*tinyL)
	}
	if p := tb.Position(); p != (data.Position{Epoch: 0, Index: g * tinyB}) {
		t.Errorf("data position after one update: %+v, want row %d", p, g*tinyB)
	}
	if !(r.GradNorm > 0) {
		t.Errorf("grad norm %v", r.GradNorm)
	}
}

// A run stopped after a checkpoint and resumed from it in a fresh runtime
// ends bit-identical to an uninterrupted run: parameters, buffers and
// optimizer state, across shuffled epochs and with accumulation.
func TestResumeIsBitIdentical(t *testing.T) {
	toks := tokens(10*tinyL, 2) // 10 rows: an update of 2×2 rows crosses epochs
	const n = 6

	a := t.TempDir()
	tn, err := New(tinyRuntime(t), batcher(t, toks, true), batcher(t, tokens(4*tinyL, 3), false), options(a, n, 2))
	if err != nil {
		t.Fatal(err)
	}
	ra, err := tn.Run()
	if err != nil {
		t.Fatal(err)
	}
	if ra.Steps != n || ra.Interrupted || ra.Eval == nil {
		t.Fatalf("uninterrupted run: %+v", ra)
	}

	b := t.TempDir()
	tn, err = New(tinyRuntime(t), batcher(t, toks, true), nil, options(b, n, 2))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := tn.Update(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tn.Save(); err != nil {
		t.Fatal(err)
	}
	tn.Update() // lost with the crash
	ck, err := checkpoint.Load(filepath.Join(b, LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	if ck.State.Step != 3 || ck.State.TokensSeen != 3*2*tinyB*tinyL {
		t.Errorf("checkpoint state %+v", ck.State)
	}
	tn, err = New(tinyRuntime(t), batcher(t, toks, true), nil, options(b, n, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.Resume(ck); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.Run(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{checkpoint.ModelFile, checkpoint.OptimizerFile} {
		x, err := os.ReadFile(filepath.Join(CheckpointDir(a, n), f))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(CheckpointDir(b, n), f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", f)
		}
	}
}

// stopAt is an Observer that asks the run to stop at an update.
type stopAt struct {
	tn    *Trainer
	step  int
	evals int
	saved []int
}

func (s *stopAt) Step(r StepRecord, total int, eta time.Duration) {
	if r.Step == s.step {
		s.tn.Stop()
	}
}
func (s *stopAt) Eval(EvalRecord)            { s.evals++ }
func (s *stopAt) Saved(dir string, step int) { s.saved = append(s.saved, step) }

func TestStopSavesAndReturns(t *testing.T) {
	dir := t.TempDir()
	obs := &stopAt{step: 2}
	opt := options(dir, 100, 1)
	opt.Observer = obs
	tn, err := New(tinyRuntime(t), batcher(t, tokens(20*tinyL, 4), true), nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	obs.tn = tn
	res, err := tn.Run()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Steps != 2 || res.Checkpoint != CheckpointDir(dir, 2) {
		t.Errorf("result %+v", res)
	}
	if len(obs.saved) != 1 || obs.saved[0] != 2 {
		t.Errorf("saved at %v, want [2]", obs.saved)
	}
	ck, err := checkpoint.Load(filepath.Join(dir, LatestLink))
	if err != nil || ck.State.Step != 2 {
		t.Fatalf("latest checkpoint: %v, %+v", err, ck)
	}
	if p := (data.Position{Epoch: ck.State.Epoch, Index: ck.State.RowIndex}); p != (data.Position{Index: 2 * tinyB}) {
		t.Errorf("saved data position %+v", p)
	}
}

// A learning rate that blows the model up stops the run with a
// *NonFiniteError and leaves the last good checkpoint the newest.
func TestNonFiniteStopsWithoutSaving(t *testing.T) {
	dir := t.TempDir()
	opt := options(dir, 10, 1)
	opt.Schedule.LR, opt.Schedule.Warmup, opt.MaxGradNorm = 1e30, 2, 0
	opt.SaveEvery = 1
	tn, err := New(tinyRuntime(t), batcher(t, tokens(20*tinyL, 5), false), nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tn.Run()
	var nf *NonFiniteError
	if !errors.As(err, &nf) {
		t.Fatalf("got %v, want a NonFiniteError", err)
	}
	ck, err := checkpoint.Load(filepath.Join(dir, LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	if ck.State.Step >= int64(nf.Step) {
		t.Errorf("the newest checkpoint is at update %d, the failure at update %d", ck.State.Step, nf.Step)
	}
	for _, tt := range ck.Model.Tensors {
		if tt.DType != ir.F32 {
			continue
		}
		v, _ := tt.Float32s()
		for _, f := range v {
			if !isFinite(float64(f)) {
				t.Fatalf("checkpoint tensor %s holds %v", tt.Name, f)
			}
		}
	}
}

func TestLoadInit(t *testing.T) {
	rt := tinyRuntime(t)
	emb, _ := rt.State("model.embed_tokens.weight")
	ones := make([]float32, emb.Type.NumElements())
	for i := range ones {
		ones[i] = 0.5
	}
	idx, _ := rt.State("model.layers.0.mlp.up_proj.sparse_index")
	ids, _ := idx.Int64s()
	good := &safetensors.File{Tensors: []safetensors.Tensor{
		safetensors.FromFloat32s("model.embed_tokens.weight", ir.BF16, emb.Type.Shape, ones),
		safetensors.FromInt64s("model.layers.0.mlp.up_proj.sparse_index", ir.I64, idx.Type.Shape, ids),
	}}
	rep, err := loadInit(rt, good, "good.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Loaded != 2 || len(rep.Missing) == 0 {
		t.Errorf("report %+v", rep)
	}
	got, _ := rt.State("model.embed_tokens.weight")
	if f, _ := got.Float32s(); f[0] != 0.5 || f[len(f)-1] != 0.5 {
		t.Errorf("embedding not loaded: %v", f[:3])
	}

	before, _ := rt.State("model.norm.weight")
	bad := &safetensors.File{Tensors: []safetensors.Tensor{
		safetensors.FromFloat32s("model.norm.weight", ir.F32, []int{16}, make([]float32, 16)),
		safetensors.FromFloat32s("model.embed_tokens.weight", ir.F32, []int{3, 16}, make([]float32, 48)),
		safetensors.FromFloat32s("model.layers.0.mlp.up_proj.weight", ir.F32, []int{24, 16}, make([]float32, 24*16)),
		safetensors.FromInt64s("model.layers.0.mlp.up_proj.sparse_index", ir.I64, idx.Type.Shape, make([]int64, len(ids))),
	}}
	_, err = loadInit(rt, bad, "bad.safetensors")
	if err == nil {
		t.Fatal("no error for wrong names and shapes")
	}
	for _, want := range []string{"bad.safetensors", "model.embed_tokens.weight is f32[3,16] in the file, f32[32,16] in the model",
		"model.layers.0.mlp.up_proj.weight is not a parameter or buffer", "sparse_index: indices are not strictly increasing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	after, _ := rt.State("model.norm.weight")
	if !bytes.Equal(before.Data, after.Data) {
		t.Error("a failed --init changed the model")
	}
}

func TestCheckIndices(t *testing.T) {
	rt := tinyRuntime(t)
	if err := CheckIndices(rt); err != nil {
		t.Fatal(err)
	}
	name := "model.layers.1.self_attn.q_proj.sparse_index"
	idx, _ := rt.State(name)
	v, _ := idx.Int64s()
	v[len(v)-1] = 16 * 16 // one past the end of [out, in]
	if err := rt.SetStateInt64(name, v); err != nil {
		t.Fatal(err)
	}
	if err := CheckIndices(rt); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("an index outside the matrix: %v", err)
	}
}

func TestMetricsResumeAndNull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	m, err := OpenMetrics(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= 4; s++ {
		m.Step(StepRecord{Step: s, Loss: float64(5 - s), LR: 1e-3, GradNorm: 1, TokensSeen: int64(s) * 10, TokensPerS: 100, ElapsedS: float64(s)})
		if s%2 == 0 {
			m.Eval(EvalRecord{Step: s, EvalLoss: float64(5 - s), EvalPPL: math.Exp(float64(5 - s))})
		}
	}
	m.Eval(EvalRecord{Step: 4, EvalLoss: math.NaN(), EvalPPL: math.Inf(1)})
	m.Close()
	first, _ := os.ReadFile(path)
	if want := `{"step": 1, "loss": 4, "lr": 0.001, "grad_norm": 1, "tokens_seen": 10, "tokens_per_s": 100, "elapsed_s": 1}`; !strings.HasPrefix(string(first), want+"\n") {
		t.Errorf("first line: %q, want %q", strings.SplitN(string(first), "\n", 2)[0], want)
	}
	if !strings.Contains(string(first), `{"step": 4, "eval_loss": null, "eval_ppl": null}`) {
		t.Errorf("a NaN eval is not written as null:\n%s", first)
	}

	// Resuming from update 2 drops what came after it.
	m, err = OpenMetrics(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.Step(StepRecord{Step: 3, Loss: 1.5})
	m.Close()
	steps, evals, err := ReadMetrics(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 || steps[2].Loss != 1.5 || len(evals) != 1 || evals[0].Step != 2 {
		t.Errorf("after resuming at 2: steps %+v, evals %+v", steps, evals)
	}
}

func TestPlotLoss(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loss.png")
	var steps []StepRecord
	for s := 1; s <= 50; s++ {
		steps = append(steps, StepRecord{Step: s, Loss: 5 / math.Sqrt(float64(s))})
	}
	evals := []EvalRecord{{Step: 25, EvalLoss: 1.1}, {Step: 50, EvalLoss: 0.8}, {Step: 50, EvalLoss: math.NaN()}}
	if err := PlotLoss(path, "test", steps, evals); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Errorf("plot is %v", b)
	}
	if err := PlotLoss(path, "none", nil, []EvalRecord{{Step: 1, EvalLoss: math.Inf(1)}}); err == nil {
		t.Error("no error for nothing to plot")
	}
}
