package cpu_test

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Generate the forward GEMM y = x·Wᵀ of a 512→1376 linear layer over 2048
// tokens for an AVX-512 machine and print its schedule.
func Example() {
	tm, err := llvm.NewTargetMachine("x86_64-pc-linux-gnu", llvm.MachineOptions{
		CPU: "znver4", Features: "+avx512f,+avx2,+fma", OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
	})
	if err != nil {
		panic(err)
	}
	defer tm.Dispose()
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("kernels")
	defer m.Dispose()
	m.ConfigureFor(tm)

	g := cpu.NewGenerator(tm)
	k, err := g.Add(m, cpu.GEMM{Name: "mlp_up", M: 2048, N: 1376, K: 512, TransB: true, Alpha: 1})
	if err != nil {
		panic(err)
	}
	if err := cpu.Optimize(m, tm); err != nil {
		panic(err)
	}
	b := k.Blocking
	fmt.Printf("%s: %d-float vectors, %d×%d tiles, MC %d KC %d NC %d\n", k.Name, g.Arch.VectorWidth, b.MR, b.NR, b.MC, b.KC, b.NC)
	fmt.Printf("threads split C by columns: %v; scratch per thread: %d bytes\n", k.SplitN, k.ScratchBytes)
	fmt.Printf("%.2f GFLOP per call\n", float64(k.FLOPs())/1e9)
	// Output:
	// mlp_up: 16-float vectors, 8×32 tiles, MC 144 KC 256 NC 1376
	// threads split C by columns: false; scratch per thread: 1556544 bytes
	// 2.89 GFLOP per call
}
