package llvm

/*
#cgo CXXFLAGS: -I/usr/lib/llvm-19/include -std=c++17 -fno-exceptions -fno-rtti -D__STDC_CONSTANT_MACROS -D__STDC_FORMAT_MACROS -D__STDC_LIMIT_MACROS
#include <stdlib.h>
#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

// slcInitTargets registers the x86 and NVPTX back ends. The LLVMInitialize*
// functions are plain symbols of libLLVM; NVPTX has no asm parser.
static void slcInitTargets(void) {
	LLVMInitializeX86TargetInfo();
	LLVMInitializeX86Target();
	LLVMInitializeX86TargetMC();
	LLVMInitializeX86AsmPrinter();
	LLVMInitializeX86AsmParser();
	LLVMInitializeNVPTXTargetInfo();
	LLVMInitializeNVPTXTarget();
	LLVMInitializeNVPTXTargetMC();
	LLVMInitializeNVPTXAsmPrinter();
}

// slcTargetMachineEnabledFeatures is in subtarget.cpp.
char *slcTargetMachineEnabledFeatures(LLVMTargetMachineRef tm);
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

var initOnce sync.Once

// InitializeTargets registers the x86-64 and NVPTX back ends. It is safe to
// call more than once and from several goroutines; TargetFromTriple calls it.
func InitializeTargets() { initOnce.Do(func() { C.slcInitTargets() }) }

// DefaultTargetTriple returns the triple LLVM was built for, normally the
// host's, e.g. "x86_64-pc-linux-gnu".
func DefaultTargetTriple() string { return takeMessage(C.LLVMGetDefaultTargetTriple()) }

// HostCPUName returns the host CPU's name, e.g. "skylake-avx512".
func HostCPUName() string { return takeMessage(C.LLVMGetHostCPUName()) }

// HostCPUFeatures returns the host CPU's features as "+avx2,-avx512f,...".
func HostCPUFeatures() string { return takeMessage(C.LLVMGetHostCPUFeatures()) }

// HasFeature reports whether a feature string such as HostCPUFeatures()
// enables feature (given without sign, e.g. "avx2").
func HasFeature(features, feature string) bool {
	for _, f := range strings.Split(features, ",") {
		if f == "+"+feature {
			return true
		}
	}
	return false
}

// Target is a registered back end, such as x86-64 or nvptx64.
type Target struct{ c C.LLVMTargetRef }

// TargetFromTriple returns the back end for triple, or an error naming the
// triple when none is registered.
func TargetFromTriple(triple string) (Target, error) {
	InitializeTargets()
	t := cstr(triple)
	defer freeStr(t)
	var ref C.LLVMTargetRef
	var msg *C.char
	failed := C.LLVMGetTargetFromTriple(t, &ref, &msg)
	s := takeMessage(msg)
	if failed != 0 {
		return Target{}, fmt.Errorf("llvm: target %q: %s", triple, strings.TrimSpace(s))
	}
	return Target{ref}, nil
}

// CodeGenOptLevel is the back end's optimization level, as in
// LLVMCodeGenOptLevel.
type CodeGenOptLevel int

// Code generation levels (-O0 to -O3).
const (
	CodeGenNone       CodeGenOptLevel = C.LLVMCodeGenLevelNone
	CodeGenLess       CodeGenOptLevel = C.LLVMCodeGenLevelLess
	CodeGenDefault    CodeGenOptLevel = C.LLVMCodeGenLevelDefault
	CodeGenAggressive CodeGenOptLevel = C.LLVMCodeGenLevelAggressive
)

// RelocMode is the relocation model, as in LLVMRelocMode.
type RelocMode int

// Relocation models; shared objects need RelocPIC.
const (
	RelocDefault      RelocMode = C.LLVMRelocDefault
	RelocStatic       RelocMode = C.LLVMRelocStatic
	RelocPIC          RelocMode = C.LLVMRelocPIC
	RelocDynamicNoPIC RelocMode = C.LLVMRelocDynamicNoPic
)

// CodeModel bounds the size of code and data, as in LLVMCodeModel.
type CodeModel int

// Code models.
const (
	CodeModelDefault CodeModel = C.LLVMCodeModelDefault
	CodeModelSmall   CodeModel = C.LLVMCodeModelSmall
	CodeModelKernel  CodeModel = C.LLVMCodeModelKernel
	CodeModelMedium  CodeModel = C.LLVMCodeModelMedium
	CodeModelLarge   CodeModel = C.LLVMCodeModelLarge
)

// MachineOptions configure a TargetMachine. The zero value means generic
// CPU, no extra features, -O0, default relocation and code model.
type MachineOptions struct {
	CPU       string // e.g. "skylake-avx512", "sm_90"; "" for generic
	Features  string // e.g. "+avx2,+fma" or "+ptx80"
	OptLevel  CodeGenOptLevel
	Reloc     RelocMode
	CodeModel CodeModel
}

// TargetMachine generates code for one triple, CPU and feature set. It is
// not safe for concurrent use.
type TargetMachine struct{ c C.LLVMTargetMachineRef }

// NewTargetMachine creates a machine for triple with options o. Dispose it
// when done.
func NewTargetMachine(triple string, o MachineOptions) (TargetMachine, error) {
	t, err := TargetFromTriple(triple)
	if err != nil {
		return TargetMachine{}, err
	}
	tr, cpu, feat := cstr(triple), cstr(o.CPU), cstr(o.Features)
	defer freeStr(tr)
	defer freeStr(cpu)
	defer freeStr(feat)
	tm := C.LLVMCreateTargetMachine(t.c, tr, cpu, feat,
		C.LLVMCodeGenOptLevel(o.OptLevel), C.LLVMRelocMode(o.Reloc), C.LLVMCodeModel(o.CodeModel))
	if tm == nil {
		return TargetMachine{}, fmt.Errorf("llvm: cannot create target machine for %q (cpu %q)", triple, o.CPU)
	}
	return TargetMachine{tm}, nil
}

// NewHostTargetMachine creates a machine for the host's triple, CPU and
// features, generating position-independent code at level opt, as needed
// for kernels linked into shared objects and loaded by the runtime.
func NewHostTargetMachine(opt CodeGenOptLevel) (TargetMachine, error) {
	return NewTargetMachine(DefaultTargetTriple(), MachineOptions{
		CPU:      HostCPUName(),
		Features: HostCPUFeatures(),
		OptLevel: opt,
		Reloc:    RelocPIC,
	})
}

// IsNil reports whether tm is the zero TargetMachine.
func (tm TargetMachine) IsNil() bool { return tm.c == nil }

// Dispose frees the machine.
func (tm TargetMachine) Dispose() { C.LLVMDisposeTargetMachine(tm.c) }

// Triple returns the machine's target triple.
func (tm TargetMachine) Triple() string { return takeMessage(C.LLVMGetTargetMachineTriple(tm.c)) }

// CPU returns the machine's CPU name.
func (tm TargetMachine) CPU() string { return takeMessage(C.LLVMGetTargetMachineCPU(tm.c)) }

// Features returns the machine's feature string.
func (tm TargetMachine) Features() string {
	return takeMessage(C.LLVMGetTargetMachineFeatureString(tm.c))
}

// EnabledFeatures returns every feature the machine's subtarget enables,
// "+name,+name,…" in LLVM's table order: those its CPU name implies as well
// as those given by hand (Features returns only the latter). Tuning flags
// ("fast-gather", "slow-3ops-lea") are subtarget features too and are
// included; callers that want instruction-set extensions filter them.
func (tm TargetMachine) EnabledFeatures() string {
	return takeMessage(C.slcTargetMachineEnabledFeatures(tm.c))
}

// DataLayout returns the data layout string modules for this machine use.
func (tm TargetMachine) DataLayout() string {
	td := C.LLVMCreateTargetDataLayout(tm.c)
	defer C.LLVMDisposeTargetData(td)
	return takeMessage(C.LLVMCopyStringRepOfTargetData(td))
}

// FileType selects what Emit produces.
type FileType int

// Output kinds: textual assembly (PTX on NVPTX) or an object file.
const (
	AssemblyFile FileType = C.LLVMAssemblyFile
	ObjectFile   FileType = C.LLVMObjectFile
)

// Emit generates code for m and returns it. Code generation runs passes
// that may rewrite m's IR, so print or verify m before emitting.
func (tm TargetMachine) Emit(m Module, ft FileType) ([]byte, error) {
	var msg *C.char
	var buf C.LLVMMemoryBufferRef
	failed := C.LLVMTargetMachineEmitToMemoryBuffer(tm.c, m.c, C.LLVMCodeGenFileType(ft), &msg, &buf)
	s := takeMessage(msg)
	if failed != 0 {
		if buf != nil {
			C.LLVMDisposeMemoryBuffer(buf)
		}
		return nil, errors.New("llvm: emit: " + strings.TrimSpace(s))
	}
	defer C.LLVMDisposeMemoryBuffer(buf)
	start := C.LLVMGetBufferStart(buf)
	size := C.LLVMGetBufferSize(buf)
	return C.GoBytes(unsafe.Pointer(start), C.int(size)), nil
}

// EmitToFile generates code for m into the file at path, like Emit.
func (tm TargetMachine) EmitToFile(m Module, path string, ft FileType) error {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	var msg *C.char
	failed := C.LLVMTargetMachineEmitToFile(tm.c, m.c, p, C.LLVMCodeGenFileType(ft), &msg)
	s := takeMessage(msg)
	if failed != 0 {
		return fmt.Errorf("llvm: emit %s: %s", path, strings.TrimSpace(s))
	}
	return nil
}
