package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/internal/ptxemu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// The cuda device's matrix products in the PTX emulator, on shapes that
// do not fill a tile (1×1×1, 5×7×3, 70×65×33: M, N and K none a multiple of
// the 64×64×16 tiles), with blocks of 32 and 256 threads and grids of 1
// and 3 blocks:
//
//   - TestCUDAGEMMGraphs: MatMul, Linear and LowRankSparseAdd graphs
//     compiled by codegen.Compile for cuda (the tiled GEMM, the default)
//     and judged by ptxrun's check against the reference interpreter, and
//     each result bit-identical across the four launches.
//   - TestCUDAGEMMVariantsBitIdentical: bare GEMM specs (lower's
//     GEMMKernel; accumulation and alpha included, which no graph op
//     reaches directly) with the plain SIMT GEMM, the tiled one and the
//     tensor-core one with its mma.sync emulated, each also with blocks of
//     48 and 512 threads: all eighteen runs of a spec bit-identical, and
//     within f32 (or bf16) rounding of a float64 reference.
//
// The tensor-core instruction itself cannot run here (the emulator has no
// mma): codegen/lower's TestGPUGEMMsCompileToPTX checks that LLVM emits it.

// gemmLaunches are the (block, grid) launches every GEMM runs with.
var gemmLaunches = [][2]int{{32, 1}, {32, 3}, {256, 1}, {256, 3}}

// gemmDevice is ptxrun's device: "" (the emulator) or, with
// SLC_PTXRUN_DEVICE=cuda, the machine's GPU (the device check), where the
// tensor-core GEMM runs too.
var gemmDevice = os.Getenv("SLC_PTXRUN_DEVICE")

// ptxrunFor builds ptxrun, or skips the test without the emulator (on the
// emulator's device).
func ptxrunFor(t *testing.T) (ptxrun, lib string) {
	t.Helper()
	if lib = ptxemu.Find("."); lib == "" && gemmDevice != "cuda" {
		t.Skip("no PTX emulator (../shared/tools/ptxemu): the cuda GEMMs are not run")
	}
	ptxrun = filepath.Join(t.TempDir(), "ptxrun")
	if out, err := exec.Command("go", "build", "-o", ptxrun, "../cmd/ptxrun").CombinedOutput(); err != nil {
		t.Fatalf("building ptxrun: %v\n%s", err, out)
	}
	return ptxrun, lib
}

// runSession writes session s to dir and runs ptxrun on it.
func runSession(t *testing.T, ptxrun, dir string, s map[string]any) string {
	t.Helper()
	js, _ := json.Marshal(s)
	sf := filepath.Join(dir, "session.json")
	if err := os.WriteFile(sf, js, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ptxrun, sf).CombinedOutput()
	if err != nil {
		if gemmDevice != "cuda" && strings.Contains(string(out), "cannot open shared object") {
			t.Skipf("the PTX emulator's libraries are missing (bash ../shared/tools/ptxemu/deps.sh): %s", lastLine(out))
		}
		t.Fatalf("ptxrun: %v\n%s", err, checkLines(out))
	}
	return checkLines(out)
}

// gemmGraph is one graph of TestCUDAGEMMGraphs: its inputs are state
// (initialized from files) named after the graph, its output "y".
type gemmGraph struct {
	name  string
	build func(b *ir.Builder, in func(name string, d ir.DType, shape ...int) string) string
	bf16  bool // a bf16 result: held to bf16 rounding, not f32's
}

