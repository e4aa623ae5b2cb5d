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
// A layer's independent kernel calls — the q, k and v projections of one
// input, a linear layer's dx and dW products, the sparse gradients'
// ScatterAdds of every layer, the Gathers of their supports — are each a
// launch of their own. On the cuda device, InstanceKey says which groups
// codegen may schedule side by side (batch.go) for one launch of an
// instanced entry (Instances): the step's argument table holds every
// instance's arguments (its descriptor: the buffer pointers; shapes,
// strides and alpha are the kernel's constants), instance after instance,
// and the launch's blocks are numbered virtually over the instances. The
// entry runs parts, each n instances of one kernel of G blocks (its own
// grid): virtual block v in part j's range runs as block (v − start) mod
// G of instance (v − start) / G, with that instance's pointers — a
// block-uniform branch to the kernel's body, which gets tid = block·ntid +
// tid.x and nthreads = G·ntid as an entry of its own gives it. A hardware
// block takes virtual blocks ctaid.x, ctaid.x + nctaid.x, …, so the entry
// is correct on any grid (the runtime may cap it for scratch), and every
// thread of a block runs the same virtual blocks: a body's barriers stay
// uniform.
//
// The bodies number their work by the tid and nthreads they are given:
// grid-stride loops and per-thread shares directly, and the
// block-cooperative code (the GEMMs, row reductions and sorted-index sparse
// kernels of codegen/gpu) through gpu's blockRegs, which derives the block
// and thread from them with ntid.x the only hardware register read (a
// virtual block shares it). Instances refuses a body that reads the
// hardware's block number or uses atomics all the same (hardwareNumbered).
// Each thread keeps its own scratch area (by its hardware tid) across the
// virtual blocks it runs, one after another; a body staging in shared
// memory starts with a barrier (the GEMMs' first k-tile, the index check),
// so one virtual block's readers finish before the next one's writers.

// maxInstances bounds the instances of one launch.
const maxInstances = 256

// InstanceKey says whether group g may run as an instance with other
// groups of the same key (any of them, independent: codegen schedules
// them): "inst" for a cuda kernel group of one node and for element-wise
// and reduce groups that no multi-tensor kernel takes (MultiTensorKey
// ""), "" otherwise.
func InstanceKey(g *Group, opt Options) string {
	if opt.Device != "cuda" || len(g.Outputs) == 0 || len(g.Nodes) == 0 {
		return ""
	}
	switch g.Kind {
	case Single:
		if len(g.Nodes) != 1 {
			return ""
		}
	case Elementwise, Reduce:
		if MultiTensorKey(g, opt) != "" {
			return ""
		}
	default:
		return ""
	}
	return "inst"
}

// Part is one kernel's instances in an instanced launch: N calls of
// Kernel (a kernel this emitter defined), Args arguments each.
type Part struct {
	Kernel  string
	Args, N int
}

