// Package lower turns slc's IR into kernels, as LLVM IR: native x86-64 ones
// for the CPU, or NVPTX ones for the cuda device (Options.Device; see the
// CUDA ABI in codegen/gpu's entry.go).
//
// The unit of lowering is a Group: the nodes codegen runs as one kernel
// (an element-wise chain, a reduction closing one, or a single op such as a
// MatMul or a Softmax), with the buffers it reads and writes. Emitter.Lower
// adds the group's kernel functions to an LLVM module and returns a Lowering:
// the kernel calls to make, in order, and the transient buffers they share.
// Most groups are one call; an SLTrain layer (LowRankSparseAdd) is two or
// three, separated by the runtime's barrier between steps.
//
// # ABI
//
// Every kernel is an external C function
//
//	void kernel(void **args, int64_t tid, int64_t nthreads, void *scratch)
//
// where args[i] points at the i-th buffer of the call (Call.Args); buffers are
// 64-byte aligned, row-major and contiguous, and a scalar is a one-element
// buffer. Each of nthreads threads calls the kernel with its own tid (a call
// with tid or nthreads out of range does nothing) and its own scratch area of
// at least Lowering.ScratchBytes bytes; each does a disjoint share of the
// output, so no barrier is needed inside a call. (The cuda device's ABI is
// in codegen/gpu's entry.go: there the threads of a block may synchronize inside a call.)
//
// # What runs as one kernel
//
// The groups come from the passes package's fuse-groups analysis (the
// driver converts them): an element-wise DAG over one iteration space with
// its broadcast inputs and immediate constants is one loop (the innermost
// merged axis is a plain counted loop that LLVM vectorizes); a reduction
// consumes the element-wise chain producing its operand in the same loop
// (RMSNorm's x·x → mean); a final Reshape only relabels what is written; a
// Reshape of its own is a view and no kernel at all. Every other op is a
// kernel of its own: data movement (Expand, Transpose, Slice, Concat,
// Gather, ScatterAdd), Softmax, the cross-entropy and its gradient, RoPE,
// CausalMask, and the products (MatMul, Linear, LowRankSparseAdd), which
// call codegen/cpu's generated GEMMs on the CPU and the GPU GEMMs of
// codegen/gpu's gemm_tiled.go, gemm_mma.go and gemm_simt.go on the cuda device.
//
// # Backends
//
// The target's part of the lowering is a backend value chosen once, when
// NewEmitter reads Options.Device (backend.go): cpuBackend exports kernels
// with the ABI above and calls codegen/cpu's GEMMs; gpuBackend wraps
// codegen/gpu (the GPU's GEMMs, block rows and reductions, inline math,
// PTX entries and launch geometry). The shared lowering of every op asks
// it how to export a kernel, make and call a GEMM, map independent
// iterations to threads and reach a constant table, and picks an op's
// per-target lowering by its traits. Kernel bodies are built with
// codegen/kernel's Fn, which codegen/gpu and codegen/cpu use too.
//
// # Numerics
//
// Kernels compute in the value's dtype (f32 values in f32, so that every
// node's result is rounded as the reference interpreter rounds it; bf16
// values are loaded into f32, computed in f32 and rounded to bf16, ties to
// even, at every node, as PyTorch's bf16 kernels and the interpreter do) with the
// "contract" fast-math flag only: a·b + c may become one fma, nothing is
// reassociated. The sums of reductions and of softmax and cross-entropy
// denominators are accumulated in f64 (products accumulate in f32 in the
// GEMMs, ScatterAdd in the output's type), always in an order fixed by the
// shapes and the target's vector width and never by the thread count, so
// results are bit-identical from run to run and across thread counts. (On
// the cuda device the block-cooperative row reductions add their partial
// sums in an order fixed by the block size: bit-identical from run to run
// for a launch, within the last bits of the CPU's; see codegen/gpu's rows.go.) exp on
// f32 is an inline Cody–Waite + polynomial evaluation (within 2 ulp,
// vectorizable); log, pow and f64 exp are libm calls.
package lower

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// Kind says how a group is emitted; it mirrors passes.GroupKind.
type Kind uint8