func gemmGraphs() []gemmGraph {
	mm := func(ta, tb bool, d ir.DType, a, b []int) func(*ir.Builder, func(string, ir.DType, ...int) string) string {
		return func(bl *ir.Builder, in func(string, ir.DType, ...int) string) string {
			return bl.MatMul(in("a", d, a...), in("b", d, b...), ta, tb)
		}
	}
	f, h := ir.F32, ir.BF16
	lrsa := func(rows, in, out, r, nnz int, id ir.DType) func(*ir.Builder, func(string, ir.DType, ...int) string) string {
		return func(bl *ir.Builder, input func(string, ir.DType, ...int) string) string {
			x := input("x", f, rows, in)
			B := input("B", f, out, r)
			A := input("A", f, r, in)
			v := input("v", f, nnz)
			idx := input("idx", id, nnz)
			return bl.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(0.75)}, x, B, A, v, idx)
		}
	}
	return []gemmGraph{
		{name: "mm_1x1x1", build: mm(false, false, f, []int{1, 1}, []int{1, 1})},
		{name: "mm_5x7x3", build: mm(false, false, f, []int{5, 3}, []int{3, 7})},
		{name: "mm_70x65x33", build: mm(false, false, f, []int{70, 33}, []int{33, 65})},
		{name: "mm_ta_70x65x33", build: mm(true, false, f, []int{33, 70}, []int{33, 65})},
		{name: "mm_tb_70x65x33", build: mm(false, true, f, []int{70, 33}, []int{65, 33})},
		{name: "mm_tatb_5x7x3", build: mm(true, true, f, []int{3, 5}, []int{7, 3})},
		{name: "mm_batch3_5x7x3", build: mm(false, false, f, []int{3, 5, 3}, []int{3, 3, 7})},
		{name: "mm_shared_b", build: mm(false, false, f, []int{3, 5, 3}, []int{3, 7})},                // batch folded into M
		{name: "mm_shared_a_tb", build: mm(false, true, f, []int{5, 3}, []int{3, 7, 3})},              // stride 0 for A
		{name: "mm_broadcast_loop", build: mm(false, false, f, []int{2, 1, 5, 3}, []int{1, 3, 3, 7})}, // a GEMM call per batch item
		{name: "mm_bf16_70x65x33", build: mm(false, false, h, []int{70, 33}, []int{33, 65}), bf16: true},
		{name: "mm_bf16_batch_tb", build: mm(false, true, h, []int{2, 5, 3}, []int{2, 7, 3}), bf16: true},
		{name: "linear_70x65x33", build: func(b *ir.Builder, in func(string, ir.DType, ...int) string) string {
			return b.Op("Linear", nil, in("x", f, 2, 35, 33), in("w", f, 65, 33))
		}},
		{name: "linear_bf16_5x7x3", build: func(b *ir.Builder, in func(string, ir.DType, ...int) string) string {
			return b.Op("Linear", nil, in("x", h, 5, 3), in("w", h, 7, 3))
		}, bf16: true},
		// SLTrain: alpha = scale in W = scale·B·A (merged, many rows) or
		// T = scale·x·Aᵀ (factored, few rows). (Its mixed form, bf16
		// operands into an f32 C, is a pass's rewrite, not a graph to build
		// here: TestCUDAProgramsInEmulator's bf16-mixed cases run it, and
		// TestCUDAGEMMVariantsBitIdentical the spec.)
		{name: "lrsa_merged", build: lrsa(70, 33, 20, 3, 100, ir.I64)},
		{name: "lrsa_factored", build: lrsa(5, 33, 65, 3, 60, ir.I64)},
		// SLTrain's i32 index (the seed's is int64).
		{name: "lrsa_merged_i32", build: lrsa(70, 33, 20, 3, 100, ir.I32)},
		{name: "lrsa_factored_i32", build: lrsa(5, 33, 65, 3, 60, ir.I32)},
	}
}

var worstRE = regexp.MustCompile(`(?m)^run (\d+) \((\S+)\): worst (\S+)`)

