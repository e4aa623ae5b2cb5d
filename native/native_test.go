package native

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// TestAlloc checks alignment, zeroing and the refusal of a negative size.
func TestAlloc(t *testing.T) {
	for _, align := range []int{8, 64, 4096} {
		p, err := Alloc(100, align)
		if err != nil {
			t.Fatal(err)
		}
		if uintptr(p)%uintptr(align) != 0 {
			t.Errorf("Alloc(100, %d) = %p, not aligned", align, p)
		}
		for i, b := range unsafe.Slice((*byte)(p), 100) {
			if b != 0 {
				t.Fatalf("byte %d = %d, want zeroed memory", i, b)
			}
		}
		Free(p)
	}
	if _, err := Alloc(-1, 64); err == nil {
		t.Error("Alloc(-1): no error")
	}
	b, err := NewBuffer(3)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Bytes()) != 3 || uintptr(b.Ptr())%64 != 0 {
		t.Errorf("NewBuffer(3): %d bytes at %p", len(b.Bytes()), b.Ptr())
	}
	b.Free()
	b.Free() // a second Free is harmless
	if _, err := NewBuffer(-5); err == nil {
		t.Error("NewBuffer(-5): no error")
	}
}

// TestKernel builds a two-argument kernel with the system C compiler, loads
// it and calls it through the artifact's ABI from two threads' ids.
func TestKernel(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "k.c")
	const code = `#include <stdint.h>
void k(void **args, int64_t tid, int64_t nthreads, void *scratch) {
	float *y = args[0]; const float *x = args[1];
	for (int64_t i = tid; i < 8; i += nthreads) y[i] = 2 * x[i] + (scratch != 0);
}`
	if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	so := filepath.Join(dir, "k.so")
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", so, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	lib, err := Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if _, err := lib.Sym("no_such_kernel"); err == nil || !strings.Contains(err.Error(), `symbol "no_such_kernel" not found`) {
		t.Errorf("a missing symbol: error %v", err)
	}
	fn, err := lib.Sym("k")
	if err != nil {
		t.Fatal(err)
	}
	y, _ := NewBuffer(32)
	x, _ := NewBuffer(32)
	scratch, _ := NewBuffer(64)
	defer y.Free()
	defer x.Free()
	defer scratch.Free()
	xs := unsafe.Slice((*float32)(x.Ptr()), 8)
	for i := range xs {
		xs[i] = float32(i)
	}
	a := NewArgs([]unsafe.Pointer{y.Ptr(), x.Ptr()})
	defer a.Free()
	Call(fn, a, 0, 2, scratch)
	Call(fn, a, 1, 2, nil)
	ys := unsafe.Slice((*float32)(y.Ptr()), 8)
	for i, v := range ys {
		want := float32(2*i) + float32(1-i%2) // thread 0 (even i) had scratch
		if v != want {
			t.Errorf("y[%d] = %v, want %v", i, v, want)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing.so")); err == nil || !strings.Contains(err.Error(), "missing.so") {
		t.Errorf("a missing file: error %v", err)
	}
}
