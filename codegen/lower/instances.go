package lower

import (
	"fmt"
	"regexp"
	"strings"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # Instanced kernels
//
// A layer's independent calls of one kernel — the sparse gradients'
// ScatterAdds of every linear layer, the Gathers of their supports, a
// layer's q/k/v transposes — are each a launch of their own, the same
// code on different buffers. On the cuda device, InstanceKey says which
// kernel groups codegen may schedule side by side (batch.go) for one
// launch of the kernel's instanced entry (Instances): the step's argument
// table holds every instance's arguments, instance after instance, and the
// launch's blocks are numbered virtually over the instances — virtual
// block v of instance v / G (G the kernel's own grid) runs as block v mod
// G of a G-block launch of the kernel's body, on that instance's pointers.
// A hardware block takes virtual blocks ctaid.x, ctaid.x + nctaid.x, …, so
// the entry is correct on any grid (the runtime may cap it for scratch).
//
// Only bodies that number their work by the tid and nthreads they are
// given qualify (grid-stride loops, per-thread shares): instanceOps lists
// the ops whose GPU lowering is such, and Instances refuses a body that
// reads the hardware numbering, synchronizes or uses atomics all the same
// (a block-cooperative GEMM or row kernel would see the wrong blocks).
// Each thread keeps its own scratch area (by its hardware tid) across the
// virtual blocks it runs, one after another.

// instanceOps are the single-node kernels whose GPU bodies number their
// work by their tid and nthreads: the data movement (grid-stride), and the
// products and sparse kernels, whose block-cooperative parts (the GEMMs,
// the sorted-index scatters and sparse product of codegen/gpu) take their
// block numbering from tid and nthreads too (gpu's blockRegs).
var instanceOps = map[string]bool{
	"Gather": true, "Transpose": true, "RoPE": true, "Expand": true, "CausalMask": true,
	"MatMul": true, "LowRankSparseAdd": true, "ScatterAdd": true,
}

// maxInstances bounds the instances of one launch.
const maxInstances = 256

// InstanceKey says whether kernel group g may run as an instance of its
// kernel's instanced entry with other groups of the same key: its
// signature (the same key is the same kernel) for a cuda kernel group of
// one op in instanceOps, "" otherwise.
func InstanceKey(g *Group, opt Options) string {
	if opt.Device != "cuda" || g.Kind != Single || len(g.Nodes) != 1 || !instanceOps[g.Nodes[0].Op] || len(g.Outputs) == 0 {
		return ""
	}
	return "inst\n" + signature(g, opt)
}

// Instances defines (or finds) the entry running n instances of kernel,
// a kernel defined by this emitter with one call of nargs arguments, and
// returns its name. Its launch geometry is the kernel's with n times the
// blocks (Launch).
func (e *Emitter) Instances(kernelName string, nargs, n int) (string, error) {
	name := fmt.Sprintf("%s_x%d", kernelName, n)
	if _, ok := e.launches[name]; ok {
		return name, nil
	}
	if e.dev == nil || n < 2 || n > maxInstances {
		return "", fmt.Errorf("internal error: %d instances of %s", n, kernelName)
	}
	base, ok := e.launches[kernelName]
	first, ok2 := e.firsts[kernelName]
	body, ok3 := e.Mod.NamedFunction(kernelName + ".body")
	if !ok || !ok2 || !ok3 {
		return "", fmt.Errorf("internal error: %s is not a kernel of this module", kernelName)
	}
	if bad := e.hardwareNumbered(body); bad != "" {
		return "", fmt.Errorf("internal error: %s's body reads the hardware's block numbering or shares memory across blocks (%s): it cannot run as instances", kernelName, bad)
	}
	g := int64(base.Grid)
	err := e.multiEntry(name, func(k *kfn, table llvm.Value) error {
		b := k.B
		hw, err := k.e.dev.Regs(k.Fn)
		if err != nil {
			return err
		}
		// The thread's own scratch (multiEntry's k.Tid is the hardware
		// tid), kept over its virtual blocks.
		scr := b.InBoundsGEP(e.I8, k.Scr, []llvm.Value{b.Mul(k.Tid, k.F.Param(2), "")}, "")
		nth := k.Mulc(hw.Nt, g)
		k.LoopStep(hw.Bx, k.C64(int64(n)*g), hw.Nb, func(v llvm.Value) {
			inst := b.SDiv(v, k.C64(g), "")
			lb := k.Sub(v, k.Mulc(inst, g))
			tbl := k.At(e.Ptr, table, k.Mulc(inst, int64(nargs)))
			args := make([]llvm.Value, 0, len(first)+3)
			for _, i := range first {
				p := b.Load(e.Ptr, k.At(e.Ptr, tbl, k.C64(int64(i))), "")
				p.SetAlignment(8)
				args = append(args, p)
			}
			args = append(args, k.Add(k.B.Mul(lb, hw.Nt, ""), hw.Tx), nth, scr)
			b.Call(body, args, "")
		})
		k.Work = kernel.Work{}
		return nil
	})
	if err != nil {
		return "", err
	}
	l := base
	l.Grid = int(min(int64(n)*g, 1<<31-1))
	l.Flops, l.Bytes = base.Flops*int64(n), base.Bytes*int64(n)
	e.launches[name] = l
	return name, nil
}

// instanceUnsafe are the IR fragments that keep a body (or a function it
// calls) from running on virtual blocks: the hardware's own block number
// and block count (the block-cooperative code reads them through its tid
// and nthreads, gpu's blockRegs, and only ntid.x from the hardware, which
// a virtual block shares), and atomics (which could meet another
// instance's blocks on shared data).
var instanceUnsafe = []string{"llvm.nvvm.read.ptx.sreg.ctaid", "llvm.nvvm.read.ptx.sreg.nctaid", "atomicrmw", "cmpxchg"}

// calledName finds the functions a function's IR calls.
var calledName = regexp.MustCompile(`call [^@]*@([-A-Za-z0-9_.$]+)\(`)

// hardwareNumbered is the first fragment of instanceUnsafe in f or a
// function of this module f calls (transitively: the GEMMs a body calls,
// their fallbacks), "" when there is none.
func (e *Emitter) hardwareNumbered(f llvm.Function) string {
	seen := map[string]bool{f.Name(): true}
	stack := []llvm.Function{f}
	for len(stack) > 0 {
		fn := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ir := fn.String()
		for _, bad := range instanceUnsafe {
			if strings.Contains(ir, bad) {
				return bad
			}
		}
		for _, m := range calledName.FindAllStringSubmatch(ir, -1) {
			if seen[m[1]] || strings.HasPrefix(m[1], "llvm.") {
				continue
			}
			seen[m[1]] = true
			if g, ok := e.Mod.NamedFunction(m[1]); ok {
				stack = append(stack, g)
			}
		}
	}
	return ""
}