func TestCUDAGEMMGraphs(t *testing.T) {
	ptxrun, lib := ptxrunFor(t)
	// The SLTrain cases are meant to take one lowering each under auto.
	for _, c := range []struct {
		rows, in, out, r, nnz int64
		want                  string
	}{{70, 33, 20, 3, 100, "merged"}, {5, 33, 65, 3, 60, "factored"}} {
		if got := lower.ChooseSLTrain("auto", c.rows, c.in, c.out, c.r, c.nnz); got != c.want {
			t.Fatalf("LowRankSparseAdd rows %d: auto takes %s, the case wants %s", c.rows, got, c.want)
		}
	}
	cases := gemmGraphs()
	rng := ir.NewRNG(11)
	m := &ir.Module{}
	work := t.TempDir()
	files := map[string]string{}
	for _, c := range cases {
		b := ir.NewBuilder(c.name)
		in := func(name string, d ir.DType, shape ...int) string {
			full := c.name + "." + name
			typ := ir.T(d, shape...)
			v := b.AddInput(full, typ, ir.Buffer, nil)
			var tv *interp.Tensor
			if d.IsInt() { // a sparse index: sorted distinct flat positions
				n := typ.NumElements()
				ids := make([]int64, n)
				for i := range ids {
					ids[i] = 6 * int64(i) // sorted, distinct, inside W
				}
				tv = interp.FromInts(typ, ids)
			} else {
				vals := make([]float64, typ.NumElements())
				for i := range vals {
					vals[i] = interp.RoundTo(d, 2*rng.Float64()-1)
				}
				tv = interp.FromFloats(typ, vals)
			}
			p := filepath.Join(work, "init."+full+".bin")
			if err := os.WriteFile(p, encode(t, typ, tv), 0o644); err != nil {
				t.Fatal(err)
			}
			files[full] = p
			return v
		}
		b.Output("y", c.build(b, in))
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		m.Graphs = append(m.Graphs, b.G)
	}
	s, err := passes.Schedule(m) // built by hand: the groups and plan from the required passes
	if err != nil {
		t.Fatal(err)
	}
	art, err := codegen.Compile(s.Module, codegen.Options{Groups: s.Groups, Plans: s.Plans, Target: target.NewCUDA("", "")})
	if err != nil {
		t.Fatal(err)
	}
	artPath := filepath.Join(work, "gemm.slc")
	if err := artifact.WriteFile(artPath, art); err != nil {
		t.Fatal(err)
	}
	type run struct {
		Program string `json:"program"`
	}
	runs := make([]run, len(cases))
	for i, c := range cases {
		runs[i] = run{c.name}
	}
	results := map[string][]byte{} // by case: the first launch's y
	for _, l := range gemmLaunches {
		block, grid := l[0], l[1]
		t.Run(fmt.Sprintf("block%d-grid%d", block, grid), func(t *testing.T) {
			dir := filepath.Join(work, fmt.Sprintf("b%dg%d", block, grid))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			// ptxrun's check at the bf16 tolerance; each case is held to its
			// own below, from the worst error the check prints.
			s := map[string]any{"artifact": artPath, "emulator": lib, "device": gemmDevice, "out": out, "Block": block, "Grid": grid,
				"state": files, "runs": runs, "check": true, "loss_tol": 1e-2, "state_tol": 1e-2, "update_tol": 1e-2}
			verdict := runSession(t, ptxrun, dir, s)
			worst := worstErrors(t, verdict)
			for i, c := range cases {
				w := judgeCase(t, worst, verdict, c.name, c.bf16)
				y, err := os.ReadFile(filepath.Join(out, strconv.Itoa(i), "out.y.bin"))
				if err != nil {
					t.Fatal(err)
				}
				if first, ok := results[c.name]; !ok {
					results[c.name] = y
				} else if !bytes.Equal(first, y) {
					t.Errorf("%s: the result differs from the first launch's (%d×%d): the GEMM depends on the launch", c.name, gemmLaunches[0][0], gemmLaunches[0][1])
				}
				t.Logf("%s: %.3g", c.name, w)
			}
		})
	}
}

// worstErrors reads ptxrun's check: the worst norm-wise error of each run,
// by program.
func worstErrors(t *testing.T, verdict string) map[string]float64 {
	t.Helper()
	worst := map[string]float64{}
	for _, mt := range worstRE.FindAllStringSubmatch(verdict, -1) {
		v, err := strconv.ParseFloat(mt[3], 64)
		if err != nil {
			t.Fatalf("ptxrun's line %q", mt[0])
		}
		worst[mt[2]] = v
	}
	return worst
}