// Group kinds.
const (
	// Elementwise is one loop over Space computing every node per element;
	// inputs with a smaller shape broadcast, Consts are immediates, and a
	// final Reshape only relabels the shape of what is written.
	Elementwise Kind = iota + 1
	// Reduce is element-wise nodes over Space ending in one reduction (the
	// last node), which consumes them as it goes.
	Reduce
	// Single is one node with a kernel of its own.
	Single
	// LinearCrossEntropy is a causal LM's loss head run in chunks of rows
	// (linear_xent.go): lm_head's product, the cross-entropy and, when
	// training, its gradient and lm_head's backward products.
	LinearCrossEntropy
	// Blockwise is element-wise work over the rows of Space = [R, C] with
	// per-row maxima and per-row values made from them, run a row at a
	// time in two sweeps (blockwise.go): the 8-bit optimizer's update.
	Blockwise
)

// Operand is a buffer a group reads or writes.
type Operand struct {
	Name string
	Type ir.Type
}

// indexByName maps each operand's name to its position in ops: a group's
// inputs or outputs, which lowerings address by index.
func indexByName(ops []Operand) map[string]int {
	m := make(map[string]int, len(ops))
	for i, o := range ops {
		m[o.Name] = i
	}
	return m
}

// Group is one kernel's worth of IR.
type Group struct {
	Kind  Kind
	Space []int // iteration space of Elementwise and Reduce groups
	// Nodes in topological order. Their inputs name either Inputs or
	// outputs of earlier nodes of the group.
	Nodes   []*ir.Node
	Inputs  []Operand // values read from buffers, in argument order
	Outputs []Operand // node outputs written to buffers, in argument order
	// InPlace maps an output index to the input index whose buffer it
	// overwrites (a state update written where the state lives). Only
	// element-wise and block-wise groups may write in place.
	InPlace map[int]int
	// Parts, of a Blockwise group, are the groups it was made of, in
	// order (passes.Group.Parts): the CPU runs them one by one per row.
	Parts [][]*ir.Node
}

// ArgKind says which list an Arg indexes.
type ArgKind uint8

// Argument kinds.
const (
	ArgInput  ArgKind = iota + 1 // Group.Inputs[Index]
	ArgOutput                    // Group.Outputs[Index]
	ArgTemp                      // Lowering.Temps[Index]
)

// Arg is one buffer passed to a kernel call.
type Arg struct {
	Kind  ArgKind
	Index int
}

// Call is one kernel invocation: every thread calls Kernel with Args.
type Call struct {
	Kernel string
	Args   []Arg
}

// Lowering is how to run a group: Calls in order, with a barrier between
// consecutive calls.
type Lowering struct {
	Calls []Call
	// Temps are transient buffers live only during the group's calls.
	Temps []ir.Type
	// ScratchBytes is the per-thread scratch every call needs at most.
	ScratchBytes int64
	// Note explains a choice worth reporting (the SLTrain lowering), or "".
	// It does not name the node: identical groups share one Lowering.
	Note string
}