// Instances defines (or finds) the entry running parts, one after another
// (see the section above), and returns its name: kernel_xN for one part.
// Its arguments are the parts' calls' arguments, call after call; its
// launch geometry (Launch) is the parts' kernels' blocks at the largest of
// their block sizes, as many as they take together.
func (e *Emitter) Instances(parts []Part) (string, error) {
	var sig strings.Builder
	total := 0
	for _, p := range parts {
		fmt.Fprintf(&sig, "%s×%d/%d\n", p.Kernel, p.N, p.Args)
		total += p.N
	}
	if name, ok := e.instDone[sig.String()]; ok {
		return name, nil
	}
	if e.dev == nil || len(parts) == 0 || total < 2 || total > maxInstances {
		return "", fmt.Errorf("internal error: %d instances of %d kernels", total, len(parts))
	}
	type part struct {
		Part
		body  llvm.Function
		first []int
		grid  int64 // virtual blocks of one instance
		start int64 // the part's first virtual block
		arg0  int64 // the part's first argument
	}
	ps := make([]part, len(parts))
	var l Launch
	for _, p := range parts {
		base, ok := e.launches[p.Kernel]
		if !ok {
			return "", fmt.Errorf("internal error: %s is not a kernel of this module", p.Kernel)
		}
		l.Block = max(l.Block, base.Block)
	}
	var blocks, args int64
	for j, p := range parts {
		base := e.launches[p.Kernel]
		first, ok := e.firsts[p.Kernel]
		body, ok2 := e.Mod.NamedFunction(p.Kernel + ".body")
		if !ok || !ok2 || p.N < 1 {
			return "", fmt.Errorf("internal error: %s is not a kernel of this module", p.Kernel)
		}
		if bad := e.hardwareNumbered(body); bad != "" {
			return "", fmt.Errorf("internal error: %s's body reads the hardware's block numbering (%s): it cannot run as instances", p.Kernel, bad)
		}
		// The kernel's threads in blocks of the launch's size.
		g := (int64(base.Grid)*int64(base.Block) + int64(l.Block) - 1) / int64(l.Block)
		ps[j] = part{Part: p, body: body, first: first, grid: g, start: blocks, arg0: args}
		blocks += int64(p.N) * g
		args += int64(p.N * p.Args)
		l.Scratch = l.Scratch || base.Scratch
		l.SharedBytes = max(l.SharedBytes, base.SharedBytes)
		l.TensorCore = l.TensorCore || base.TensorCore
		l.Flops += base.Flops * int64(p.N)
		l.Bytes += base.Bytes * int64(p.N)
	}
	name := parts[0].Kernel + fmt.Sprintf("_x%d", parts[0].N)
	if len(parts) > 1 {
		name = e.symbol("inst", sig.String())
	}
	err := e.multiEntry(name, func(k *kfn, table llvm.Value) error {
		b := k.B
		hw, err := k.e.dev.Regs(k.Fn)
		if err != nil {
			return err
		}
		// The thread's own scratch (multiEntry's k.Tid is the hardware
		// tid), kept over its virtual blocks.
		scr := b.InBoundsGEP(e.I8, k.Scr, []llvm.Value{b.Mul(k.Tid, k.F.Param(2), "")}, "")
		k.LoopStep(hw.Bx, k.C64(blocks), hw.Nb, func(v llvm.Value) {
			for _, p := range ps {
				in := b.And(b.ICmp(llvm.IntSGE, v, k.C64(p.start), ""), b.ICmp(llvm.IntSLT, v, k.C64(p.start+int64(p.N)*p.grid), ""), "")
				k.When(in, func() {
					r := k.Sub(v, k.C64(p.start))
					inst := k.Divc(r, p.grid)
					lb := k.Sub(r, k.Mulc(inst, p.grid))
					tbl := k.At(e.Ptr, table, k.Addc(k.Mulc(inst, int64(p.Args)), p.arg0))
					args := make([]llvm.Value, 0, len(p.first)+3)
					for _, i := range p.first {
						a := b.Load(e.Ptr, k.At(e.Ptr, tbl, k.C64(int64(i))), "")
						a.SetAlignment(8)
						args = append(args, a)
					}
					args = append(args, k.Add(k.B.Mul(lb, hw.Nt, ""), hw.Tx), k.Mulc(hw.Nt, p.grid), scr)
					b.Call(p.body, args, "")
				})
			}
		})
		k.Work = kernel.Work{}
		return nil
	})
	if err != nil {
		return "", err
	}
	l.Grid = int(min(blocks, 1<<31-1))
	e.launches[name] = l
	e.instDone[sig.String()] = name
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

// InstanceBatch is whether g runs as instances (InstanceKey under the
// emitter's options): the program builder's choice between Instances and
// MultiTensor for a batch.
func (e *Emitter) InstanceBatch(g *Group) bool { return InstanceKey(g, e.opt) != "" }
