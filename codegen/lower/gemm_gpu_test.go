package lower

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	gpupkg "gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// The GPU GEMMs without a GPU: every variant and spec class compiles to
// PTX for sm_80 and sm_90 (LLVM verifies the module and emits it), with
// the instructions each variant is made of and at most 48 KB of static
// shared memory. e2e/cuda_gemm_test.go runs them in the PTX emulator.

// gpuGEMMSpecs are the spec classes of the GPU GEMMs: f32 and bf16
// operands and results, both transposes, batches with and without
// broadcast operands, alpha, accumulation, sizes below, at and above a
// tile.
func gpuGEMMSpecs() []cpu.GEMM {
	f, h := cpu.F32, cpu.BF16
	return []cpu.GEMM{
		{M: 1, N: 1, K: 1, Alpha: 1},
		{M: 5, N: 7, K: 3, Alpha: 1},
		{M: 70, N: 65, K: 33, Alpha: 1},
		{M: 64, N: 64, K: 16, Alpha: 1},
		{M: 70, N: 65, K: 33, TransA: true, Alpha: 1},
		{M: 70, N: 65, K: 33, TransB: true, Alpha: 1},
		{M: 5, N: 7, K: 3, TransA: true, TransB: true, Alpha: 1},
		{M: 5, N: 7, K: 3, Batch: 3, StrideA: 15, StrideB: 21, StrideC: 35, Alpha: 1},
		{M: 5, N: 7, K: 3, Batch: 3, StrideB: 21, StrideC: 35, Alpha: 1}, // A shared by the batch
		{M: 70, N: 65, K: 33, Alpha: 0.25},
		{M: 70, N: 65, K: 33, Alpha: 1, Accumulate: true},
		{M: 70, N: 65, K: 33, Alpha: 1, ElemA: h, ElemB: h},
		{M: 70, N: 65, K: 33, TransB: true, Alpha: 0.5, ElemA: h, ElemB: h, ElemC: h},
		{M: 5, N: 7, K: 40, TransA: true, Alpha: 1, ElemA: h, ElemB: h, Accumulate: true},
		{M: 5, N: 7, K: 3, Batch: 2, StrideA: 15, StrideB: 21, StrideC: 35, Alpha: 1, ElemA: h, ElemB: h, ElemC: h},
		{M: 70, N: 65, K: 33, Alpha: 1, ElemA: h, ElemB: f}, // mixed: not for the tensor cores
		{M: 70, N: 65, K: 33, Alpha: 1, ElemC: h},
	}
}

// gpuTarget returns a fresh NVPTX machine and module for gpu.
func gpuTarget(t *testing.T, gpu string) (llvm.TargetMachine, llvm.Module) {
	t.Helper()
	ptx := map[string]string{"sm_80": "+ptx70", "sm_90": "+ptx78"}[gpu]
	tm, err := llvm.NewTargetMachine("nvptx64-nvidia-cuda", llvm.MachineOptions{CPU: gpu, Features: ptx, OptLevel: llvm.CodeGenAggressive})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tm.Dispose)
	ctx := llvm.NewContext()
	t.Cleanup(ctx.Dispose)
	m := ctx.NewModule("gemm")
	t.Cleanup(m.Dispose)
	m.ConfigureFor(tm)
	return tm, m
}