// Options tune the lowering.
type Options struct {
	// SLTrainLowering picks how LowRankSparseAdd runs: "merged" (build W,
	// then one GEMM), "factored" (two thin GEMMs plus a sparse product) or
	// "auto" / "" (per layer: the faster in SLTrainTimes, else the cost
	// model of ChooseSLTrain).
	SLTrainLowering string
	// SLTrainTimes are measured kernel times of LowRankSparseAdd shapes on
	// the machine the code will run on (codegen's calibration): under auto,
	// a layer whose shape is here takes the faster lowering, any other the
	// cost model's pick.
	SLTrainTimes map[SLTrainShape]SLTrainTiming
	// Device is the target: "" or "cpu" for x86-64 kernels (the ABI above),
	// "cuda" for NVPTX kernels (see the CUDA ABI in codegen/gpu's entry.go). The module
	// and target machine must be the device's.
	Device string
	// GPUKernels picks the cuda device's matrix products (see codegen/gpu's gemmGPU) and
	// block reductions (see its blockReduce):
	// "" or "portable", the tiled shared-memory SIMT GEMM (any launch, and
	// the PTX emulator runs it); "tensorcore", mma.sync tensor-core GEMMs
	// (sm_80 and later) for products of two bf16 operands, the rest
	// portable; "simt", the plain one-element-per-thread loop (the
	// reference the others are checked against); "tensorcore-emulated",
	// for tests in the PTX emulator only, the tensor-core GEMMs with each
	// mma.sync emulated through shared memory (see emulateMMA). The block
	// reductions of the row kernels are a shared-memory tree (portable,
	// simt) or, with "tensorcore", warp shuffles within each warp and
	// shared memory across warps ("tensorcore-emulated": each shuffle
	// emulated through shared memory, emulateShuffle).
	GPUKernels string
	// XentChunkRows is the rows per chunk of a LinearCrossEntropy group;
	// 0 picks DefaultXentChunkElems / V (tests set it to cover chunking).
	XentChunkRows int64
	// GPUOneTensor keeps the cuda design before grid-wide sums (one block
	// per reduced output however long), for comparisons (codegen's
	// Options.GPUOneTensor).
	GPUOneTensor bool
}

// Emitter adds kernels to one LLVM module for one target machine. Kernels
// are deduplicated: a group with the same ops, attributes, shapes and
// in-place pattern as an earlier one reuses its functions. An Emitter is not
// safe for concurrent use.
type Emitter struct {
	*kernel.Types // the module and its types
	opt           Options
	arch          cpu.Arch
	gen           *cpu.Generator

	b  *llvm.Builder
	ab *llvm.Builder // positioned in the current function's alloca block
	// be is the target's backend, chosen once from Options.Device, and tr
	// its traits.
	be backend
	tr traits
	// dev is the cuda device's kernel pieces, which the GPU's own op
	// lowerings (those the traits pick) use; nil on the CPU.
	dev *gpu.Backend

	done map[string]*Lowering // by group signature
	// launches are the cuda kernels' launch geometries, by kernel name;
	launches map[string]Launch
	// capture, when set, makes kernel record a body instead of defining
	// it (MultiTensor).
	capture  *captured
	mtDone   map[string]string     // multi-tensor kernels by their groups' signatures
	instDone map[string]string     // instanced entries by their parts (Instances)
	firsts   map[string][]int      // each kernel's body parameters' first arguments (Instances)
	gemms    map[string]cpu.Kernel // by GEMM spec
	tables   map[string]*table     // constant tables by name
	decls    map[string]llvm.Function
	order    []string // table names in creation order
	names    map[string]bool
}

// NewEmitter prepares an emitter for module m, which must be configured for
// tm (llvm.Module.ConfigureFor).
func NewEmitter(m llvm.Module, tm llvm.TargetMachine, opt Options) (*Emitter, error) {
	switch opt.SLTrainLowering {
	case "", "auto", "merged", "factored":
	default:
		return nil, fmt.Errorf("SLTrain lowering %q: want merged, factored or auto", opt.SLTrainLowering)
	}
	ctx := m.Context()
	e := &Emitter{
		Types: kernel.NewTypes(m), opt: opt,
		gen:      cpu.NewGenerator(tm),
		done:     map[string]*Lowering{},
		launches: map[string]Launch{},
		mtDone:   map[string]string{},
		instDone: map[string]string{},
		firsts:   map[string][]int{},
		gemms:    map[string]cpu.Kernel{},
		tables:   map[string]*table{},
		decls:    map[string]llvm.Function{},
		names:    map[string]bool{},
	}
	e.arch = e.gen.Arch
	e.b = ctx.NewBuilder()
	e.ab = ctx.NewBuilder()
	be, err := newBackend(e, opt)
	if err != nil {
		e.Dispose()
		return nil, err
	}
	e.be, e.tr, e.dev = be, be.traits(), be.device()
	return e, nil
}

// Dispose frees the emitter's builders (not the module).
func (e *Emitter) Dispose() {
	e.b.Dispose()
	e.ab.Dispose()
}

