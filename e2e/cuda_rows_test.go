package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// The cuda device's row kernels and grid-stride kernels in the PTX
// emulator (codegen/lower's gpurows.go): Softmax, SoftmaxCrossEntropy and
// its gradient, RMSNorm forward and backward (as the frontend and
// autodiff write them: x·x fused into the mean over the last axis, the
// weight's gradient summed over the rows), ReduceSum/ReduceMean over the
// last axes, over a middle axis, over the rows (long ones in chunks: two
// calls) and over everything (a long one grid-wide: a block per chunk,
// then the chunks' sum), and element-wise and
// data-movement kernels, on odd shapes — one row, rows ≫ blocks, rows of
// 1, 5, 33 and 300 — with blocks of 32 and 256 threads and grids of 1 and 3
// blocks, in the portable variant (shared-memory tree reductions) and in
// "tensorcore-emulated" (the tensor-core variant's warp-shuffle reductions,
// each shfl.sync emulated through shared memory; blocks of 48 threads, not
// whole warps, take the tree). Every output is judged by ptxrun's check
// against the reference interpreter (1e-5 norm-wise for f32, 4e-3 for
// bf16), and:
//
//   - the block-row kernels are deterministic for a launch: the same bits
//     for grids of 1 and 3 blocks (a row's order depends only on the block
//     size);
//   - the grid-stride kernels (element-wise, movement, softmax over a
//     non-last axis, sums over outer axes) give the same bits for every
//     launch and both variants.
//
// The real shuffles (shfl.sync.bfly) cannot run here: codegen/lower's
// TestGPURowKernels checks that LLVM emits them for sm_80 and sm_90, and
// on a GPU (SLC_PTXRUN_DEVICE=cuda) this test runs "tensorcore" too.

// rowCase is one program of TestCUDARowKernels: inputs are state named
// "<name>.<input>", outputs are compared with the interpreter.
type rowCase struct {
	name  string
	build func(b *ir.Builder, in func(name string, d ir.DType, shape ...int) string) map[string]string
	// labels, when > 0, makes the i64 inputs labels in [0, labels).
	labels int64
	bf16   bool // bf16 results: bf16's tolerance
	// launchFree marks kernels whose bits must not depend on the launch at
	// all (grid-stride only).
	launchFree bool
}

