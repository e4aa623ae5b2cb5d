// Command ptxrun runs the programs of a cuda artifact in the PTX emulator,
// for slc's tests on machines without a GPU, or on a real GPU through the
// CUDA driver (session "device": "cuda": the device check runs the same
// tests there). It is a process of its own because the emulator links a
// copy of LLVM 15 that cannot share a process with the LLVM 19 of slc's
// compiler.
//
//	ptxrun SESSION.json
//
// The session names the artifact, the emulator library, the initial state
// (one file of raw little-endian bytes per tensor) and the program runs, in
// order; after run i, every state tensor and every output is written to
// OUT/i/<name>.bin. The programs run in slc's runtime, on its cuda half:
// over ptxemu.Device (every step one launch of its kernel, the PTX module
// cut down to that one .entry, over host memory) or the CUDA driver, with
// Grid blocks of Block threads.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/internal/ptxemu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/summary"
)

// Session is the input of ptxrun.
type Session struct {
	Artifact    string            `json:"artifact"`
	Emulator    string            `json:"emulator"`
	State       map[string]string `json:"state"` // tensor name → raw file
	Runs        []Run             `json:"runs"`
	Out         string            `json:"out"`
	Block, Grid int
	// Device is "emu" (the PTX emulator, the default) or "cuda" (the real
	// driver, libcuda.so.1: the whole PTX module loaded as it is).
	Device string `json:"device"`
	// Check, when set, judges every run against the reference interpreter
	// started from the state the device had before it (the artifact's own
	// module), with these norm-wise tolerances: the loss, state after an
	// update, other state. The verdict is printed; a failure exits 1.
	Check     bool    `json:"check"`
	LossTol   float64 `json:"loss_tol"`
	UpdateTol float64 `json:"update_tol"`
	StateTol  float64 `json:"state_tol"`
	// Expect, when set, is a directory laid out as Out (Expect/i/<name>.bin)
	// with another runtime's results of the same runs (the CPU's): every
	// f32 file there must match ours within ExpectTol, norm-wise.
	Expect    string  `json:"expect"`
	ExpectTol float64 `json:"expect_tol"`
	// Bench, when set, times training updates instead of running Runs.
	Bench *Bench `json:"bench"`
}

// Bench times Steps updates (after Warmup untimed ones) of Accum
// micro-batches of random token ids each: train_step Accum times, then
// update, as slc train does.
type Bench struct {
	Steps, Warmup, Accum int
	// PeakTFLOPS is the chip's dense peak the model FLOP utilisation is
	// reported against (989 for H100/H200 SXM bf16).
	PeakTFLOPS float64 `json:"peak_tflops"`
}

