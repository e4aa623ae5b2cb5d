package codegen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/hostcpu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/native"
)

// The test harness runs artifacts in-process the way the runtime will:
// state, data and scalars bound by name, one arena per run (poisoned with
// NaN before every run, so a kernel that reads what nobody wrote shows up),
// per-thread scratch (poisoned too), every step called by nthreads
// goroutines concurrently with a barrier between steps, and state updates
// copied back after the run.

// machine is a loaded artifact.
type machine struct {
	art *artifact.Artifact
	lib *native.Lib
	fns map[string]unsafe.Pointer
}

// load writes the artifact's code to a temporary file and opens it.
func load(t testing.TB, art *artifact.Artifact) *machine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kernels.so")
	if err := os.WriteFile(path, art.Code, 0o644); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(art.Target.Features, "+amx-tile") {
		// Its GEMMs run on AMX tiles: the process needs the tile state,
		// as package runtime asks for it.
		if err := hostcpu.RequestAMX(); err != nil {
			t.Skipf("artifact uses AMX tiles, the host refuses them: %v", err)
		}
	}
	lib, err := native.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	m := &machine{art: art, lib: lib, fns: map[string]unsafe.Pointer{}}
	for _, p := range art.Programs {
		for _, s := range p.Steps {
			if m.fns[s.Kernel] != nil {
				continue
			}
			f, err := lib.Sym(s.Kernel)
			if err != nil {
				t.Fatal(err)
			}
			m.fns[s.Kernel] = f
		}
	}
	return m
}

// program returns the program called name.
func (m *machine) program(t testing.TB, name string) *artifact.Program {
	t.Helper()
	for _, p := range m.art.Programs {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no program %q", name)
	return nil
}

// poison fills b with f32 quiet NaNs (an f64 NaN too, read in pairs).
func poison(b []byte) {
	for i := 0; i+4 <= len(b); i += 4 {
		binary.LittleEndian.PutUint32(b[i:], 0x7fc00000)
	}
}

// run executes program name once with nthreads threads. values binds every
// state, data and scalar slot by name; state tensors are updated in place
// (as the runtime does) and the program's outputs are returned by name.
func (m *machine) run(t testing.TB, name string, values map[string]*interp.Tensor, nthreads int) map[string]*interp.Tensor {
	t.Helper()
	p := m.program(t, name)
	arena, err := native.NewBuffer(p.ArenaBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Free()
	poison(arena.Bytes())
	bound := map[string]*native.Buffer{}
	defer func() {
		for _, b := range bound {
			b.Free()
		}
	}()
	ptrs := make([]unsafe.Pointer, len(p.Slots))
	for i, s := range p.Slots {
		switch s.Kind {
		case artifact.SlotArena:
			if s.Offset%64 != 0 || s.Offset+s.Type.Bytes() > p.ArenaBytes {
				t.Fatalf("slot %q: offset %d (+%d bytes) outside the %d-byte arena or unaligned", s.Name, s.Offset, s.Type.Bytes(), p.ArenaBytes)
			}
			ptrs[i] = unsafe.Add(arena.Ptr(), s.Offset)
		default:
			b := bound[s.Name]
			if b == nil {
				v := values[s.Name]
				if v == nil {
					t.Fatalf("program %s: slot %q (%v) is not bound", name, s.Name, s.Type)
				}
				if !v.Type.Equal(s.Type) {
					t.Fatalf("slot %q is %v, bound to %v", s.Name, s.Type, v.Type)
				}
				if b, err = native.NewBuffer(s.Type.Bytes()); err != nil {
					t.Fatal(err)
				}
				copy(b.Bytes(), tensorBytes(v))
				bound[s.Name] = b
			}
			ptrs[i] = b.Ptr()
		}
	}
	scratch := make([]*native.Buffer, nthreads)
	for i := range scratch {
		if scratch[i], err = native.NewBuffer(p.ScratchBytes); err != nil {
			t.Fatal(err)
		}
		poison(scratch[i].Bytes())
		defer scratch[i].Free()
	}
	for _, st := range p.Steps {
		args := make([]unsafe.Pointer, len(st.Args))
		for i, a := range st.Args {
			args[i] = ptrs[a]
		}
		a := native.NewArgs(args)
		fn := m.fns[st.Kernel]
		var wg sync.WaitGroup
		for tid := 0; tid < nthreads; tid++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				native.Call(fn, a, tid, nthreads, scratch[tid])
			}()
		}
		wg.Wait()
		a.Free()
	}
	outs := map[string]*interp.Tensor{}
	for _, o := range p.Outputs {
		s := p.Slots[o.Slot]
		outs[o.Name] = tensorFrom(s.Type, unsafe.Slice((*byte)(ptrs[o.Slot]), s.Type.Bytes()))
	}
	for _, o := range p.Outputs {
		if o.Updates != "" {
			values[o.Updates] = outs[o.Name].Clone()
		}
	}
	return outs
}

