package runtime

import (
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
)

// The tests run hand-built artifacts whose code is testdata/kernels.c,
// compiled once per test binary; they skip when there is no C compiler.

var (
	kernelSO  []byte // the compiled kernels; nil when cc is missing
	kernelErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slc-runtime-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := exec.LookPath("cc"); err == nil {
		so := filepath.Join(dir, "kernels.so")
		out, err := exec.Command("cc", "-shared", "-fPIC", "-O2", "-ffp-contract=off", "-o", so, filepath.Join("testdata", "kernels.c")).CombinedOutput()
		if err != nil {
			kernelErr = fmt.Errorf("cc: %v\n%s", err, out)
		} else {
			kernelSO, kernelErr = os.ReadFile(so)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needKernels returns the compiled test kernels or skips the test.
func needKernels(t testing.TB) []byte {
	t.Helper()
	if kernelErr != nil {
		t.Fatal(kernelErr)
	}
	if kernelSO == nil {
		t.Skip("no C compiler (cc) to build the test kernels")
	}
	return kernelSO
}

// Initial values of the test state, as the module's init specs give them.
var (
	initW   = &ir.Init{Kind: ir.InitNormal, Std: 0.02, Seed: 1}
	initB   = &ir.Init{Kind: ir.InitUniform, Low: -1, High: 1, Seed: 2}
	initEmb = &ir.Init{Kind: ir.InitNormal, Std: 1, Seed: 3}
	initIdx = &ir.Init{Kind: ir.InitSupport, Seed: 4, Total: 1000}
	initH   = &ir.Init{Kind: ir.InitExplicit, Data: []float64{1.5, -2, 3.00390625, 0.1}}
	initH16 = &ir.Init{Kind: ir.InitExplicit, Data: []float64{1, 65504, 1e-7}}
)

// testModule is the module embedded in the test artifact: one graph whose
// inputs declare every state tensor with its init spec.
func testModule(t testing.TB) []byte {
	t.Helper()
	b := ir.NewBuilder("train")
	b.AddInput("w", ir.T(ir.F32, 10, 100), ir.Param, initW)
	b.AddInput("w2", ir.T(ir.F32, 10, 100), ir.Param, &ir.Init{Kind: ir.InitZeros})
	b.AddInput("b", ir.T(ir.F32, 100), ir.Param, initB)
	b.AddInput("emb", ir.T(ir.F32, 16, 8), ir.Param, initEmb)
	b.AddInput("idx", ir.T(ir.I64, 50), ir.Buffer, initIdx)
	b.AddInput("h", ir.T(ir.BF16, 4), ir.Param, initH)
	b.AddInput("h16", ir.T(ir.F16, 3), ir.Param, initH16)
	b.AddInput("cnt", ir.T(ir.I64), ir.Buffer, nil)
	b.AddInput("tokens", ir.T(ir.I64, 6), ir.Data, nil)
	b.AddInput("lr", ir.T(ir.F32), ir.Scalar, nil)
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	data, err := (&ir.Module{Graphs: []*ir.Graph{b.G}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// testArtifact builds the artifact the tests run; see testdata/kernels.c for
// what each kernel does.
func testArtifact(t testing.TB) *artifact.Artifact {
	t.Helper()
	code := needKernels(t)
	state := func(name string, typ ir.Type) artifact.Slot {
		return artifact.Slot{Name: name, Type: typ, Kind: artifact.SlotState}
	}
	arena := func(name string, typ ir.Type, off int64) artifact.Slot {
		return artifact.Slot{Name: name, Type: typ, Kind: artifact.SlotArena, Offset: off}
	}
	w := state("w", ir.T(ir.F32, 10, 100))
	counter := make([]artifact.Step, 100)
	for i := range counter {
		counter[i] = artifact.Step{Kernel: "count_step", Args: []int32{0}}
	}
	return &artifact.Artifact{
		CompilerVersion: "1.2.3",
		Target:          artifact.Target{Kind: "cpu", Triple: hostTriple(), CPU: "generic"},
		Module:          testModule(t),
		Code:            code,
		Programs: []*artifact.Program{
			{
				Name: "train", ArenaBytes: 4096,
				Slots: []artifact.Slot{
					w, state("b", ir.T(ir.F32, 100)),
					{Name: "lr", Type: ir.T(ir.F32), Kind: artifact.SlotScalar},
					arena("w_new", ir.T(ir.F32, 10, 100), 0),
					arena("loss", ir.T(ir.F32), 4032),
					{Name: "g", Type: ir.T(ir.F32, 100), Kind: artifact.SlotData},
				},
				Steps: []artifact.Step{
					{Kernel: "scale_w", Args: []int32{0, 2, 3}},
					{Kernel: "axpy_b", Args: []int32{1, 2, 5}},
					{Kernel: "sum_loss", Args: []int32{3, 1, 4}},
				},
				Outputs: []artifact.Output{
					{Name: "loss", Slot: 4},
					{Name: "w_next", Slot: 3, Updates: "w"},
					{Name: "b_next", Slot: 1, Updates: "b"},
				},
			},
			{
				Name: "embed", ArenaBytes: 192,
				Slots: []artifact.Slot{
					state("emb", ir.T(ir.F32, 16, 8)),
					{Name: "tokens", Type: ir.T(ir.I64, 6), Kind: artifact.SlotData},
					arena("rows", ir.T(ir.F32, 6, 8), 0),
				},
				Steps:   []artifact.Step{{Kernel: "embed", Args: []int32{0, 1, 2}}},
				Outputs: []artifact.Output{{Name: "rows", Slot: 2}},
			},
			{
				Name: "threads", ArenaBytes: 384, ScratchBytes: 100,
				Slots: []artifact.Slot{
					arena("tids", ir.T(ir.I64, 16), 0),
					arena("scratch", ir.T(ir.I64, 16), 128),
					{Name: "nbytes", Type: ir.T(ir.I64), Kind: artifact.SlotScalar},
					arena("ok", ir.T(ir.I64, 16), 256),
				},
				Steps: []artifact.Step{
					{Kernel: "zero16", Args: []int32{0}},
					{Kernel: "tids", Args: []int32{0}},
					{Kernel: "scratch_addr", Args: []int32{1, 2, 3}},
					{Kernel: "nop"}, // no arguments, last: its args pointer is past the others
				},
				Outputs: []artifact.Output{{Name: "tids", Slot: 0}, {Name: "scratch", Slot: 1}, {Name: "ok", Slot: 3}},
			},
			{
				Name: "barrier", ArenaBytes: 8064,
				Slots: []artifact.Slot{w, arena("y", ir.T(ir.F32, 1000), 0), arena("z", ir.T(ir.F32, 1000), 4032)},
				Steps: []artifact.Step{
					{Kernel: "double_w", Args: []int32{0, 1}},
					{Kernel: "reverse", Args: []int32{1, 2}},
				},
				Outputs: []artifact.Output{{Name: "z", Slot: 2}},
			},
			{
				// No steps: the outputs swap two state tensors.
				Name:    "swap",
				Slots:   []artifact.Slot{w, state("w2", ir.T(ir.F32, 10, 100))},
				Outputs: []artifact.Output{{Name: "a", Slot: 0, Updates: "w2"}, {Name: "b", Slot: 1, Updates: "w"}},
			},
			{
				Name: "copy", ArenaBytes: 4096,
				Slots:   []artifact.Slot{w, arena("out", ir.T(ir.F32, 10, 100), 0)},
				Steps:   []artifact.Step{{Kernel: "copy_w", Args: []int32{0, 1}}},
				Outputs: []artifact.Output{{Name: "out", Slot: 1}},
			},
			{
				// Besides the counter, the state tensors no kernel touches,
				// so that Load allocates and initialises them.
				Name: "count",
				Slots: []artifact.Slot{
					state("cnt", ir.T(ir.I64)), state("idx", ir.T(ir.I64, 50)),
					state("h", ir.T(ir.BF16, 4)), state("h16", ir.T(ir.F16, 3)),
				},
				Steps:   counter,
				Outputs: []artifact.Output{{Name: "cnt", Slot: 0}},
			},
		},
	}
}

// hostTriple is an LLVM triple for this machine.
func hostTriple() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}[goruntime.GOARCH]
	if arch == "" {
		arch = goruntime.GOARCH
	}
	return arch + "-unknown-" + goruntime.GOOS + "-gnu"
}

// load round-trips a through its serialized form and loads it.
func load(t testing.TB, a *artifact.Artifact, threads int) *Runtime {
	t.Helper()
	data, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b, err := artifact.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Load(b, Options{Threads: threads, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	return r
}

func filled(t testing.TB, init *ir.Init, n int) []float32 {
	t.Helper()
	v := make([]float32, n)
	if err := ir.Fill(init, v); err != nil {
		t.Fatal(err)
	}
	return v
}

// stateF32 and stateI64 read a state tensor; f32 and i64 read a result.
func stateF32(t testing.TB, r *Runtime, name string) []float32 {
	t.Helper()
	x, err := r.State(name)
	if err != nil {
		t.Fatal(err)
	}
	return f32(t, x)
}

func stateI64(t testing.TB, r *Runtime, name string) []int64 {
	t.Helper()
	x, err := r.State(name)
	if err != nil {
		t.Fatal(err)
	}
	return i64(t, x)
}

func f32(t testing.TB, x Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func i64(t testing.TB, x Tensor) []int64 {
	t.Helper()
	v, err := x.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sameBits compares float32 slices bit for bit (NaN included).
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestInitialState(t *testing.T) {
	r := load(t, testArtifact(t), 2)
	if got, want := r.StateNames(), []string{"b", "cnt", "emb", "h", "h16", "idx", "w", "w2"}; !slices.Equal(got, want) {
		t.Errorf("StateNames = %v, want %v", got, want)
	}
	for _, c := range []struct {
		name string
		init *ir.Init
		n    int
	}{{"w", initW, 1000}, {"b", initB, 100}, {"emb", initEmb, 128}, {"w2", &ir.Init{Kind: ir.InitZeros}, 1000}} {
		if got := stateF32(t, r, c.name); !sameBits(got, filled(t, c.init, c.n)) {
			t.Errorf("state %q does not hold its init spec's values", c.name)
		}
	}
	wantIdx, _ := ir.Support(4, 1000, 50)
	if got := stateI64(t, r, "idx"); !slices.Equal(got, wantIdx) {
		t.Errorf("idx = %v, want %v", got, wantIdx)
	}
	if got := stateI64(t, r, "cnt"); !slices.Equal(got, []int64{0}) {
		t.Errorf("cnt (nil init) = %v, want [0]", got)
	}
	// bf16: 3 + 2^-8 rounds to 3 (ties to even); 0.1 to 205·2^-11.
	if got, want := stateF32(t, r, "h"), []float32{1.5, -2, 3, 0.10009765625}; !slices.Equal(got, want) {
		t.Errorf("h (bf16) = %v, want %v", got, want)
	}
	// f16: 1e-7 is 1.68 quanta of 2^-24, so 2 quanta.
	if got, want := stateF32(t, r, "h16"), []float32{1, 65504, 0x1p-23}; !slices.Equal(got, want) {
		t.Errorf("h16 (f16) = %v, want %v", got, want)
	}
	if typ, err := r.StateType("h"); err != nil || !typ.Equal(ir.T(ir.BF16, 4)) {
		t.Errorf("StateType(h) = %v, %v", typ, err)
	}
}

// trainReference computes what the "train" program does, in float32 with
// the same operation order as the kernels.
func trainReference(w, b, g []float32, lr float32) (wNext, bNext []float32, loss float32) {
	s := 1 - lr
	wNext, bNext = make([]float32, len(w)), make([]float32, len(b))
	var sum float64
	for i := range w {
		wNext[i] = w[i] * s
		sum += float64(wNext[i])
	}
	for i := range b {
		bNext[i] = b[i] + float32(lr*g[i])
		sum += float64(bNext[i])
	}
	return wNext, bNext, float32(sum)
}

func gradient() []float32 {
	g := make([]float32, 100)
	for i := range g {
		g[i] = float32(i%7) - 3.25
	}
	return g
}

func TestRun(t *testing.T) {
	for _, threads := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			r := load(t, testArtifact(t), threads)
			if r.Threads() != threads {
				t.Fatalf("Threads() = %d", r.Threads())
			}
			w, b := filled(t, initW, 1000), filled(t, initB, 100)
			g := gradient()
			for step := 0; step < 4; step++ {
				lr := float32(0.125) * float32(step+1)
				res, err := r.Run("train", Inputs{Floats: map[string][]float32{"g": g}, Scalars: map[string]float64{"lr": float64(lr)}})
				if err != nil {
					t.Fatal(err)
				}
				var loss float32
				w, b, loss = trainReference(w, b, g, lr)
				if len(res) != 1 {
					t.Errorf("step %d: results %v, want only the loss", step, res)
				}
				if got, err := res["loss"].Scalar(); err != nil || float32(got) != loss {
					t.Errorf("step %d: loss %v (%v), want %v", step, got, err, loss)
				}
				if got := stateF32(t, r, "w"); !sameBits(got, w) {
					t.Fatalf("step %d: w was not updated from the w_next output", step)
				}
				if got := stateF32(t, r, "b"); !sameBits(got, b) {
					t.Fatalf("step %d: b was not updated in place", step)
				}
			}

			emb := filled(t, initEmb, 128)
			tokens := []int64{3, 0, 15, 3, 7, 16}
			res, err := r.Run("embed", Inputs{Data: map[string][]int64{"tokens": tokens}})
			if err != nil {
				t.Fatal(err)
			}
			rows := f32(t, res["rows"])
			if !res["rows"].Type.Equal(ir.T(ir.F32, 6, 8)) {
				t.Errorf("rows type %v", res["rows"].Type)
			}
			for i, id := range tokens {
				want := make([]float32, 8)
				if id < 16 {
					copy(want, emb[id*8:])
				} else {
					for k := range want {
						want[k] = float32(math.NaN())
					}
				}
				if got := rows[i*8 : i*8+8]; !sameBits(got, want) && !(id >= 16 && math.IsNaN(float64(got[0]))) {
					t.Errorf("row %d (token %d) = %v, want %v", i, id, got, want)
				}
			}

			res, err = r.Run("threads", Inputs{Scalars: map[string]float64{"nbytes": 100}})
			if err != nil {
				t.Fatal(err)
			}
			tids, addrs, ok := i64(t, res["tids"]), i64(t, res["scratch"]), i64(t, res["ok"])
			for i := range 16 {
				want := int64(0)
				if i < threads {
					want = int64(i + 100*threads)
				}
				if tids[i] != want {
					t.Errorf("tids[%d] = %d, want %d (each thread called once with its tid and nthreads)", i, tids[i], want)
				}
			}
			seen := map[int64]bool{}
			for i := range threads {
				a := addrs[i]
				if a == 0 || a%artifact.Alignment != 0 || seen[a] {
					t.Errorf("thread %d scratch at %#x: null, misaligned or shared", i, a)
				}
				for b := range seen {
					if d := a - b; d > -100 && d < 100 {
						t.Errorf("scratch areas %#x and %#x overlap", a, b)
					}
				}
				seen[a] = true
				if ok[i] != 1 {
					t.Errorf("thread %d: another thread wrote its scratch area", i)
				}
			}

			for rep := 0; rep < 50; rep++ {
				res, err = r.Run("barrier", Inputs{})
				if err != nil {
					t.Fatal(err)
				}
				z := f32(t, res["z"])
				for i := range z {
					if z[i] != 2*w[999-i] {
						t.Fatalf("run %d: z[%d] = %v, want %v: a step started before the previous one ended", rep, i, z[i], 2*w[999-i])
					}
				}
			}

			res, err = r.Run("copy", Inputs{})
			if err != nil {
				t.Fatal(err)
			}
			if got := f32(t, res["out"]); !sameBits(got, w) {
				t.Error("copy: out != w")
			}

			for rep := 1; rep <= 3; rep++ {
				res, err = r.Run("count", Inputs{})
				if err != nil {
					t.Fatal(err)
				}
				if got := i64(t, res["cnt"]); got[0] != int64(100*rep) {
					t.Fatalf("after %d runs of 100 steps the counter is %d", rep, got[0])
				}
			}

			if _, err := r.Run("swap", Inputs{}); err != nil {
				t.Fatal(err)
			}
			if got := stateF32(t, r, "w2"); !sameBits(got, w) {
				t.Error("swap: w2 does not hold the old w")
			}
			if got := stateF32(t, r, "w"); !sameBits(got, make([]float32, 1000)) {
				t.Error("swap: w does not hold the old w2 (zeros)")
			}

			if err := r.ResetState(); err != nil {
				t.Fatal(err)
			}
			if got := stateF32(t, r, "w"); !sameBits(got, filled(t, initW, 1000)) {
				t.Error("ResetState did not restore w")
			}
			if got := stateI64(t, r, "cnt"); got[0] != 0 {
				t.Error("ResetState did not restore cnt")
			}
		})
	}
}

// TestDeterminism runs the same training steps with 1, 2 and 3 threads:
// every loss and the final state must be bit-identical.
func TestDeterminism(t *testing.T) {
	a := testArtifact(t)
	var first []float32
	for _, threads := range []int{1, 2, 3, 8} {
		r := load(t, a, threads)
		var trace []float32
		for step := range 5 {
			res, err := r.Run("train", Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.01 * float64(step)}})
			if err != nil {
				t.Fatal(err)
			}
			loss, _ := res["loss"].Scalar()
			trace = append(trace, float32(loss))
		}
		trace = append(trace, stateF32(t, r, "w")...)
		trace = append(trace, stateF32(t, r, "b")...)
		if first == nil {
			first = trace
		} else if !sameBits(first, trace) {
			t.Errorf("threads=%d: results differ from threads=1", threads)
		}
	}
}

func TestSetState(t *testing.T) {
	r := load(t, testArtifact(t), 1)
	v := make([]float32, 100)
	for i := range v {
		v[i] = float32(i) / 3
	}
	if err := r.SetStateFloat32("b", v); err != nil {
		t.Fatal(err)
	}
	if got := stateF32(t, r, "b"); !sameBits(got, v) {
		t.Error("SetStateFloat32 did not set b")
	}
	// bf16 rounds to nearest even; f16 too.
	if err := r.SetStateFloat32("h", []float32{1.00390625, 1.01171875, -0, float32(math.Inf(-1))}); err != nil {
		t.Fatal(err)
	}
	if got, want := stateF32(t, r, "h"), []float32{1, 1.015625, 0, float32(math.Inf(-1))}; !slices.Equal(got, want) {
		t.Errorf("h = %v, want %v", got, want)
	}
	if err := r.SetStateFloat32("h16", []float32{65519, 65520, 0x1p-25}); err != nil {
		t.Fatal(err)
	}
	if got, want := stateF32(t, r, "h16"), []float32{65504, float32(math.Inf(1)), 0}; !slices.Equal(got, want) {
		t.Errorf("h16 = %v, want %v", got, want)
	}
	if err := r.SetStateInt64("idx", make([]int64, 50)); err != nil {
		t.Fatal(err)
	}
	// Raw bytes round-trip bit for bit.
	h, _ := r.State("h")
	h.Data[0] ^= 1
	if err := r.SetStateBytes("h", ir.BF16, h.Data); err != nil {
		t.Fatal(err)
	}
	if h2, _ := r.State("h"); !reflect.DeepEqual(h, h2) {
		t.Error("SetStateBytes/State do not round-trip")
	}

	before, _ := r.State("w")
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"unknown", func() error { return r.SetStateFloat32("nope", nil) }, `no state tensor "nope"`},
		{"float into int", func() error { return r.SetStateFloat32("idx", make([]float32, 50)) }, `state "idx" is i64[50], not a float tensor`},
		{"int into float", func() error { return r.SetStateInt64("w", make([]int64, 1000)) }, `state "w" is f32[10,100], not an integer tensor`},
		{"float count", func() error { return r.SetStateFloat32("w", make([]float32, 999)) }, `state "w" (f32[10,100]) has 1000 elements, got 999 values`},
		{"int count", func() error { return r.SetStateInt64("idx", make([]int64, 51)) }, `has 50 elements, got 51`},
		{"bytes dtype", func() error { return r.SetStateBytes("w", ir.BF16, make([]byte, 2000)) }, `state "w" is f32[10,100], not bf16`},
		{"bytes count", func() error { return r.SetStateBytes("w", ir.F32, make([]byte, 3999)) }, `takes 4000 bytes, got 3999`},
		{"state unknown", func() error { _, err := r.State("x"); return err }, `no state tensor "x"`},
		{"type unknown", func() error { _, err := r.StateType("x"); return err }, `no state tensor "x"`},
	}
	for _, tc := range tests {
		if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if after, _ := r.State("w"); !reflect.DeepEqual(before, after) {
		t.Error("a failed SetState changed the state")
	}
}

func TestBindErrors(t *testing.T) {
	r := load(t, testArtifact(t), 2)
	g := gradient()
	lr := map[string]float64{"lr": 0.5}
	tests := []struct {
		name    string
		program string
		in      Inputs
		want    string
	}{
		{"program", "tarin", Inputs{}, `no program "tarin" (the artifact has barrier, copy, count, embed, swap, threads, train)`},
		{"missing data", "train", Inputs{Scalars: lr}, `program "train": data "g" (f32[100]) is not bound`},
		{"extra data", "train", Inputs{Floats: map[string][]float32{"g": g, "h": g}, Scalars: lr}, `no data "h" (it takes "g")`},
		{"floats for ints", "embed", Inputs{Floats: map[string][]float32{"tokens": make([]float32, 6)}}, `data "tokens" is i64[6]: bind it in Data, not Floats`},
		{"ints for floats", "train", Inputs{Data: map[string][]int64{"g": make([]int64, 100)}, Scalars: lr}, `data "g" is f32[100]: bind it in Floats, not Data`},
		{"size", "embed", Inputs{Data: map[string][]int64{"tokens": {1, 2, 3}}}, `data "tokens" (i64[6]) takes 6 values, got 3`},
		{"missing scalar", "train", Inputs{Floats: map[string][]float32{"g": g}}, `scalar "lr" (f32) is not bound`},
		{"extra scalar", "train", Inputs{Floats: map[string][]float32{"g": g}, Scalars: map[string]float64{"lr": 1, "step": 2}}, `no scalar "step" (it takes "lr")`},
		{"no scalars", "embed", Inputs{Data: map[string][]int64{"tokens": make([]int64, 6)}, Scalars: lr}, `no scalar "lr" (it takes none)`},
		{"fractional int scalar", "threads", Inputs{Scalars: map[string]float64{"nbytes": 1.5}}, `scalar "nbytes": 1.5 is not an integer, and the slot is i64`},
		{"nan int scalar", "threads", Inputs{Scalars: map[string]float64{"nbytes": math.NaN()}}, `scalar "nbytes": NaN is not an integer`},
	}
	before, _ := r.State("w")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := r.Run(tc.program, tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if res != nil {
				t.Error("results returned with an error")
			}
		})
	}
	if after, _ := r.State("w"); !reflect.DeepEqual(before, after) {
		t.Error("a failed Run changed the state")
	}
}

