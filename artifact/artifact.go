// Package artifact defines the .slc file: everything the runtime needs to train
// or run a compiled model, and nothing that needs LLVM to use. The compiler
// (package codegen) writes it; the runtime reads it. It imports only ir (for
// types and the embedded module), so the runtime stays LLVM-free.
//
// Execution model. A Program is a list of Steps run in order. Each Step calls
// one native kernel from Code with the uniform C ABI
//
//	void kernel(void **args, int64_t tid, int64_t nthreads, void *scratch)
//
// where args[i] points at the buffer of slot Step.Args[i]; every one of the
// nthreads threads calls the kernel with its own tid and its own scratch area
// (ScratchBytes each), the kernel does its share of the work, and the runtime
// waits for all threads before the next step (a barrier between steps, none
// inside one). Scalars (learning rate, step, …) are one-element buffers.
//
// A cuda artifact (Target.Kind "cuda") has the same programs over PTX: each
// step is one launch of the PTX entry Step.Kernel(args, scratch, stride)
// (see codegen/lower's CUDA ABI) with args in device memory, on the launch
// geometry the compiler chose for that kernel's shape (Step.Grid, Block,
// SharedBytes, ScratchBytes); the end of a launch is the barrier. A step
// without a geometry (Grid 0: files of slc before per-kernel geometry) runs
// on the runtime's one launch for every kernel, the device's Geometry capped
// by the program's scratch — every kernel is correct on any launch.
package artifact

import "gitee.com/gidean/conv-linn/ir"

// FileIdentifier is the FlatBuffers file identifier of a .slc file.
const FileIdentifier = "SLCA"

// Artifact is a compiled model.
type Artifact struct {
	// CompilerVersion is the slc version that wrote the file; the runtime
	// refuses files from another version.
	CompilerVersion string
	Target          Target
	// Module is the compiled module in ir's binary form: the graphs after the
	// pass pipeline, with parameter names, types and init specs, and metadata
	// (model config, SLTrain settings).
	Module []byte
	// Programs are the runnable forms of the module's graphs.
	Programs []*Program
	// Code is the native code: an ELF shared object for a CPU target, PTX
	// text for a cuda one.
	Code []byte
	// CodeSHA256 is the SHA-256 of Code that the file records; Unmarshal
	// sets it (Marshal computes its own), and the runtime checks Code against
	// it before mapping it (CheckCode). Zero for an artifact never stored.
	CodeSHA256 [32]byte
}

// Target says what the native code runs on.
type Target struct {
	Kind     string // "cpu" (x86-64) or "cuda" (NVPTX)
	Triple   string
	CPU      string
	Features string
}

// SlotKind says where a slot's buffer lives.
type SlotKind uint8

// Slot kinds.
const (
	SlotState  SlotKind = iota + 1 // a persistent tensor owned by the runtime, shared by all programs by name
	SlotData                       // a per-call input bound by the caller (token ids)
	SlotScalar                     // a per-call runtime scalar (lr, step, …), one element
	SlotArena                      // an intermediate at Offset in the program's arena
)

// Slot is one buffer a program touches.
type Slot struct {
	Name   string
	Type   ir.Type
	Kind   SlotKind
	Offset int64 // SlotArena only: byte offset in the arena (64-byte aligned)
}

// Step calls one kernel.
type Step struct {
	Kernel string  // symbol in Code
	Args   []int32 // slot indices, in the kernel's argument order
	// Label names the step for people (profiles): the layer, the direction
	// (forward, dx, dW, backward, update) and the op, such as
	// "layers.3.mlp.up_proj dW". Kernels are shared by identical layers, so
	// Kernel alone does not say which layer a step is. "" in files written
	// before labels existed.
	Label string
	// The cuda launch (all 0 on the CPU, and in cuda files without a
	// per-kernel geometry): Grid blocks of Block threads, SharedBytes of
	// dynamic shared memory, ScratchBytes of global scratch per thread.
	Grid, Block, SharedBytes int32
	ScratchBytes             int64
	// The kernel's work as the lowering counts it, for performance models
	// (package roofline; 0 where not counted): Flops floating-point
	// operations (a product's 2·M·N·K, an element-wise chain's nodes per
	// element), Bytes the sizes of the buffers it reads and writes (each
	// once), TensorCore when its products run on tensor cores.
	Flops, Bytes int64
	TensorCore   bool
}

// Launch limits a cuda step's geometry must respect (CUDA's: 2³¹−1 blocks
// in x, 1024 threads per block, 227 KB of shared memory per block on
// sm_90; MaxScratchBytes bounds one launch's scratch areas together).
const (
	MaxBlock        = 1024
	MaxSharedBytes  = 227 << 10
	MaxScratchBytes = 1 << 30
)

// Output is a program result. When Updates is set, the runtime copies the
// slot into that state tensor after the run (nothing to do when Slot is the
// state's own slot, i.e. the kernels updated it in place).
type Output struct {
	Name    string
	Slot    int32
	Updates string
}

// Program is the runnable form of one graph.
type Program struct {
	Name         string
	ArenaBytes   int64
	ScratchBytes int64 // per thread
	Slots        []Slot
	Steps        []Step
	Outputs      []Output
}

// Program returns the program of that name, or nil.
func (a *Artifact) Program(name string) *Program {
	for _, p := range a.Programs {
		if p.Name == name {
			return p
		}
	}
	return nil
}