// judgeCase holds case name's worst error to its tolerance and returns it:
// f32 results 1e-5 (f32 sums against the interpreter's f64 ones), bf16
// results 4e-3 (now and then the other neighbour).
func judgeCase(t *testing.T, worst map[string]float64, verdict, name string, bf16 bool) float64 {
	t.Helper()
	w, ok := worst[name]
	if !ok {
		t.Fatalf("%s: no verdict in ptxrun's output:\n%s", name, verdict)
	}
	tol := 1e-5
	if bf16 {
		tol = 4e-3
	}
	if w > tol {
		t.Errorf("%s: %.3g from the interpreter (norm-wise), tolerance %g", name, w, tol)
	}
	return w
}

// variantSpecs are the bare GEMMs of TestCUDAGEMMVariantsBitIdentical.
func variantSpecs() []cpu.GEMM {
	h := cpu.BF16
	return []cpu.GEMM{
		{M: 1, N: 1, K: 1, Alpha: 1},
		{M: 5, N: 7, K: 3, Alpha: 1, Accumulate: true},
		{M: 70, N: 65, K: 33, Alpha: 0.375},
		{M: 70, N: 65, K: 33, TransA: true, TransB: true, Alpha: 1, Accumulate: true},
		{M: 65, N: 70, K: 17, TransB: true, Alpha: -2},
		{M: 5, N: 7, K: 3, Batch: 3, StrideA: 15, StrideB: 21, StrideC: 35, Alpha: 1},
		{M: 5, N: 7, K: 3, Batch: 3, StrideB: 21, StrideC: 35, TransA: true, Alpha: 0.5, Accumulate: true},
		{M: 70, N: 65, K: 33, Alpha: 1, ElemA: h, ElemB: h},
		{M: 70, N: 65, K: 33, TransA: true, Alpha: 0.75, ElemA: h, ElemB: h, ElemC: h, Accumulate: true},
		{M: 1, N: 1, K: 1, Alpha: 1, ElemA: h, ElemB: h},
		{M: 5, N: 7, K: 3, Batch: 3, StrideA: 15, StrideB: 21, StrideC: 35, TransB: true, Alpha: 1, ElemA: h, ElemB: h, ElemC: h},
		{M: 33, N: 70, K: 40, TransA: true, TransB: true, Alpha: -0.5, Accumulate: true, ElemA: h, ElemB: h},
		{M: 130, N: 20, K: 16, Alpha: 1, ElemA: h, ElemB: h},
		{M: 5, N: 7, K: 40, Alpha: 1, ElemA: h},
		{M: 5, N: 7, K: 3, Batch: 2, StrideA: 15, StrideB: 21, StrideC: 35, Alpha: 1, ElemC: h},
	}
}

// specTypes are the buffers (as tensors) of a GEMM spec: A, B and C.
func specTypes(s cpu.GEMM) [3]ir.Type {
	dt := func(e cpu.Elem) ir.DType {
		if e == cpu.BF16 {
			return ir.BF16
		}
		return ir.F32
	}
	n := func(stride int64, one int) int {
		if s.Batch <= 1 {
			return one
		}
		return int(stride)*(s.Batch-1) + one
	}
	return [3]ir.Type{
		ir.T(dt(s.ElemA), n(s.StrideA, s.M*s.K)),
		ir.T(dt(s.ElemB), n(s.StrideB, s.K*s.N)),
		ir.T(dt(s.ElemC), n(s.StrideC, s.M*s.N)),
	}
}

