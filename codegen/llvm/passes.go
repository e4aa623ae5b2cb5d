package llvm

/*
#include <stdlib.h>
#include <llvm-c/Core.h>
#include <llvm-c/Transforms/PassBuilder.h>
*/
import "C"

// PassOptions tune the new pass manager's pipelines.
type PassOptions struct {
	LoopVectorize  bool // loop vectorizer
	SLPVectorize   bool // straight-line (SLP) vectorizer
	LoopUnroll     bool // loop unrolling
	LoopInterleave bool // interleaving of vectorized loops
	VerifyEach     bool // run the verifier after every pass (slow; for debugging)
}

// DefaultPassOptions turns on vectorization and unrolling, as clang -O3
// does; the C API's own defaults leave them off.
func DefaultPassOptions() PassOptions {
	return PassOptions{LoopVectorize: true, SLPVectorize: true, LoopUnroll: true, LoopInterleave: true}
}

// RunPasses runs the new pass manager pipeline (e.g. "default<O3>") over m.
// tm, if not the zero TargetMachine, supplies the target's cost model so
// the vectorizer picks the right widths; configure m for tm first.
func (m Module) RunPasses(pipeline string, tm TargetMachine, o PassOptions) error {
	opts := C.LLVMCreatePassBuilderOptions()
	defer C.LLVMDisposePassBuilderOptions(opts)
	C.LLVMPassBuilderOptionsSetLoopVectorization(opts, llvmBool(o.LoopVectorize))
	C.LLVMPassBuilderOptionsSetSLPVectorization(opts, llvmBool(o.SLPVectorize))
	C.LLVMPassBuilderOptionsSetLoopUnrolling(opts, llvmBool(o.LoopUnroll))
	C.LLVMPassBuilderOptionsSetLoopInterleaving(opts, llvmBool(o.LoopInterleave))
	C.LLVMPassBuilderOptionsSetVerifyEach(opts, llvmBool(o.VerifyEach))
	p := cstr(pipeline)
	defer freeStr(p)
	if err := takeError(C.LLVMRunPasses(m.c, p, tm.c, opts)); err != nil {
		return &passError{pipeline, err}
	}
	return nil
}

// passError wraps a pass-pipeline failure with the pipeline text.
type passError struct {
	pipeline string
	err      error
}

func (e *passError) Error() string { return "llvm: passes " + e.pipeline + ": " + e.err.Error() }
func (e *passError) Unwrap() error { return e.err }