// Run is one program run.
type Run struct {
	Program string               `json:"program"`
	Data    map[string][]int64   `json:"data"`
	Floats  map[string][]float32 `json:"floats"`
	Scalars map[string]float64   `json:"scalars"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ptxrun SESSION.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "ptxrun:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var s Session
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Relative paths are the session file's directory's (a prepared check
	// travels to another machine).
	base := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	s.Artifact, s.Out, s.Expect = rel(s.Artifact), rel(s.Out), rel(s.Expect)
	for k, v := range s.State {
		s.State[k] = rel(v)
	}
	art, err := artifact.ReadFile(s.Artifact)
	if err != nil {
		return err
	}
	opt := runtime.Options{GPUGrid: s.Grid, GPUBlock: s.Block}
	switch s.Device {
	case "", "emu":
		emu, err := ptxemu.Open(s.Emulator)
		if err != nil {
			return err
		}
		opt.Device = ptxemu.NewDevice(emu, s.Grid, s.Block)
	case "cuda":
		// The runtime opens the machine's GPU.
	default:
		return fmt.Errorf("unknown device %q (want emu or cuda)", s.Device)
	}
	rt, err := runtime.Load(art, opt)
	if err != nil {
		return err
	}
	defer rt.Close()
	if d := rt.Device(); d != nil {
		fmt.Fprintf(os.Stderr, "ptxrun: %s\n", d.Name())
	}
	if err := rt.GraphErr(); err != nil {
		fmt.Fprintf(os.Stderr, "ptxrun: CUDA graphs off: %v\n", err)
	}
	types := map[string]ir.Type{}
	for _, name := range rt.StateNames() {
		if types[name], err = rt.StateType(name); err != nil {
			return err
		}
	}
	for name, file := range s.State {
		t, ok := types[name]
		if !ok {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if err := rt.SetStateBytes(name, t.DType, b); err != nil {
			return err
		}
	}
	if s.Bench != nil {
		return bench(rt, s.Bench)
	}
	for i, r := range s.Runs {
		outs, err := rt.Run(r.Program, runtime.Inputs{Data: r.Data, Floats: r.Floats, Scalars: r.Scalars})
		if err != nil {
			return fmt.Errorf("run %d (%s): %w", i, r.Program, err)
		}
		dir := filepath.Join(s.Out, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for name := range types {
			st, err := rt.State(name)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "state."+name+".bin"), st.Data, 0o644); err != nil {
				return err
			}
		}
		for name, x := range outs {
			if err := os.WriteFile(filepath.Join(dir, "out."+name+".bin"), x.Data, 0o644); err != nil {
				return err
			}
		}
	}
	if s.Check {
		if err := check(&s, art, types); err != nil {
			return err
		}
	}
	if s.Expect != "" {
		return expect(&s)
	}
	return nil
}

// expect compares every f32 result under s.Expect with ours under s.Out.
func expect(s *Session) error {
	failed, n := 0, 0
	worst, worstName := 0.0, ""
	err := filepath.WalkDir(s.Expect, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.Expect, path)
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(s.Out, rel))
		if err != nil {
			return err
		}
		if len(got) != len(want) {
			return fmt.Errorf("%s: %d bytes, expected %d", rel, len(got), len(want))
		}
		g, w := make([]float64, len(want)/4), make([]float64, len(want)/4)
		for i := range w {
			g[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:])))
			w[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(want[4*i:])))
		}
		n++
		e := relErr(g, w)
		if e > worst {
			worst, worstName = e, rel
		}
		if e > s.ExpectTol {
			failed++
			fmt.Printf("expect: %s differs from the expected by %.3g (norm-wise; tolerance %g)\n", rel, e, s.ExpectTol)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("expect: %w", err)
	}
	fmt.Printf("expect: %d results, worst %.3g (%s)\n", n, worst, worstName)
	if failed > 0 {
		return fmt.Errorf("%d results differ from the expected ones", failed)
	}
	return nil
}

// bench times b's updates on rt and prints one line of figures.
func bench(rt *runtime.Runtime, b *Bench) error {
	m := rt.Module()
	g := m.Graph("train_step")
	if g == nil || m.Graph("update") == nil {
		return fmt.Errorf("bench: the artifact has no train_step and update programs")
	}
	ids := g.Input("input_ids")
	if ids == nil {
		return fmt.Errorf("bench: train_step has no input_ids")
	}
	var cfg struct {
		VocabSize int `json:"vocab_size"`
	}
	if err := json.Unmarshal([]byte(m.Meta["model_config"]), &cfg); err != nil || cfg.VocabSize < 1 {
		return fmt.Errorf("bench: the artifact's model_config has no vocab_size")
	}
	accum := max(1, b.Accum)
	rng := ir.NewRNG(1)
	tokens := make([]int64, ids.Type.NumElements())
	in := runtime.Inputs{Data: map[string][]int64{"input_ids": tokens}, Scalars: map[string]float64{"grad_scale": 1 / float64(accum)}}
	if g.Input("loss_mask") != nil {
		mask := make([]float32, len(tokens))
		for i := range mask {
			mask[i] = 1
		}
		in.Floats = map[string][]float32{"loss_mask": mask}
	}
	update := runtime.Inputs{Scalars: map[string]float64{"lr": 1e-4, "step": 1, "weight_decay": 0, "max_grad_norm": 1}}
	var times []float64
	for step := 0; step < b.Warmup+b.Steps; step++ {
		t0 := time.Now()
		for range accum {
			for i := range tokens {
				tokens[i] = int64(rng.Uint64n(uint64(cfg.VocabSize)))
			}
			if _, err := rt.Run("train_step", in); err != nil {
				return err
			}
		}
		update.Scalars["step"] = float64(step + 1)
		if _, err := rt.Run("update", update); err != nil {
			return err
		}
		if step >= b.Warmup {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	if len(times) == 0 {
		return fmt.Errorf("bench: no timed steps")
	}
	slices.Sort(times)
	med := times[len(times)/2]
	flops := float64(summary.FLOPs(g)) * float64(accum)
	tps := float64(len(tokens)*accum) / med
	tf := flops / med / 1e12
	line := fmt.Sprintf("bench: %.4f s/update (median of %d), %.0f tokens/s, %.1f TFLOP/s (%.1f GFLOP per update), device memory %.2f GiB",
		med, len(times), tps, tf, flops/1e9, float64(rt.DeviceBytes())/(1<<30))
	if b.PeakTFLOPS > 0 {
		line += fmt.Sprintf(", MFU %.1f%% of %.0f TFLOP/s", 100*tf/b.PeakTFLOPS, b.PeakTFLOPS)
	}
	// Launches per update: the kernels (train_step's per micro-batch, then
	// update's) and what the host queued for them (one per program run
	// where a CUDA graph replays it; runtime's SLC_CUDA_GRAPHS=0 turns
	// graphs off).
	ts, tq, _ := rt.Launches("train_step")
	us, uq, _ := rt.Launches("update")
	how := "direct launches"
	if tq < ts || uq < us {
		how = "CUDA graphs"
	} else if err := rt.GraphErr(); err != nil {
		how += "; " + err.Error()
	}
	line += fmt.Sprintf(", %d kernels per update (train_step %d × %d + update %d), %d launches queued (%s)",
		accum*ts+us, ts, accum, us, accum*tq+uq, how)
	fmt.Println(line)
	return nil
}

// check judges each run of s, already done, against the interpreter: run i
// starts from the device's state after run i−1 (run 0 from the initial
// files), so that each program is judged alone.
func check(s *Session, art *artifact.Artifact, types map[string]ir.Type) error {
	m, err := ir.ParseBinary(art.Module)
	if err != nil {
		return fmt.Errorf("the artifact's module: %w", err)
	}
	read := func(file string, t ir.Type) (*interp.Tensor, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return decode(b, t)
	}
	failed := 0
	for i, r := range s.Runs {
		g := m.Graph(r.Program)
		in := map[string]*interp.Tensor{}
		for name, t := range types {
			file := s.State[name]
			if i > 0 {
				file = filepath.Join(s.Out, strconv.Itoa(i-1), "state."+name+".bin")
			}
			if file == "" || g.Input(name) == nil {
				continue
			}
			v, err := read(file, t)
			if err != nil {
				return err
			}
			in[name] = v
		}
		for k, v := range r.Data {
			in[k] = interp.FromInts(g.Input(k).Type, v)
		}
		for k, v := range r.Floats {
			f := make([]float64, len(v))
			for i, x := range v {
				f[i] = float64(x)
			}
			in[k] = interp.FromFloats(g.Input(k).Type, f)
		}
		for k, v := range r.Scalars {
			in[k] = interp.FromFloats(g.Input(k).Type, []float64{v})
		}
		want, err := interp.Run(g, in)
		if err != nil {
			return fmt.Errorf("run %d: interpreter: %w", i, err)
		}
		dir := filepath.Join(s.Out, strconv.Itoa(i))
		worst, worstName := 0.0, ""
		tol := s.StateTol
		if r.Program == "update" {
			tol = s.UpdateTol
		}
		for _, o := range g.Outputs {
			w := want[o.Name]
			if w == nil || !w.Type.DType.IsFloat() {
				continue
			}
			file, limit := filepath.Join(dir, "out."+o.Name+".bin"), tol
			if o.Updates != "" {
				file = filepath.Join(dir, "state."+o.Updates+".bin")
			} else if o.Name == "loss" {
				limit = s.LossTol
			}
			got, err := read(file, w.Type)
			if err != nil {
				return err
			}
			e := relErr(got.F, w.F)
			if e > worst {
				worst, worstName = e, o.Name
			}
			if e > limit {
				failed++
				fmt.Printf("run %d (%s): %s differs from the interpreter by %.3g (norm-wise; tolerance %g)\n", i, r.Program, o.Name, e, limit)
			}
		}
		fmt.Printf("run %d (%s): worst %.3g (%s)\n", i, r.Program, worst, worstName)
	}
	if failed > 0 {
		return fmt.Errorf("%d results outside their tolerance", failed)
	}
	fmt.Println("check: every run within its tolerance")
	return nil
}

// decode reads raw little-endian bytes of dtype t.
func decode(b []byte, t ir.Type) (*interp.Tensor, error) {
	if int64(len(b)) != t.Bytes() {
		return nil, fmt.Errorf("%d bytes for %v", len(b), t)
	}
	n := int(t.NumElements())
	switch t.DType {
	case ir.F32:
		f := make([]float64, n)
		for i := range f {
			f[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return interp.FromFloats(t, f), nil
	case ir.BF16:
		f := make([]float64, n)
		for i := range f {
			f[i] = float64(ir.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
		}
		return interp.FromFloats(t, f), nil
	case ir.I64:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return interp.FromInts(t, v), nil
	case ir.I32:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return interp.FromInts(t, v), nil
	case ir.U8:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(b[i])
		}
		return interp.FromInts(t, v), nil
	}
	return nil, fmt.Errorf("dtype %v", t.DType)
}

// relErr is the norm-wise relative error ‖a−b‖/max(‖b‖, tiny).
func relErr(got, want []float64) float64 {
	var d, n float64
	for i := range want {
		e := got[i] - want[i]
		d += e * e
		n += want[i] * want[i]
	}
	return math.Sqrt(d) / math.Max(math.Sqrt(n), 1e-30)
}
