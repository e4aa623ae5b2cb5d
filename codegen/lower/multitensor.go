package lower

import (
	"fmt"
	"strings"

	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # Multi-tensor kernels
//
// The optimizer update is the same few element-wise chains and one
// reduction per parameter, each tensor a kernel of its own: thousands of
// small launches. On the cuda device, independent groups that
// MultiTensorKey says can share a launch (codegen schedules them side by
// side) become one kernel, as PyTorch's fused (foreach) AdamW does: the
// kernel's arguments are every group's arguments one after another (the
// table of tensor pointers: the step's argument table), and the launch is
// mapped over all of them.
//
//   - "ew", element-wise groups (no fills): the groups' iteration spaces,
//     one after another, are cut into chunks of mtChunk elements (each
//     group's last chunk may be short); block b takes chunks b, b + nctaid,
//     …, finds a chunk's group by a binary search over the constant chunk
//     offsets (block-uniform branches) and runs that group's element-wise
//     body over the chunk, thread tx taking elements tx, tx + ntid, … —
//     the very per-element code of the group's own kernel.
//   - "red", reductions of a whole space to one value (each parameter's
//     sum of squares for the gradient norm): block b takes groups b, b +
//     nctaid, …, and runs each as the group's own kernel's block row (one
//     row, blockReduce): the same sums in the same order as the group's own
//     kernel, only the groups run side by side.
//
// Each group's body is the one its own kernel would have (captured from
// elementwise or reduce, see Emitter.capture), emitted once per class of
// groups with the same signature (shapes, ops, in-place pattern: a
// layer's tensors share one) under a block-uniform branch on the located
// group's class, with that group's pointers loaded from the argument
// table where it runs (so a kernel of hundreds of tensors keeps only the
// pointers of one live). The bodies stay inline: the PTX emulator cannot
// run calls of .func with parameters, and no llama_60m multi-tensor kernel
// spills (ptxas -v, sm_80 and sm_90, at most 56 registers) once groups of
// more than mtMaxArgs arguments stay out.

// mtChunk is the elements a block takes at a time in an "ew" kernel: 8 per
// thread of a gpu.GPUBlock block.
const mtChunk = 8 * gpu.GPUBlock

// mtMaxArgs bounds the arguments of a group a multi-tensor kernel takes.
const mtMaxArgs = 16

// captured is a kernel body recorded instead of defined.
type captured struct {
	params []param
	emit   func(k *kfn) error
}

// MultiTensorKey says whether group g can run in a multi-tensor kernel
// with other groups of the same key: "ew" for an element-wise group whose
// outputs are all over its space, "red" for a reduction of a space of two
// or more elements to one value (its other outputs over the space), ""
// for any other group or device, and for groups of more than
// mtMaxArgs arguments (the sum of every tensor's squared norm: all its
// operands live at once do not fit a thread's registers beside the
// kernel's).
func MultiTensorKey(g *Group, opt Options) string {
	if opt.Device != "cuda" || len(g.Nodes) == 0 || len(g.Outputs) == 0 || len(g.Inputs)+len(g.Outputs) > mtMaxArgs {
		return ""
	}
	n := numel(g.Space)
	switch g.Kind {
	case Elementwise:
		if n < 1 || checkChain(g, g.Space, len(g.Nodes)) != nil {
			return ""
		}
		for _, o := range g.Outputs {
			if numel(o.Type.Shape) != n {
				return ""
			}
		}
		for _, in := range g.Inputs {
			if m := numel(in.Type.Shape); m != n && m != 1 {
				return ""
			}
		}
		return "ew"
	case Reduce:
		red := g.Nodes[len(g.Nodes)-1]
		if red.Op != "ReduceSum" && red.Op != "ReduceMean" || n < 2 || rowChunks(n, 1) > 1 {
			return "" // a long sum is two calls of its own (reduceRowChunksGPU)
		}
		for _, o := range g.Outputs {
			m := numel(o.Type.Shape)
			if o.Name == red.Outputs[0].Name && m != 1 || o.Name != red.Outputs[0].Name && m != n {
				return ""
			}
		}
		return "red"
	}
	return ""
}

// MultiTensor defines a kernel running every group of gs (all of one
// MultiTensorKey, independent of each other) in one launch, or finds the
// one an identical list of groups got, and returns its name. Its arguments
// are each group's inputs and outputs (inputsAndOutputs), group after
// group; its launch geometry is recorded (Launch).
func (e *Emitter) MultiTensor(gs []*Group) (string, error) {
	if len(gs) == 0 {
		return "", fmt.Errorf("a multi-tensor kernel of no groups")
	}
	key := MultiTensorKey(gs[0], e.opt)
	var sig strings.Builder
	for _, g := range gs {
		sig.WriteString(signature(g, e.opt))
		sig.WriteString("--\n")
	}
	if name, ok := e.mtDone[sig.String()]; ok {
		return name, nil
	}
	name := e.symbol("mt_"+key, sig.String())
	if err := e.multiTensor(name, key, gs); err != nil {
		return "", err
	}
	e.mtDone[sig.String()] = name
	return name, nil
}

// multiTensor defines kernel name for MultiTensor. Groups with the same
// signature (shapes, ops, in-place pattern) share one copy of the body:
// the kernel locates a chunk's (or a block's) group by a binary search
// over constants, which sets the group's first argument, its class and
// its first chunk, then runs its class's body with the group's pointers.
func (e *Emitter) multiTensor(name, key string, gs []*Group) error {
	type class struct {
		emit   func(k *kfn) error
		params int
	}
	var classes []class
	classOf := map[string]int{}
	var flops, bytes int64
	for _, g := range gs {
		flops += chainFlops(g)
		for _, in := range g.Inputs {
			bytes += in.Type.Bytes()
		}
		for j, o := range g.Outputs {
			if _, inPlace := g.InPlace[j]; !inPlace {
				bytes += o.Type.Bytes()
			}
		}
	}
	cls := make([]int, len(gs))    // group → class
	base := make([]int64, len(gs)) // group → its first argument
	starts := make([]int64, len(gs)+1)
	args := int64(0)
	for j, g := range gs {
		if k := MultiTensorKey(g, e.opt); k == "" || k != key {
			return fmt.Errorf("%s cannot join a %q multi-tensor kernel", describe(g), key)
		}
		if err := check(g); err != nil {
			return err
		}
		base[j] = args
		args += int64(len(g.Inputs) + len(g.Outputs))
		// "ew": group j's chunks start at starts[j]; "red": group j is
		// unit j.
		units := int64(1)
		if key == "ew" {
			units = (numel(g.Space) + mtChunk - 1) / mtChunk
		}
		starts[j+1] = starts[j] + units
		sig := signature(g, e.opt)
		if c, ok := classOf[sig]; ok {
			cls[j] = c
			continue
		}
		e.capture = &captured{}
		var l *Lowering
		var err error
		if key == "ew" {
			l, err = e.elementwise("", g)
		} else {
			l, err = e.reduce("", g)
		}
		c := e.capture
		e.capture = nil
		if err != nil {
			return fmt.Errorf("%s: %w", describe(g), err)
		}
		if len(l.Calls) != 1 || len(l.Temps) > 0 || l.ScratchBytes > 0 || c.emit == nil {
			return fmt.Errorf("internal error: %s is not one kernel without temporaries or scratch", describe(g))
		}
		classOf[sig], cls[j] = len(classes), len(classes)
		classes = append(classes, class{emit: c.emit, params: len(c.params)})
	}
	return e.multiEntry(name, func(k *kfn, table llvm.Value) error {
		b, i64 := k.B, e.I64
		hw, err := k.e.dev.Regs(k.Fn)
		if err != nil {
			return err
		}
		vBase, vClass, vStart := k.Variable(i64, k.C64(0)), k.Variable(i64, k.C64(0)), k.Variable(i64, k.C64(0))
		// locate sets the variables for the group whose units hold u.
		var locate func(u llvm.Value, lo, hi int)
		locate = func(u llvm.Value, lo, hi int) {
			if hi-lo == 1 {
				k.Store(k.C64(base[lo]), i64, vBase)
				k.Store(k.C64(int64(cls[lo])), i64, vClass)
				k.Store(k.C64(starts[lo]), i64, vStart)
				return
			}
			mid := (lo + hi) / 2
			left := b.ICmp(llvm.IntSLT, u, k.C64(starts[mid]), "")
			k.When(left, func() { locate(u, lo, mid) })
			k.When(b.Xor(left, llvm.ConstInt(e.Ctx.Int1Type(), 1), ""), func() { locate(u, mid, hi) })
		}
		var ferr error
		// run emits each class's body under a block-uniform branch, with
		// the located group's pointers loaded from the table.
		run := func(setup func()) {
			for c, cl := range classes {
				k.When(b.ICmp(llvm.IntEQ, k.Load(i64, vClass), k.C64(int64(c)), ""), func() {
					first := k.Load(i64, vBase)
					p := make([]llvm.Value, cl.params)
					for i := range p {
						v := b.Load(e.Ptr, k.At(e.Ptr, table, k.Addc(first, int64(i))), "")
						v.SetAlignment(8)
						p[i] = v
					}
					k.P = p
					setup()
					if err := cl.emit(k); err != nil && ferr == nil {
						ferr = err
					}
				})
			}
		}
		total := starts[len(gs)]
		k.LoopStep(hw.Bx, k.C64(total), hw.Nb, func(u llvm.Value) {
			locate(u, 0, len(gs))
			if key == "red" {
				// The group's block row: the unit is the block's only row.
				run(func() { k.Virt = &kernel.BlockRegs{Tx: hw.Tx, Nt: hw.Nt, Bx: k.C64(0), Nb: k.C64(1)} })
				k.Virt = nil
				return
			}
			// Chunk u − start of the group: elements s + tx, s + tx + ntid, … < s + mtChunk.
			run(func() {
				s := k.Mulc(k.Sub(u, k.Load(i64, vStart)), mtChunk)
				k.Tid, k.Nth, k.Stop = k.Add(s, hw.Tx), hw.Nt, k.Addc(s, mtChunk)
			})
		})
		k.Work = kernel.Work{Blocks: total, Flops: flops, Bytes: bytes}
		return ferr
	})
}

// multiEntry defines the PTX entry name(args, scratch, stride) of the CUDA
// ABI with emit's code as its body, given the argument table itself (a
// multi-tensor kernel loads each group's pointers where it needs them,
// not all at the entry as kernel's wrapper does), and records its launch.
func (e *Emitter) multiEntry(name string, emit func(k *kfn, table llvm.Value) error) error {
	if _, dup := e.Mod.NamedFunction(name); dup {
		return fmt.Errorf("internal error: kernel %s defined twice", name)
	}
	w := e.Mod.AddFunction(name, llvm.FunctionType(e.Void, []llvm.Type{e.Ptr, e.Ptr, e.I64}, false))
	w.SetCallConv(llvm.PTXKernelCallConv)
	if err := w.AddAttribute(llvm.FunctionIndex, "nounwind", 0); err != nil {
		return err
	}
	k := &kfn{Fn: &kernel.Fn{Types: e.Types, B: e.b, AB: e.ab, F: w, Scr: w.Param(1)}, e: e}
	k.Entry = w.AppendBasicBlock("entry")
	body := w.AppendBasicBlock("body")
	e.ab.SetInsertPointAtEnd(k.Entry)
	e.b.SetInsertPointAtEnd(body)
	hw, err := k.e.dev.Regs(k.Fn)
	if err != nil {
		return err
	}
	k.Tid = k.Add(k.B.Mul(hw.Bx, hw.Nt, ""), hw.Tx)
	k.Nth = k.B.Mul(hw.Nb, hw.Nt, "")
	e.b.SetFastMath(llvm.FastMathAllowContract)
	err = emit(k, w.Param(0))
	e.b.SetFastMath(llvm.FastMathNone)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	e.b.RetVoid()
	e.ab.Br(body)
	e.launches[name] = gpu.LaunchOf(k.Work)
	return nil
}

// BatchKey is MultiTensorKey under the emitter's options.
func (e *Emitter) BatchKey(g *Group) string { return MultiTensorKey(g, e.opt) }