// emitPTX verifies m, optimizes it as codegen.Compile does and returns its
// PTX.
func emitPTX(t *testing.T, tm llvm.TargetMachine, m llvm.Module) string {
	t.Helper()
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := m.RunPasses("default<O3>", tm, llvm.DefaultPassOptions()); err != nil {
		t.Fatal(err)
	}
	ptx, err := tm.Emit(m, llvm.AssemblyFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(ptx)
}

var sharedRE = regexp.MustCompile(`(?m)^\s*\.shared \.align \d+ \.b8 (\S+)\[(\d+)\];`)

// sharedBytes is the static shared memory a PTX module declares.
func sharedBytes(ptx string) int {
	n := 0
	for _, m := range sharedRE.FindAllStringSubmatch(ptx, -1) {
		v, _ := strconv.Atoi(m[2])
		n += v
	}
	return n
}

const mmaInstr = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"

func TestGPUGEMMsCompileToPTX(t *testing.T) {
	specs := gpuGEMMSpecs()
	for _, gpu := range []string{"sm_80", "sm_90"} {
		for _, kernels := range []string{"simt", "portable", "tensorcore", "tensorcore-emulated"} {
			t.Run(gpu+"-"+kernels, func(t *testing.T) {
				tm, m := gpuTarget(t, gpu)
				e, err := NewEmitter(m, tm, Options{Device: "cuda", GPUKernels: kernels})
				if err != nil {
					t.Fatal(err)
				}
				defer e.Dispose()
				for i, s := range specs {
					if _, err := e.GEMMKernel(fmt.Sprintf("gemm%d", i), s); err != nil {
						t.Fatalf("%+v: %v", s, err)
					}
				}
				ptx := emitPTX(t, tm, m)
				if !strings.Contains(ptx, ".target "+gpu) {
					t.Errorf("no .target %s in the PTX", gpu)
				}
				for i := range specs {
					if !strings.Contains(ptx, fmt.Sprintf(".visible .entry gemm%d(", i)) {
						t.Errorf("no entry gemm%d", i)
					}
				}
				shared, bar, mma := sharedBytes(ptx), strings.Contains(ptx, "bar.sync"), strings.Count(ptx, mmaInstr)
				t.Logf("%d bytes of PTX, %d bytes of shared memory, %d mma.sync", len(ptx), shared, mma)
				if shared > 48<<10 {
					t.Errorf("%d bytes of static shared memory, above 48 KB", shared)
				}
				switch kernels {
				case "simt":
					if shared != 0 || bar || mma != 0 {
						t.Errorf("the SIMT GEMM has shared memory (%d bytes), barriers (%v) or mma (%d)", shared, bar, mma)
					}
				case "portable":
					if shared != (gpupkg.TileM+gpupkg.TileN)*gpupkg.TileK*4 || !bar || mma != 0 {
						t.Errorf("the tiled GEMM: %d bytes of shared memory (want %d), barriers %v, %d mma", shared, (gpupkg.TileM+gpupkg.TileN)*gpupkg.TileK*4, bar, mma)
					}
				case "tensorcore":
					if mma == 0 || !bar || shared == 0 {
						t.Errorf("the tensor-core GEMMs: %d mma.sync, barriers %v, %d bytes shared", mma, bar, shared)
					}
				case "tensorcore-emulated":
					if mma != 0 || !bar || shared == 0 {
						t.Errorf("the emulated tensor-core GEMMs: %d mma.sync, barriers %v, %d bytes shared", mma, bar, shared)
					}
				}
			})
		}
	}
}

// TestGPUGEMMVariantChoice: which function each option gives which spec.
func TestGPUGEMMVariantChoice(t *testing.T) {
	h := cpu.BF16
	bf := cpu.GEMM{M: 33, N: 17, K: 20, Alpha: 1, ElemA: h, ElemB: h}
	mixed := cpu.GEMM{M: 33, N: 17, K: 20, Alpha: 1, ElemA: h}
	for _, c := range []struct {
		kernels string
		spec    cpu.GEMM
		mma     bool
		tiled   bool
	}{
		{"", bf, false, true}, {"portable", bf, false, true}, {"simt", bf, false, false},
		{"tensorcore", bf, true, true /* the fallback for partial warps */}, {"tensorcore", mixed, false, true},
	} {
		tm, m := gpuTarget(t, "sm_90")
		e, err := NewEmitter(m, tm, Options{Device: "cuda", GPUKernels: c.kernels})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.GEMMKernel("k", c.spec); err != nil {
			t.Fatal(err)
		}
		e.Dispose()
		ptx := emitPTX(t, tm, m)
		if got := strings.Contains(ptx, mmaInstr); got != c.mma {
			t.Errorf("%q %v: mma.sync %v, want %v", c.kernels, c.spec.ElemA, got, c.mma)
		}
		if got := strings.Contains(ptx, "bar.sync"); got != c.tiled {
			t.Errorf("%q %v: bar.sync %v, want %v", c.kernels, c.spec.ElemA, got, c.tiled)
		}
	}
	tm, m := gpuTarget(t, "sm_90")
	e, err := NewEmitter(m, tm, Options{Device: "cuda", GPUKernels: "wmma"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Dispose()
	if _, err := e.GEMMKernel("k", bf); err == nil || !strings.Contains(err.Error(), "want portable, tensorcore or simt") {
		t.Errorf("GPUKernels wmma: %v", err)
	}
}

// TestTensorCoreMatMulGraph: a bf16 MatMul and a bf16 Linear, lowered as
// groups with "tensorcore" for both GPUs, reach mma.sync.
func TestTensorCoreMatMulGraph(t *testing.T) {
	for _, gpu := range []string{"sm_80", "sm_90"} {
		tm, m := gpuTarget(t, gpu)
		e, err := NewEmitter(m, tm, Options{Device: "cuda", GPUKernels: "tensorcore"})
		if err != nil {
			t.Fatal(err)
		}
		mm := addGroup(t, Single, func(b *ir.Builder) string {
			x := b.AddInput("x", ir.T(ir.BF16, 2, 24, 40), ir.Data, nil)
			w := b.AddInput("w", ir.T(ir.BF16, 40, 72), ir.Data, nil)
			return b.Op("MatMul", nil, x, w)
		})
		lin := addGroup(t, Single, func(b *ir.Builder) string {
			x := b.AddInput("x", ir.T(ir.BF16, 9, 40), ir.Data, nil)
			w := b.AddInput("w", ir.T(ir.BF16, 24, 40), ir.Data, nil)
			return b.Op("Linear", nil, x, w)
		})
		for _, g := range []*Group{mm, lin} {
			if _, err := e.Lower(g); err != nil {
				t.Fatal(err)
			}
		}
		e.Dispose()
		ptx := emitPTX(t, tm, m)
		if n := strings.Count(ptx, mmaInstr); n == 0 {
			t.Errorf("%s: no %s in the PTX", gpu, mmaInstr)
		}
		if n := sharedBytes(ptx); n > 48<<10 {
			t.Errorf("%s: %d bytes of shared memory", gpu, n)
		}
	}
}