// gemmArtifact compiles specs to one cuda artifact with lower's GEMM
// kernels of the given variant: program g<i> runs spec i on state g<i>.a,
// g<i>.b and g<i>.c (updated in place).
func gemmArtifact(t *testing.T, kernels string, specs []cpu.GEMM) *artifact.Artifact {
	t.Helper()
	const triple, gpu, ptx = "nvptx64-nvidia-cuda", "sm_90", "+ptx78"
	tm, err := llvm.NewTargetMachine(triple, llvm.MachineOptions{CPU: gpu, Features: ptx, OptLevel: llvm.CodeGenAggressive})
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Dispose()
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	mod := ctx.NewModule("gemm")
	defer mod.Dispose()
	mod.ConfigureFor(tm)
	e, err := lower.NewEmitter(mod, tm, lower.Options{Device: "cuda", GPUKernels: kernels})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Dispose()
	art := &artifact.Artifact{CompilerVersion: "test", Target: artifact.Target{Kind: "cuda", Triple: triple, CPU: gpu, Features: ptx}}
	// The module declares the state (the runtime takes its types and
	// initial values from there; the session's files replace them).
	m := &ir.Module{}
	for i, s := range specs {
		b := ir.NewBuilder(fmt.Sprintf("g%d", i))
		var c string
		for j, typ := range specTypes(s) {
			c = b.AddInput(fmt.Sprintf("g%d.%s", i, []string{"a", "b", "c"}[j]), typ, ir.Buffer, nil)
		}
		b.Output("y", b.Add(c, c))
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		m.Graphs = append(m.Graphs, b.G)
	}
	if art.Module, err = m.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		l, err := e.GEMMKernel(fmt.Sprintf("gemm%d", i), s)
		if err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		ts := specTypes(s)
		p := &artifact.Program{Name: fmt.Sprintf("g%d", i), ScratchBytes: l.ScratchBytes}
		for j, x := range []string{"a", "b", "c"} {
			p.Slots = append(p.Slots, artifact.Slot{Name: fmt.Sprintf("g%d.%s", i, x), Type: ts[j], Kind: artifact.SlotState})
		}
		p.Steps = []artifact.Step{{Kernel: l.Calls[0].Kernel, Args: []int32{0, 1, 2}}}
		art.Programs = append(art.Programs, p)
	}
	if err := mod.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := mod.RunPasses("default<O3>", tm, llvm.DefaultPassOptions()); err != nil {
		t.Fatal(err)
	}
	if art.Code, err = tm.Emit(mod, llvm.AssemblyFile); err != nil {
		t.Fatal(err)
	}
	if err := art.Validate(); err != nil {
		t.Fatal(err)
	}
	return art
}

// gemmReference is spec's C from a, b and the old c in float64 sums.
func gemmReference(s cpu.GEMM, a, b, c []float64) []float64 {
	out := append([]float64(nil), c...)
	for item := 0; item < max(s.Batch, 1); item++ {
		ab, bb, cb := item*int(s.StrideA), item*int(s.StrideB), item*int(s.StrideC)
		for i := 0; i < s.M; i++ {
			for j := 0; j < s.N; j++ {
				sum := 0.0
				for k := 0; k < s.K; k++ {
					ai, bi := ab+i*s.K+k, bb+k*s.N+j
					if s.TransA {
						ai = ab + k*s.M + i
					}
					if s.TransB {
						bi = bb + j*s.K + k
					}
					sum += a[ai] * b[bi]
				}
				v := float64(s.Alpha) * sum
				if s.Accumulate {
					v += c[cb+i*s.N+j]
				}
				out[cb+i*s.N+j] = v
			}
		}
	}
	return out
}