// tensorBytes is v's little-endian storage in its dtype.
func tensorBytes(v *interp.Tensor) []byte {
	d := v.Type.DType
	n := int(v.Type.NumElements())
	b := make([]byte, n*d.Size())
	for i := 0; i < n; i++ {
		switch d {
		case ir.F32:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v.F[i])))
		case ir.F64:
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v.F[i]))
		case ir.BF16:
			binary.LittleEndian.PutUint16(b[2*i:], ir.BF16FromFloat32(float32(v.F[i])))
		case ir.I32:
			binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(v.I[i])))
		case ir.I64:
			binary.LittleEndian.PutUint64(b[8*i:], uint64(v.I[i]))
		case ir.U8:
			b[i] = uint8(v.I[i])
		default:
			panic("tensorBytes: dtype " + d.String())
		}
	}
	return b
}

// tensorFrom decodes storage of type t.
func tensorFrom(t ir.Type, b []byte) *interp.Tensor {
	v := interp.NewTensor(t)
	n := int(t.NumElements())
	for i := 0; i < n; i++ {
		switch t.DType {
		case ir.F32:
			v.F[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		case ir.F64:
			v.F[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		case ir.BF16:
			v.F[i] = float64(ir.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
		case ir.I32:
			v.I[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case ir.I64:
			v.I[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		case ir.U8:
			v.I[i] = int64(b[i])
		}
	}
	return v
}

// gen says how a test input is drawn.
type gen struct {
	kind string // "any": ±[0.25, 2]; "pos": [0.25, 2]; "wide": [-80, 80]; "idx": [0, n); "support": n distinct sorted in [0, total)
	n    int64
}

// random draws a tensor of type t.
func random(r *rand.Rand, t ir.Type, g gen) *interp.Tensor {
	n := int(t.NumElements())
	if t.DType.IsInt() {
		v := make([]int64, n)
		switch g.kind {
		case "support":
			perm := r.Perm(int(g.n))[:n]
			seen := make([]bool, g.n)
			for _, p := range perm {
				seen[p] = true
			}
			k := 0
			for i, s := range seen {
				if s {
					v[k] = int64(i)
					k++
				}
			}
		default:
			m := g.n
			if m <= 0 {
				m = 7
			}
			for i := range v {
				v[i] = r.Int64N(m) - m/2
				if g.kind == "idx" {
					v[i] = r.Int64N(m)
				}
			}
		}
		return interp.FromInts(t, v)
	}
	f := make([]float64, n)
	for i := range f {
		x := 0.25 + 1.75*r.Float64()
		switch g.kind {
		case "pos":
		case "wide":
			x = -80 + 160*r.Float64()
		default:
			if r.IntN(2) == 0 {
				x = -x
			}
		}
		f[i] = x
	}
	return interp.FromFloats(t, f)
}

// compareTensors checks got against want: integers exactly; floats either
// element-wise (|g−w| ≤ tol·|w|, NaN and ±Inf matching exactly) or norm-wise
// (‖g−w‖₂ ≤ tol·‖w‖₂, with element-wise agreement of non-finite values).
func compareTensors(got, want *interp.Tensor, tol float64, normwise bool) error {
	if !got.Type.Equal(want.Type) {
		return fmt.Errorf("type %v, want %v", got.Type, want.Type)
	}
	if want.Type.DType.IsInt() {
		for i := range want.I {
			if got.I[i] != want.I[i] {
				return fmt.Errorf("element %d = %d, want %d", i, got.I[i], want.I[i])
			}
		}
		return nil
	}
	var num, den float64
	for i, w := range want.F {
		g := got.F[i]
		switch {
		case math.IsNaN(w) || math.IsInf(w, 0):
			if !(math.IsNaN(w) && math.IsNaN(g)) && g != w {
				return fmt.Errorf("element %d = %v, want %v", i, g, w)
			}
			continue
		case math.IsNaN(g) || math.IsInf(g, 0):
			return fmt.Errorf("element %d = %v, want %v", i, g, w)
		}
		if !normwise && math.Abs(g-w) > tol*math.Abs(w) {
			return fmt.Errorf("element %d = %v, want %v (relative error %.3g > %.3g)", i, g, w, math.Abs(g-w)/math.Abs(w), tol)
		}
		num += (g - w) * (g - w)
		den += w * w
	}
	if normwise && math.Sqrt(num) > tol*math.Sqrt(den) {
		return fmt.Errorf("norm-wise relative error %.3g > %.3g", math.Sqrt(num/den), tol)
	}
	return nil
}