func rowCases() []rowCase {
	f, h := ir.F32, ir.BF16
	softmax := func(d ir.DType, axis int, shape ...int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			return map[string]string{"y": b.Op("Softmax", ir.Attrs{"axis": ir.Int(int64(axis))}, in("x", d, shape...))}
		}
	}
	// ce: the loss per row, its mean (a reduction over everything) and
	// the gradient.
	ce := func(d ir.DType, J, V int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			x, l := in("logits", d, J, V), in("labels", ir.I64, J)
			loss := b.Op("SoftmaxCrossEntropy", nil, x, l)
			dt := d
			if d == ir.BF16 {
				dt = ir.F32 // bf16-mixed's gradient: bf16 logits, f32 dloss
			}
			dx := b.Op("SoftmaxCrossEntropyGrad", nil, x, l, in("dloss", dt, J))
			return map[string]string{"loss_rows": loss, "mean": b.Reduce("ReduceMean", loss, false, 0), "dx": dx}
		}
	}
	// rms: y = w·x·r with r = rsqrt(mean(x², last) + ε), and the backward
	// of y: dx = r·g − x·r³·mean(g·x, last) with g = dy·w, dw = Σ_rows dy·x·r.
	rms := func(R, D int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			x, w, dy := in("x", f, R, D), in("w", f, D), in("dy", f, R, D)
			r := b.Unary("Rsqrt", b.Add(b.Reduce("ReduceMean", b.Mul(x, x), true, -1), b.Scalar(1e-6, x)))
			xr := b.Mul(x, r)
			y := b.Mul(w, xr)
			g := b.Mul(dy, w)
			r3 := b.Mul(b.Mul(r, r), r)
			dx := b.Sub(b.Mul(r, g), b.Mul(b.Mul(x, r3), b.Reduce("ReduceMean", b.Mul(g, x), true, -1)))
			dw := b.Reduce("ReduceSum", b.Mul(dy, xr), false, 0)
			if D == 1 {
				// y = w·sign(x): dx is 0 but for rounding, r·g and x·r³·g·x
				// cancelling — nothing to compare norm-wise.
				return map[string]string{"y": y, "dw": dw}
			}
			return map[string]string{"y": y, "dx": dx, "dw": dw}
		}
	}
	reduce := func(op string, keep bool, shape []int, axes ...int) func(*ir.Builder, func(string, ir.DType, ...int) string) map[string]string {
		return func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			return map[string]string{"y": b.Reduce(op, in("x", f, shape...), keep, axes...)}
		}
	}
	return []rowCase{
		{name: "softmax_1x5", build: softmax(f, -1, 1, 5)},
		{name: "softmax_200x33", build: softmax(f, -1, 200, 33)},
		{name: "softmax_3x300", build: softmax(f, -1, 3, 300)},
		{name: "softmax_4x1", build: softmax(f, -1, 4, 1)},
		{name: "softmax_2x3x33", build: softmax(f, 2, 2, 3, 33)},
		{name: "softmax_bf16_7x33", build: softmax(h, -1, 7, 33), bf16: true},
		{name: "softmax_axis1", build: softmax(f, 1, 3, 5, 4), launchFree: true},
		{name: "ce_1x5", build: ce(f, 1, 5), labels: 5},
		{name: "ce_67x33", build: ce(f, 67, 33), labels: 33},
		{name: "ce_3x300", build: ce(f, 3, 300), labels: 300},
		{name: "ce_4x1", build: ce(f, 4, 1), labels: 1},
		{name: "ce_bf16_5x33", build: ce(h, 5, 33), labels: 33, bf16: true},
		{name: "rms_1x5", build: rms(1, 5)},
		{name: "rms_37x33", build: rms(37, 33)},
		{name: "rms_3x300", build: rms(3, 300)},
		{name: "rms_5x1", build: rms(5, 1)},
		{name: "rms_200x5", build: rms(200, 5)}, // dw in chunks
		{name: "sum_13x33", build: reduce("ReduceSum", false, []int{13, 33}, -1)},
		{name: "mean_2x3x5_last2", build: reduce("ReduceMean", true, []int{2, 3, 5}, 1, 2)},
		{name: "sum_4x6x5_middle", build: reduce("ReduceSum", false, []int{4, 6, 5}, 1), launchFree: true},
		{name: "sum_300x3_rows", build: reduce("ReduceSum", false, []int{300, 3}, 0), launchFree: true},        // in chunks
		{name: "mean_130x2x7_outer", build: reduce("ReduceMean", true, []int{130, 2, 7}, 0), launchFree: true}, // in chunks
		{name: "mean_all_67", build: reduce("ReduceMean", false, []int{67}, 0)},
		{name: "sum_all_512x640", build: reduce("ReduceSum", false, []int{512, 640}, 0, 1)}, // grid-wide: chunks, then their sum
		{name: "ew_broadcast", launchFree: true, build: func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			return map[string]string{"y": b.Unary("Silu", b.Add(in("x", f, 7, 33), in("b", f, 33)))}
		}},
		{name: "movement", launchFree: true, build: func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			x := in("x", f, 3, 5, 7)
			return map[string]string{
				"t":    b.Transpose(x, 2, 0, 1),
				"s":    b.Slice(x, 1, 1, 4),
				"mask": b.Op("CausalMask", ir.Attrs{"fill": ir.String("zero")}, in("a", f, 2, 6, 6)),
			}
		}},
		{name: "gather", labels: 9, launchFree: true, build: func(b *ir.Builder, in func(string, ir.DType, ...int) string) map[string]string {
			return map[string]string{"y": b.Op("Gather", nil, in("table", f, 9, 5), in("ids", ir.I64, 2, 7))}
		}},
	}
}

