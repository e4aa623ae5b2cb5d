package lower

import (
	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Launch is a cuda kernel's launch geometry (codegen/gpu's geometry.go).
type Launch = gpu.Launch

// chainFlops counts an element-wise or reduce group's arithmetic: one
// operation per computing node per element of its space.
func chainFlops(g *Group) int64 {
	ops := int64(0)
	for _, n := range g.Nodes {
		switch n.Op {
		case "Const", "Reshape", "Identity":
		default:
			ops++
		}
	}
	return ops * numel(g.Space)
}

// Launch returns the launch geometry of a cuda kernel the emitter defined
// (false for an unknown name, or on the CPU).
func (e *Emitter) Launch(kernel string) (Launch, bool) {
	l, ok := e.launches[kernel]
	return l, ok
}

// GEMMKernel defines kernel name(a, b, c) computing the GEMM spec alone
// (codegen/cpu's semantics: C = alpha·op(A)·op(B), + C with Accumulate),
// with the GEMM the options select for the device, and returns how to call
// it (inputs a, b; output c). It is what benchmarks and the GPU GEMM tests
// run, outside any graph.
func (e *Emitter) GEMMKernel(name string, spec cpu.GEMM) (*Lowering, error) {
	kern, f, err := e.gemm(spec)
	if err != nil {
		return nil, err
	}
	ro, rw := param{readonly: true, alias: -1}, param{alias: -1}
	err = e.kernel(name, []param{ro, ro, rw}, func(k *kfn) error {
		k.callGEMM(f, k.P[2], k.P[0], k.P[1])
		return nil
	})
	if err != nil {
		return nil, err
	}
	args := []Arg{{ArgInput, 0}, {ArgInput, 1}, {ArgOutput, 0}}
	return &Lowering{Calls: []Call{{Kernel: name, Args: args}}, ScratchBytes: kern.ScratchBytes}, nil
}

// each visits this thread's iterations of [0, n), which must be
// independent of each other: on the CPU a contiguous share (parts that are
// multiples of align), on the GPU grid-stride.
func (k *kfn) each(n, align int64, body func(i llvm.Value)) {
	if n <= 0 {
		return
	}
	k.e.be.each(k, n, align, body)
}