func TestCUDAGEMMVariantsBitIdentical(t *testing.T) {
	ptxrun, lib := ptxrunFor(t)
	specs := variantSpecs()
	work := t.TempDir()
	rng := ir.NewRNG(5)
	files := map[string]string{}
	init := map[string][]float64{}
	for i, s := range specs {
		for j, typ := range specTypes(s) {
			name := fmt.Sprintf("g%d.%s", i, []string{"a", "b", "c"}[j])
			v := make([]float64, typ.NumElements())
			for k := range v {
				v[k] = interp.RoundTo(typ.DType, 2*rng.Float64()-1)
			}
			init[name] = v
			p := filepath.Join(work, "init."+name+".bin")
			if err := os.WriteFile(p, encode(t, typ, interp.FromFloats(typ, v)), 0o644); err != nil {
				t.Fatal(err)
			}
			files[name] = p
		}
	}
	type run struct {
		Program string `json:"program"`
	}
	runs := make([]run, len(specs))
	for i := range specs {
		runs[i] = run{fmt.Sprintf("g%d", i)}
	}
	first := map[int][]byte{} // spec → the first run's C
	firstBy := ""
	// "tensorcore-emulated" is the tensor-core GEMM (for the bf16·bf16
	// specs; the tiled one for the others) with each mma.sync emulated by
	// fmas in k order: its fragment loads and stores are the real GEMM's,
	// and the result must be the SIMT GEMM's, bit for bit.
	variants := []string{"simt", "portable", "tensorcore-emulated"}
	if gemmDevice == "cuda" {
		// The tensor cores sum in their own order: held to the reference
		// only, not to the others' bits.
		variants = append(variants, "tensorcore")
	}
	for _, kernels := range variants {
		art := gemmArtifact(t, kernels, specs)
		artPath := filepath.Join(work, kernels+".slc")
		if err := artifact.WriteFile(artPath, art); err != nil {
			t.Fatal(err)
		}
		// Also blocks of 48 threads (not whole warps: the tensor-core GEMM
		// takes the tiled one) and 512 (16 warps, more than a tile's 8 warp
		// units).
		for _, l := range append(gemmLaunches, [2]int{48, 2}, [2]int{512, 2}) {
			block, grid := l[0], l[1]
			label := fmt.Sprintf("%s-block%d-grid%d", kernels, block, grid)
			t.Run(label, func(t *testing.T) {
				dir := filepath.Join(work, label)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, "out")
				runSession(t, ptxrun, dir, map[string]any{"artifact": artPath, "emulator": lib, "device": gemmDevice, "out": out,
					"Block": block, "Grid": grid, "state": files, "runs": runs})
				for i, s := range specs {
					ts := specTypes(s)
					name := fmt.Sprintf("g%d.c", i)
					got, err := os.ReadFile(filepath.Join(out, strconv.Itoa(i), "state."+name+".bin"))
					if err != nil {
						t.Fatal(err)
					}
					if kernels != "tensorcore" {
						if f, ok := first[i]; !ok {
							first[i], firstBy = got, label
						} else if !bytes.Equal(f, got) {
							t.Errorf("spec %d %+v: C differs from %s's, bit for bit", i, s, firstBy)
						}
					}
					want := gemmReference(s, init[fmt.Sprintf("g%d.a", i)], init[fmt.Sprintf("g%d.b", i)], init[name])
					g, err := decodeFloats(got, ts[2])
					if err != nil {
						t.Fatal(err)
					}
					tol := 1e-5
					if kernels == "tensorcore" {
						tol = 1e-4 // f32 sums in the tensor cores' order and rounding
					}
					if ts[2].DType == ir.BF16 {
						tol = 4e-3
					}
					if e := normErr(g, want); e > tol {
						t.Errorf("spec %d %+v: %.3g from the float64 reference (norm-wise), tolerance %g", i, s, e, tol)
					}
				}
			})
		}
	}
}

// decodeFloats reads raw little-endian f32 or bf16.
func decodeFloats(b []byte, t ir.Type) ([]float64, error) {
	n := int(t.NumElements())
	out := make([]float64, n)
	switch t.DType {
	case ir.F32:
		if len(b) != 4*n {
			return nil, fmt.Errorf("%d bytes for %v", len(b), t)
		}
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
	case ir.BF16:
		if len(b) != 2*n {
			return nil, fmt.Errorf("%d bytes for %v", len(b), t)
		}
		for i := range out {
			out[i] = float64(ir.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
		}
	default:
		return nil, fmt.Errorf("dtype %v", t.DType)
	}
	return out, nil
}

// normErr is ‖got − want‖ / ‖want‖.
func normErr(got, want []float64) float64 {
	var d, n float64
	for i := range want {
		e := got[i] - want[i]
		d += e * e
		n += want[i] * want[i]
	}
	return math.Sqrt(d) / math.Max(math.Sqrt(n), 1e-30)
}
