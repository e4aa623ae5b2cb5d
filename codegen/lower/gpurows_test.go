package lower

import (
	"regexp"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// The GPU's iteration mappings without a GPU (codegen/gpu's rows.go): the row kernels
// and the element-wise ones compile to PTX for sm_80 and sm_90 in every
// GPUKernels variant; the row kernels synchronize (bar.sync; shfl.sync only
// in "tensorcore"), their bodies are convergent and not nosync, and the
// element-wise and data-movement kernels have no barrier at all.
// e2e/cuda_rows_test.go runs them in the PTX emulator.

// rowGroup is a group of TestGPURowKernels, whether it synchronizes and
// whether it reduces across a block (shuffles in "tensorcore").
type rowGroup struct {
	name    string
	g       *Group
	syncs   bool
	reduces bool
}

func rowGroups(t *testing.T) []rowGroup {
	t.Helper()
	f, h := ir.F32, ir.BF16
	softmax := func(d ir.DType, axis int, shape ...int) *Group {
		return addGroup(t, Single, func(b *ir.Builder) string {
			return b.Op("Softmax", ir.Attrs{"axis": ir.Int(int64(axis))}, b.AddInput("x", ir.T(d, shape...), ir.Data, nil))
		})
	}
	ce := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Op("SoftmaxCrossEntropy", nil, b.AddInput("x", ir.T(f, 6, 33), ir.Data, nil), b.AddInput("l", ir.T(ir.I64, 6), ir.Data, nil))
	})
	ceGrad := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Op("SoftmaxCrossEntropyGrad", nil, b.AddInput("x", ir.T(h, 6, 33), ir.Data, nil),
			b.AddInput("l", ir.T(ir.I64, 6), ir.Data, nil), b.AddInput("d", ir.T(f, 6), ir.Data, nil))
	})
	// RMSNorm's mean of squares: the x·x chain fused into the reduction.
	meanSq := addGroup(t, Reduce, func(b *ir.Builder) string {
		x := b.AddInput("x", ir.T(f, 4, 33), ir.Data, nil)
		return b.Reduce("ReduceMean", b.Mul(x, x), true, -1)
	})
	meanSq.Space = []int{4, 33}
	colSum := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Reduce("ReduceSum", b.AddInput("x", ir.T(f, 9, 20), ir.Data, nil), false, 0)
	})
	colSumLong := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Reduce("ReduceMean", b.AddInput("x", ir.T(f, 700, 20), ir.Data, nil), false, 0)
	})
	ew := addGroup(t, Elementwise, func(b *ir.Builder) string {
		return b.Unary("Silu", b.Add(b.AddInput("x", ir.T(f, 5, 33), ir.Data, nil), b.AddInput("y", ir.T(f, 33), ir.Data, nil)))
	})
	tr := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Transpose(b.AddInput("x", ir.T(h, 5, 7, 3), ir.Data, nil), 2, 0, 1)
	})
	mm := addGroup(t, Single, func(b *ir.Builder) string {
		return b.MatMul(b.AddInput("a", ir.T(f, 5, 33), ir.Data, nil), b.AddInput("b", ir.T(f, 33, 7), ir.Data, nil), false, false)
	})
	return []rowGroup{
		{"softmax_f32", softmax(f, -1, 7, 33), true, true},
		{"softmax_bf16", softmax(h, -1, 3, 40), true, true},
		{"softmax_axis0", softmax(f, 0, 5, 6), false, false}, // lines one per thread, grid-stride
		{"ce", ce, true, true},
		{"ce_grad", ceGrad, true, true},
		{"mean_sq", meanSq, true, true},
		{"col_sum", colSum, false, false},           // independent outputs, grid-stride
		{"col_mean_long", colSumLong, false, false}, // chunked: partial sums, then their sum
		{"ew", ew, false, false},
		{"transpose", tr, false, false},
		{"matmul", mm, true, false}, // calls the tiled GEMM (bar.sync)
	}
}

var (
	defineRE = regexp.MustCompile(`(?m)^define internal void @"?([\w.]+)\.body"?\(.*\) #(\d+)`)
	attrsRE  = regexp.MustCompile(`(?m)^attributes #(\d+) = \{ (.*) \}`)
)

// bodyAttrs maps each kernel body in the textual IR to its function
// attributes.
func bodyAttrs(ir string) map[string]string {
	groups := map[string]string{}
	for _, m := range attrsRE.FindAllStringSubmatch(ir, -1) {
		groups[m[1]] = m[2]
	}
	out := map[string]string{}
	for _, m := range defineRE.FindAllStringSubmatch(ir, -1) {
		out[m[1]] = groups[m[2]]
	}
	return out
}