// rowsArtifact compiles the cases to one cuda artifact with the given GPU
// kernels and writes their initial state under work.
func rowsArtifact(t *testing.T, cases []rowCase, kernels, work string, files map[string]string) string {
	t.Helper()
	rng := ir.NewRNG(17)
	m := &ir.Module{}
	for _, c := range cases {
		b := ir.NewBuilder(c.name)
		in := func(name string, d ir.DType, shape ...int) string {
			full := c.name + "." + name
			typ := ir.T(d, shape...)
			v := b.AddInput(full, typ, ir.Buffer, nil)
			var tv *interp.Tensor
			if d == ir.I64 {
				ids := make([]int64, typ.NumElements())
				for i := range ids {
					ids[i] = int64(rng.Uint64n(uint64(c.labels)))
				}
				tv = interp.FromInts(typ, ids)
			} else {
				vals := make([]float64, typ.NumElements())
				for i := range vals {
					vals[i] = interp.RoundTo(d, 4*rng.Float64()-2)
				}
				tv = interp.FromFloats(typ, vals)
			}
			if _, ok := files[full]; !ok {
				p := filepath.Join(work, "init."+full+".bin")
				if err := os.WriteFile(p, encode(t, typ, tv), 0o644); err != nil {
					t.Fatal(err)
				}
				files[full] = p
			}
			return v
		}
		outs := c.build(b, in)
		for _, name := range sortedKeys(outs) {
			b.Output(name, outs[name])
		}
		if err := b.Err(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		m.Graphs = append(m.Graphs, b.G)
	}
	s, err := passes.Schedule(m) // built by hand: the groups and plan from the required passes
	if err != nil {
		t.Fatal(err)
	}
	art, err := codegen.Compile(s.Module, codegen.Options{Groups: s.Groups, Plans: s.Plans, Target: target.NewCUDA("", target.Kernels(kernels))})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(work, kernels+".slc")
	if err := artifact.WriteFile(p, art); err != nil {
		t.Fatal(err)
	}
	return p
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys { // a few keys: insertion sort
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func TestCUDARowKernels(t *testing.T) {
	ptxrun, lib := ptxrunFor(t)
	cases := rowCases()
	work := t.TempDir()
	files := map[string]string{}
	type run struct {
		Program string `json:"program"`
	}
	runs := make([]run, len(cases))
	for i, c := range cases {
		runs[i] = run{c.name}
	}
	// Results by case and output file: the first launch's bits (of any
	// variant) for the launch-free kernels, and by block size for all.
	anyLaunch := map[string][]byte{}
	anyLaunchBy := map[string]string{}
	byBlock := map[string][]byte{}
	variants := []string{"portable", "tensorcore-emulated"}
	if gemmDevice == "cuda" {
		// On the GPU (SLC_PTXRUN_DEVICE=cuda): the real shuffles too.
		variants = append(variants, "tensorcore")
	}
	for _, kernels := range variants {
		artPath := rowsArtifact(t, cases, kernels, work, files)
		launches := [][2]int{{32, 1}, {32, 3}, {256, 1}, {256, 3}}
		if kernels != "portable" {
			launches = append(launches, [2]int{48, 1}, [2]int{48, 3}) // not whole warps: the tree
		}
		for _, l := range launches {
			block, grid := l[0], l[1]
			label := fmt.Sprintf("%s-block%d-grid%d", kernels, block, grid)
			t.Run(label, func(t *testing.T) {
				dir := filepath.Join(work, label)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, "out")
				s := map[string]any{"artifact": artPath, "emulator": lib, "device": gemmDevice, "out": out, "Block": block, "Grid": grid,
					"state": files, "runs": runs, "check": true, "loss_tol": 4e-3, "state_tol": 4e-3, "update_tol": 4e-3}
				verdict := runSession(t, ptxrun, dir, s)
				worst := worstErrors(t, verdict)
				for i, c := range cases {
					w := judgeCase(t, worst, verdict, c.name, c.bf16)
					entries, err := os.ReadDir(filepath.Join(out, strconv.Itoa(i)))
					if err != nil {
						t.Fatal(err)
					}
					for _, en := range entries {
						if len(en.Name()) < 4 || en.Name()[:4] != "out." {
							continue
						}
						got, err := os.ReadFile(filepath.Join(out, strconv.Itoa(i), en.Name()))
						if err != nil {
							t.Fatal(err)
						}
						id := c.name + "/" + en.Name()
						bk := fmt.Sprintf("%s/%d/%s", kernels, block, id)
						if first, ok := byBlock[bk]; !ok {
							byBlock[bk] = got
						} else if !bytes.Equal(first, got) {
							t.Errorf("%s: %s differs between grids of the same %d-thread blocks: not deterministic", c.name, en.Name(), block)
						}
						if c.launchFree {
							if first, ok := anyLaunch[id]; !ok {
								anyLaunch[id], anyLaunchBy[id] = got, label
							} else if !bytes.Equal(first, got) {
								t.Errorf("%s: %s differs from %s's, bit for bit (a grid-stride kernel depends on the launch)", c.name, en.Name(), anyLaunchBy[id])
							}
						}
					}
					t.Logf("%s: %.3g", c.name, w)
				}
			})
		}
	}
}