// Lower emits the kernels of g (or finds them from an identical earlier
// group) and returns how to call them.
func (e *Emitter) Lower(g *Group) (*Lowering, error) {
	if err := check(g); err != nil {
		return nil, err
	}
	sig := signature(g, e.opt)
	if l := e.done[sig]; l != nil {
		return l, nil
	}
	name := e.symbol(tag(g), sig)
	var l *Lowering
	var err error
	switch g.Kind {
	case Elementwise:
		l, err = e.elementwise(name, g)
	case Reduce:
		l, err = e.reduce(name, g)
	case Single:
		l, err = e.single(name, g)
	case LinearCrossEntropy:
		l, err = e.linearCrossEntropy(name, g)
	case Blockwise:
		l, err = e.blockwise(name, g)
	default:
		err = fmt.Errorf("unknown group kind %d", g.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", describe(g), err)
	}
	e.done[sig] = l
	return l, nil
}

// Kernels is the number of distinct groups lowered so far.
func (e *Emitter) Kernels() int { return len(e.done) }

// single dispatches a one-node group to its op's emitter.
func (e *Emitter) single(name string, g *Group) (*Lowering, error) {
	n := g.Nodes[0]
	switch n.Op {
	case "MatMul":
		return e.matMul(name, g)
	case "Linear":
		return e.linear(name, g)
	case "LowRankSparseAdd":
		return e.lowRankSparseAdd(name, g)
	case "Reshape", "Expand", "Transpose", "Slice", "Concat":
		return e.movement(name, g)
	case "Gather":
		return e.gather(name, g)
	case "ScatterAdd":
		return e.scatterAdd(name, g)
	case "Softmax":
		return e.softmax(name, g)
	case "SoftmaxCrossEntropy", "SoftmaxCrossEntropyGrad":
		return e.crossEntropy(name, g)
	case "RoPE":
		return e.rope(name, g)
	case "CausalMask":
		return e.causalMask(name, g)
	case "AbsMaxLast":
		return e.absMaxLast(name, g)
	case "ReduceSum", "ReduceMean":
		return e.reduce(name, &Group{Kind: Reduce, Space: g.Inputs[0].Type.Shape, Nodes: g.Nodes, Inputs: g.Inputs, Outputs: g.Outputs})
	}
	if d := ir.Lookup(n.Op); d != nil && (d.Category == ir.CatUnary || d.Category == ir.CatBinary) || n.Op == "Const" {
		return e.elementwise(name, &Group{Kind: Elementwise, Space: n.Outputs[0].Type.Shape, Nodes: g.Nodes, Inputs: g.Inputs, Outputs: g.Outputs, InPlace: g.InPlace})
	}
	return nil, fmt.Errorf("no CPU kernel for op %q", n.Op)
}

// check validates the wiring of a group: every node input is a group input
// or an earlier node's output, every output is defined, one output per node.
func check(g *Group) error {
	if len(g.Nodes) == 0 {
		return fmt.Errorf("empty group")
	}
	if len(g.Outputs) == 0 {
		return fmt.Errorf("the group writes nothing")
	}
	if g.Kind == Single && len(g.Nodes) != 1 {
		return fmt.Errorf("a single-op group holds %d nodes", len(g.Nodes))
	}
	known := map[string]ir.Type{}
	for _, in := range g.Inputs {
		known[in.Name] = in.Type
	}
	for _, n := range g.Nodes {
		if len(n.Outputs) != 1 {
			return fmt.Errorf("%s: %d outputs (kernels handle one)", n, len(n.Outputs))
		}
		for _, v := range n.Inputs {
			if _, ok := known[v]; !ok {
				return fmt.Errorf("%s reads %q, which is neither a group input nor computed before it", n, v)
			}
		}
		known[n.Outputs[0].Name] = n.Outputs[0].Type
	}
	for _, o := range g.Outputs {
		t, ok := known[o.Name]
		if !ok {
			return fmt.Errorf("output %q is not computed by the group", o.Name)
		}
		if !t.Equal(o.Type) {
			return fmt.Errorf("output %q is %v, the group computes %v", o.Name, o.Type, t)
		}
	}
	for o, i := range g.InPlace {
		if o < 0 || o >= len(g.Outputs) || i < 0 || i >= len(g.Inputs) {
			return fmt.Errorf("in-place pair %d→%d out of range", o, i)
		}
		if g.Outputs[o].Type.Bytes() != g.Inputs[i].Type.Bytes() {
			return fmt.Errorf("output %q written in place of %q of another size", g.Outputs[o].Name, g.Inputs[i].Name)
		}
	}
	return nil
}

// signature is a canonical text of everything the generated code depends
// on: values are renamed by position, so two layers with the same shapes
// share kernels.
func signature(g *Group, opt Options) string {
	var sb strings.Builder
	local := map[string]string{}
	fmt.Fprintf(&sb, "kind=%d space=%v sl=%s\n", g.Kind, g.Space, opt.SLTrainLowering)
	if g.Kind == LinearCrossEntropy {
		fmt.Fprintf(&sb, "chunk rows %d\n", opt.XentChunkRows)
	}
	for i, in := range g.Inputs {
		local[in.Name] = fmt.Sprintf("i%d", i)
		fmt.Fprintf(&sb, "in %v\n", in.Type)
	}
	for k, n := range g.Nodes {
		local[n.Outputs[0].Name] = fmt.Sprintf("n%d", k)
		fmt.Fprintf(&sb, "%s(", n.Op)
		for j, v := range n.Inputs {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(local[v])
		}
		fmt.Fprintf(&sb, ") -> %v {", n.Outputs[0].Type)
		for _, k := range n.Attrs.Keys() {
			a := n.Attrs[k]
			fmt.Fprintf(&sb, "%s:%d:%s;", k, a.Kind, a.String())
			if a.Kind == ir.AttrFloat {
				fmt.Fprintf(&sb, "%x;", a.Float) // exact bits, not a rounded print
			}
		}
		sb.WriteString("}\n")
	}
	for _, part := range g.Parts {
		sb.WriteString("part")
		for _, n := range part {
			fmt.Fprintf(&sb, " %s", local[n.Outputs[0].Name])
		}
		sb.WriteByte('\n')
	}
	for i, o := range g.Outputs {
		fmt.Fprintf(&sb, "out %s", local[o.Name])
		if j, ok := g.InPlace[i]; ok {
			fmt.Fprintf(&sb, " inplace=i%d", j)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

// tag is a short readable part of a kernel's symbol.
func tag(g *Group) string {
	switch g.Kind {
	case Elementwise:
		return "ew"
	case Reduce:
		return "red"
	case LinearCrossEntropy:
		return "linearxent" // its kernels: <symbol>_fwd_c<chunk>, _rows_c…, _bwd_c…, _dw
	case Blockwise:
		return "blocks"
	}
	return strings.ToLower(g.Nodes[0].Op)
}

// symbol returns a fresh C symbol "slc_<tag>_<hash>" for a signature.
func (e *Emitter) symbol(tag, sig string) string {
	h := sha256.Sum256([]byte(sig))
	base := "slc_" + tag + "_" + hex.EncodeToString(h[:6])
	name := base
	for i := 2; e.names[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	e.names[name] = true
	return name
}

// describe names a group for error messages.
func describe(g *Group) string {
	ops := make([]string, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		ops = append(ops, n.String())
	}
	if len(ops) > 4 {
		ops = append(ops[:4], "…")
	}
	return "kernel {" + strings.Join(ops, "; ") + "}"
}

// inputsAndOutputs is the argument list of a one-call group: inputs, then
// outputs.
func inputsAndOutputs(g *Group) []Arg {
	args := make([]Arg, 0, len(g.Inputs)+len(g.Outputs))
	for i := range g.Inputs {
		args = append(args, Arg{ArgInput, i})
	}
	for i := range g.Outputs {
		args = append(args, Arg{ArgOutput, i})
	}
	return args
}
