// Package ptxemu runs PTX kernels on the CPU through the gpuocelot-based
// emulator of ../shared/tools/ptxemu, for the codegen tests of the cuda
// device on machines without a GPU. It is test support, not part of slc:
// the library is loaded at run time and tests skip when it is absent.
package ptxemu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef int (*run_fn)(const char *, int, void **, int, int, int, int, int, int, int, char *, int);

static int call_run(void *fn, const char *ptx, int n, unsigned long long *vals, int block, int grid,
		int shared, char *err, int errlen) {
	void *args[64];
	if (n > 64) return -1;
	for (int i = 0; i < n; i++) args[i] = (void *)(uintptr_t)vals[i];
	return ((run_fn)fn)(ptx, n, args, block, 1, 1, grid, 1, 1, shared, err, errlen);
}

static void *alloc_zero(size_t n) { return calloc(1, n ? n : 1); }
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"
)

// Emu is a loaded emulator. It runs one kernel at a time (gpuocelot is not
// safe for concurrent launches).
type Emu struct {
	mu  sync.Mutex
	run unsafe.Pointer
}

// Find returns the path of libptxemu.so: $SLC_PTXEMU, else
// shared/tools/ptxemu beside the repository (dir is a directory inside the
// repository, such as a test's working directory), or "" when neither exists.
func Find(dir string) string {
	if p := os.Getenv("SLC_PTXEMU"); p != "" {
		return p
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for d := abs; ; d = filepath.Dir(d) {
		for _, c := range []string{filepath.Join(d, "..", "shared", "tools", "ptxemu", "libptxemu.so"), filepath.Join(d, "shared", "tools", "ptxemu", "libptxemu.so")} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// Open loads the emulator library at path.
func Open(path string) (*Emu, error) {
	p := C.CString(path)
	defer C.free(unsafe.Pointer(p))
	h := C.dlopen(p, C.RTLD_NOW|C.RTLD_LOCAL)
	if h == nil {
		return nil, errors.New("dlopen " + path + ": " + C.GoString(C.dlerror()))
	}
	name := C.CString("ptxemu_run")
	defer C.free(unsafe.Pointer(name))
	fn := C.dlsym(h, name)
	if fn == nil {
		return nil, errors.New(path + ": no ptxemu_run")
	}
	return &Emu{run: fn}, nil
}

// Mem is host memory the emulated kernels may address: C memory, so that
// it never moves and may hold the addresses of other Mems (argument tables).
type Mem struct {
	p unsafe.Pointer
	n int
}

// Alloc returns n zeroed bytes of C memory; Free releases them.
func Alloc(n int) *Mem { return &Mem{C.alloc_zero(C.size_t(n)), n} }

// Free releases m.
func (m *Mem) Free() { C.free(m.p) }

// Bytes is m's memory as a Go slice (valid until Free).
func (m *Mem) Bytes() []byte { return unsafe.Slice((*byte)(m.p), m.n) }

// Addr is m's address as a kernel parameter value.
func (m *Mem) Addr() uint64 { return uint64(uintptr(m.p)) }

// Run launches the first .entry of ptx on a 1-D grid of grid blocks of
// block threads; args are the kernel's parameter values (Mem addresses or
// integers), in order (at most 64).
func (e *Emu) Run(ptx string, args []uint64, block, grid, sharedBytes int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(args) > 64 {
		return fmt.Errorf("ptxemu: %d kernel parameters, at most 64", len(args))
	}
	cptx := C.CString(ptx)
	defer C.free(unsafe.Pointer(cptx))
	vals := make([]C.ulonglong, max(1, len(args)))
	for i, a := range args {
		vals[i] = C.ulonglong(a)
	}
	var buf [8192]C.char
	if rc := C.call_run(e.run, cptx, C.int(len(args)), &vals[0], C.int(block), C.int(grid), C.int(sharedBytes), &buf[0], C.int(len(buf))); rc != 0 {
		return fmt.Errorf("ptxemu: %s", C.GoString(&buf[0]))
	}
	return nil
}
