package cpu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/hostcpu"
	"gitee.com/gidean/conv-linn/native"
)

// hostMachine returns an -O3 PIC machine for the host, disposed at the end
// of the test or benchmark.
func hostMachine(tb testing.TB) llvm.TargetMachine {
	tb.Helper()
	tm, err := llvm.NewHostTargetMachine(llvm.CodeGenAggressive)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tm.Dispose)
	return tm
}

// avx2Machine returns an -O3 PIC machine for an AVX2+FMA CPU without
// AVX-512 (Haswell), whose code also runs on newer hosts.
func avx2Machine(tb testing.TB) llvm.TargetMachine {
	tb.Helper()
	tm, err := llvm.NewTargetMachine(llvm.DefaultTargetTriple(), llvm.MachineOptions{
		CPU: "haswell", Features: "+avx2,+fma,+avx,+f16c", OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tm.Dispose)
	return tm
}

// sseMachine returns an -O3 PIC machine for baseline x86-64 (SSE2, no AVX,
// no FMA).
func sseMachine(tb testing.TB) llvm.TargetMachine {
	tb.Helper()
	tm, err := llvm.NewTargetMachine(llvm.DefaultTargetTriple(), llvm.MachineOptions{
		CPU: "x86-64", Features: "+sse2", OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tm.Dispose)
	return tm
}

// hostRuns reports whether code for arch runs on this host.
func hostRuns(arch Arch) bool {
	feats := llvm.HostCPUFeatures()
	switch arch.VectorWidth {
	case 16:
		return llvm.HasFeature(feats, "avx512f")
	case 8:
		return llvm.HasFeature(feats, "avx2") && (!arch.FMA || llvm.HasFeature(feats, "fma"))
	}
	return true
}

// job is one kernel to add to a test module.
type job struct {
	gen  *Generator
	spec GEMM
}

// buildLib adds the jobs' kernels to one module for tm, optimizes it, links
// it into a shared object with cc and loads it. It returns the kernels and
// their entry points, in the order of jobs.
func buildLib(tb testing.TB, tm llvm.TargetMachine, jobs []job) ([]Kernel, []unsafe.Pointer) {
	tb.Helper()
	kernels, obj, err := compileObj(tm, jobs)
	if err != nil {
		tb.Fatal(err)
	}
	return kernels, linkLib(tb, [][]byte{obj}, kernels)
}

// buildLibParallel is buildLib for the host with the jobs split into parts
// modules compiled concurrently, each with its own host target machine
// (LLVM contexts and machines are not shared between threads), and linked
// into one shared object.
func buildLibParallel(tb testing.TB, jobs []job, parts int) ([]Kernel, []unsafe.Pointer) {
	tb.Helper()
	parts = max(1, min(parts, len(jobs)))
	kernels := make([]Kernel, len(jobs))
	objs := make([][]byte, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*len(jobs)/parts, (p+1)*len(jobs)/parts
		wg.Add(1)
		go func() {
			defer wg.Done()
			tm, err := llvm.NewHostTargetMachine(llvm.CodeGenAggressive)
			if err != nil {
				errs[p] = err
				return
			}
			defer tm.Dispose()
			var ks []Kernel
			ks, objs[p], errs[p] = compileObj(tm, jobs[lo:hi])
			copy(kernels[lo:hi], ks)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return kernels, linkLib(tb, objs, kernels)
}

// compileObj adds the jobs' kernels to one module for tm, optimizes it and
// emits an object file.
func compileObj(tm llvm.TargetMachine, jobs []job) ([]Kernel, []byte, error) {
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("gemm_test")
	defer m.Dispose()
	m.ConfigureFor(tm)
	kernels := make([]Kernel, len(jobs))
	for i, j := range jobs {
		var err error
		if kernels[i], err = j.gen.Add(m, j.spec); err != nil {
			return nil, nil, fmt.Errorf("%s: %v", j.spec.Name, err)
		}
	}
	if err := Optimize(m, tm); err != nil {
		return nil, nil, err
	}
	obj, err := tm.Emit(m, llvm.ObjectFile)
	return kernels, obj, err
}

// linkLib links the objects into a shared object with cc, loads it and
// returns the kernels' entry points.
func linkLib(tb testing.TB, objs [][]byte, kernels []Kernel) []unsafe.Pointer {
	tb.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		tb.Skip("no system C compiler to link a shared object")
	}
	dir := tb.TempDir()
	so := filepath.Join(dir, "gemm.so")
	args := []string{"-shared", "-o", so}
	for i, obj := range objs {
		o := filepath.Join(dir, fmt.Sprintf("gemm%d.o", i))
		if err := os.WriteFile(o, obj, 0o644); err != nil {
			tb.Fatal(err)
		}
		args = append(args, o)
	}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		tb.Fatalf("cc -shared: %v\n%s", err, out)
	}
	if hostcpu.Supported("amx-tile") && hostcpu.Supported("amx-bf16") {
		// Host kernels may run on AMX tiles: ask for the tile state as
		// package runtime does (a refusal shows in TestGEMMAMX).
		_ = hostcpu.RequestAMX()
	}
	lib, err := native.Open(so)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { lib.Close() })
	fns := make([]unsafe.Pointer, len(kernels))
	for i, k := range kernels {
		if fns[i], err = lib.Sym(k.Name); err != nil {
			tb.Fatal(err)
		}
	}
	return fns
}

// runThreads calls fn once per thread index, concurrently, each thread with
// its own scratch from scratch (nthreads buffers of k.ScratchBytes).
func runThreads(fn unsafe.Pointer, k Kernel, c, a, b []float32, scratch [][]float32) {
	var wg sync.WaitGroup
	for tid := range scratch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			native.CallGEMM(fn, c, a, b, scratch[tid], tid, len(scratch))
		}()
	}
	wg.Wait()
}

// newScratch allocates n scratch buffers for k.
func newScratch(k Kernel, n int) [][]float32 {
	s := make([][]float32, n)
	for i := range s {
		s[i] = make([]float32, (k.ScratchBytes+3)/4)
	}
	return s
}