// entryPTX is the text of .entry name in ptx, up to the next entry.
func entryPTX(ptx, name string) string {
	i := strings.Index(ptx, ".entry "+name+"(")
	if i < 0 {
		return ""
	}
	rest := ptx[i+1:]
	if j := strings.Index(rest, ".entry "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func TestGPURowKernels(t *testing.T) {
	for _, gpu := range []string{"sm_80", "sm_90"} {
		for _, kernels := range []string{"portable", "tensorcore", "tensorcore-emulated"} {
			t.Run(gpu+"-"+kernels, func(t *testing.T) {
				tm, m := gpuTarget(t, gpu)
				e, err := NewEmitter(m, tm, Options{Device: "cuda", GPUKernels: kernels})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Dispose()
				groups := rowGroups(t)
				names := map[string]string{}
				for _, c := range groups {
					l, err := e.Lower(c.g)
					if err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
					names[c.name] = l.Calls[0].Kernel
				}
				attrs := bodyAttrs(m.String())
				for _, c := range groups {
					a, ok := attrs[names[c.name]]
					if !ok {
						t.Fatalf("%s: no body %s.body in the IR", c.name, names[c.name])
					}
					nosync, convergent := strings.Contains(a, "nosync"), strings.Contains(a, "convergent")
					if c.syncs && (nosync || !convergent) {
						t.Errorf("%s synchronizes, its body's attributes are { %s }", c.name, a)
					}
					if !c.syncs && (!nosync || convergent) {
						t.Errorf("%s does not synchronize, its body's attributes are { %s }", c.name, a)
					}
				}
				ptx := emitPTX(t, tm, m)
				if !strings.Contains(ptx, ".target "+gpu) {
					t.Errorf("no .target %s in the PTX", gpu)
				}
				if n := sharedBytes(ptx); n > 48<<10 {
					t.Errorf("%d bytes of static shared memory", n)
				}
				for _, c := range groups {
					body := entryPTX(ptx, names[c.name])
					if body == "" {
						t.Fatalf("%s: no entry %s in the PTX", c.name, names[c.name])
					}
					bar, shfl := strings.Contains(body, "bar.sync"), strings.Count(body, "shfl.sync.bfly")
					if bar != c.syncs {
						t.Errorf("%s: bar.sync %v, want %v", c.name, bar, c.syncs)
					}
					wantShfl := c.reduces && kernels == "tensorcore"
					if (shfl > 0) != wantShfl {
						t.Errorf("%s: %d shfl.sync.bfly, want them %v", c.name, shfl, wantShfl)
					}
					if wantShfl {
						// Two butterflies (within and across warps) of five steps,
						// an f32 maximum one shuffle a step, an f64 sum two.
						if strings.HasPrefix(c.name, "softmax") || strings.HasPrefix(c.name, "ce") {
							if shfl < 30 {
								t.Errorf("%s: %d shfl.sync.bfly, want at least 30 (max and sum)", c.name, shfl)
							}
						}
						if !strings.Contains(body, "shfl.sync.bfly.b32") {
							t.Errorf("%s: no shfl.sync.bfly.b32", c.name)
						}
					}
					t.Logf("%s: %s, %d bytes of PTX, bar.sync %v, %d shfl.sync.bfly", c.name, names[c.name], len(body), bar, shfl)
				}
			})
		}
	}
}

// TestCPUKernelsKeepNosync: the CPU's kernel bodies (which never
// synchronize) keep nosync and are not convergent.
func TestCPUKernelsKeepNosync(t *testing.T) {
	e := newTestEmitter(t, Options{})
	var names []string
	for _, c := range rowGroups(t) {
		l, err := e.Lower(c.g)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		names = append(names, l.Calls[0].Kernel)
	}
	attrs := bodyAttrs(e.Mod.String())
	for _, n := range names {
		if a := attrs[n]; !strings.Contains(a, "nosync") || strings.Contains(a, "convergent") {
			t.Errorf("%s: attributes { %s }", n, a)
		}
	}
	if err := e.Mod.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestGPUChunkedColumnSums: on the GPU a long reduction over an outer axis
// with few outputs is two calls (chunks' partial sums into an f64 temp,
// then their sum); a short one, and every CPU one, is one call.
func TestGPUChunkedColumnSums(t *testing.T) {
	long := func() *Group {
		return addGroup(t, Single, func(b *ir.Builder) string {
			return b.Reduce("ReduceMean", b.AddInput("x", ir.T(ir.F32, 700, 20), ir.Data, nil), false, 0)
		})
	}
	short := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Reduce("ReduceSum", b.AddInput("x", ir.T(ir.F32, 9, 20), ir.Data, nil), false, 0)
	})
	tm, m := gpuTarget(t, "sm_90")
	e, err := NewEmitter(m, tm, Options{Device: "cuda"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Dispose()
	l, err := e.Lower(long())
	if err != nil {
		t.Fatal(err)
	}
	chunks := columnChunks(700, 20)
	if len(l.Calls) != 2 || len(l.Temps) != 1 || l.Temps[0].NumElements() != chunks*20 || l.Temps[0].DType != ir.F64 {
		t.Errorf("700×20 column mean: calls %+v, temps %v (want 2 calls, one f64 temp of %d×20)", l.Calls, l.Temps, chunks)
	}
	if chunks < 2 {
		t.Errorf("columnChunks(700, 20) = %d", chunks)
	}
	if l, err := e.Lower(short); err != nil || len(l.Calls) != 1 || len(l.Temps) != 0 {
		t.Errorf("9×20 column sum: %+v, %v", l, err)
	}
	emitPTX(t, tm, m)
	cpu := newTestEmitter(t, Options{})
	if l, err := cpu.Lower(long()); err != nil || len(l.Calls) != 1 || len(l.Temps) != 0 {
		t.Errorf("CPU 700×20 column mean: %+v, %v", l, err)
	}
}