func TestLoadErrors(t *testing.T) {
	needKernels(t)
	otherArch := "aarch64-unknown-linux-gnu"
	if goruntime.GOARCH == "arm64" {
		otherArch = "x86_64-unknown-linux-gnu"
	}
	tests := []struct {
		name   string
		change func(a *artifact.Artifact)
		opt    Options
		want   string
	}{
		{"version", nil, Options{Version: "9.9.9"}, "artifact was compiled by slc 1.2.3, this is slc 9.9.9; recompile it"},
		{"arch", func(a *artifact.Artifact) { a.Target.Triple = otherArch }, Options{}, "artifact was compiled for"},
		{"os", func(a *artifact.Artifact) {
			a.Target.Triple = strings.Replace(hostTriple(), goruntime.GOOS, "windows", 1)
			if goruntime.GOOS == "windows" {
				a.Target.Triple = strings.Replace(hostTriple(), "windows", "linux", 1)
			}
		}, Options{}, "this machine runs " + goruntime.GOOS},
		{"unknown arch", func(a *artifact.Artifact) { a.Target.Triple = "pdp11-dec-unix" }, Options{}, `triple "pdp11-dec-unix" names an architecture this runtime does not know`},
		{"no triple", func(a *artifact.Artifact) { a.Target.Triple = "" }, Options{}, "artifact has no target triple"},
		{"invalid", func(a *artifact.Artifact) { a.Programs[0].Steps[0].Args[0] = 99 }, Options{}, "invalid artifact: program 0"},
		{"missing symbol", func(a *artifact.Artifact) { a.Programs[1].Steps[0].Kernel = "embed_v2" }, Options{}, `program "embed", step 0: kernel "embed_v2" is not in the artifact's code`},
		{"no code", func(a *artifact.Artifact) { a.Code = nil }, Options{}, "artifact has no native code"},
		{"bad code", func(a *artifact.Artifact) { a.Code = []byte("not an ELF file") }, Options{}, "loading the artifact's code"},
		{"code changed after reading", func(a *artifact.Artifact) {
			a.CodeSHA256 = sha256.Sum256(a.Code) // as read from a file
			a.Code = append([]byte(nil), a.Code...)
			a.Code[len(a.Code)/2] ^= 1
		}, Options{}, "corrupt artifact: the native code does not match its checksum"},
		{"no module", func(a *artifact.Artifact) { a.Module = nil }, Options{}, "artifact has no module"},
		{"bad module", func(a *artifact.Artifact) { a.Module = a.Module[:len(a.Module)/2] }, Options{}, "artifact module:"},
		{"state not in module", func(a *artifact.Artifact) {
			a.Programs[1].Slots[0].Name = "emb2"
			a.Programs[1].Slots[0].Type = ir.T(ir.F32, 16, 8)
		}, Options{}, `state "emb2" is no state input of any graph`},
		{"state type", func(a *artifact.Artifact) { a.Programs[1].Slots[0].Type = ir.T(ir.F32, 8, 16) }, Options{}, `state "emb" is f32[8,16] in the programs but f32[16,8] in the module`},
		{"threads", nil, Options{Threads: -1}, "threads must be between 1 and 1024 (or 0 for one per CPU), got -1"},
		{"too many threads", nil, Options{Threads: MaxThreads + 1}, "got 1025"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := testArtifact(t)
			if tc.change != nil {
				tc.change(a)
			}
			r, err := Load(a, tc.opt)
			if err == nil {
				r.Close()
				t.Fatalf("loaded; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Load(nil, Options{}); err == nil {
		t.Error("Load(nil) succeeded")
	}
}

func TestClose(t *testing.T) {
	a := testArtifact(t)
	r, err := Load(a, Options{Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Threads() != 3 {
		t.Errorf("Threads() = %d", r.Threads())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Run("count", Inputs{}); err != errClosed {
		t.Errorf("Run after Close: %v", err)
	}
	if _, err := r.State("w"); err != errClosed {
		t.Errorf("State after Close: %v", err)
	}
	if err := r.SetStateFloat32("w", nil); err != errClosed {
		t.Errorf("SetStateFloat32 after Close: %v", err)
	}
	if err := r.ResetState(); err != errClosed {
		t.Errorf("ResetState after Close: %v", err)
	}
	// Threads 0 means one per CPU; two runtimes of one artifact coexist.
	r1, err := Load(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	if r1.Threads() != goruntime.NumCPU() {
		t.Errorf("Threads() = %d, want NumCPU %d", r1.Threads(), goruntime.NumCPU())
	}
	r2 := load(t, a, 1)
	r1.Run("count", Inputs{})
	if got := stateI64(t, r2, "cnt"); got[0] != 0 {
		t.Error("two runtimes share state")
	}
}

// BenchmarkStepOverhead measures the cost of a step that does almost
// nothing: the kernel call plus the barrier.
func BenchmarkStepOverhead(b *testing.B) {
	for _, threads := range []int{1, 2} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			r := load(b, testArtifact(b), threads)
			b.ResetTimer()
			for b.Loop() {
				if _, err := r.Run("count", Inputs{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/step")
		})
	}
}
