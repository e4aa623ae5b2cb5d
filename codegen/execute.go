//go:build !slc_runtime

package codegen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/hostcpu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/native"
)

// executor runs the programs of a CPU artifact codegen just compiled, on
// random operands, to time candidate kernels (calibrate.go). It is not the
// runtime (which codegen must not need, nor the runtime codegen): just the
// artifact's execution model — slots, one arena, per-thread scratch, every
// step called by all threads with a barrier between steps — over package
// native, the loader and C memory the runtime uses too.
type executor struct {
	art  *artifact.Artifact
	lib  *native.Lib
	path string
	fns  map[string]unsafe.Pointer
}

// newExecutor loads art's code from a temporary file. Code for a CPU with
// AMX tiles needs the process's tile permission first (as the runtime asks
// for it): without it, the first tile instruction ends the process in
// SIGILL instead of returning an error the calibration can fall back from.
func newExecutor(art *artifact.Artifact) (*executor, error) {
	if slices.Contains(strings.Split(art.Target.Features, ","), "+amx-tile") {
		if err := hostcpu.RequestAMX(); err != nil {
			return nil, fmt.Errorf("the AMX tile state: %w", err)
		}
	}
	f, err := os.CreateTemp("", "slc-calibrate-*.so")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	_, err = f.Write(art.Code)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	lib, err := native.Open(path)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("dlopen: %w", err)
	}
	ex := &executor{art: art, lib: lib, path: path, fns: map[string]unsafe.Pointer{}}
	for _, p := range art.Programs {
		for _, s := range p.Steps {
			if ex.fns[s.Kernel] != nil {
				continue
			}
			if ex.fns[s.Kernel], err = lib.Sym(s.Kernel); err != nil {
				ex.close()
				return nil, err
			}
		}
	}
	return ex, nil
}

// close unloads the code and removes its file.
func (ex *executor) close() {
	ex.lib.Close()
	os.Remove(ex.path)
}

// preparedRun is a program with its buffers allocated and filled.
type preparedRun struct {
	ex      *executor
	p       *artifact.Program
	threads int
	bufs    []*native.Buffer
	steps   []*native.Args
	scratch []*native.Buffer
}

// prepare allocates program name's arena, state and scratch, fills the
// state with random values of each slot's dtype (finite, small; indices
// sorted and distinct inside the matrix they index) and builds each step's
// argument array.
func (ex *executor) prepare(name string, threads int) (*preparedRun, error) {
	p := ex.art.Program(name)
	if p == nil {
		return nil, fmt.Errorf("no program %q", name)
	}
	r := &preparedRun{ex: ex, p: p, threads: threads}
	alloc := func(n int64) (*native.Buffer, error) {
		b, err := native.NewBuffer(n)
		if err == nil {
			r.bufs = append(r.bufs, b)
		}
		return b, err
	}
	arena, err := alloc(p.ArenaBytes)
	if err != nil {
		r.free()
		return nil, err
	}
	clear(arena.Bytes())
	rng := rand.New(rand.NewPCG(1, 2))
	ptrs := make([]unsafe.Pointer, len(p.Slots))
	byName := map[string]unsafe.Pointer{}
	for i, s := range p.Slots {
		if s.Kind == artifact.SlotArena {
			ptrs[i] = unsafe.Add(arena.Ptr(), s.Offset)
			continue
		}
		if q, ok := byName[s.Name]; ok {
			ptrs[i] = q
			continue
		}
		b, err := alloc(s.Type.Bytes())
		if err != nil {
			r.free()
			return nil, err
		}
		if err := fillRandom(b.Bytes(), s.Type, rng); err != nil {
			r.free()
			return nil, fmt.Errorf("slot %q: %w", s.Name, err)
		}
		ptrs[i], byName[s.Name] = b.Ptr(), b.Ptr()
	}
	// The sparse index of a calibration graph: SLTrain's support, inside W.
	for i, s := range p.Slots {
		if s.Kind != artifact.SlotArena && s.Type.DType.IsInt() && strings.HasSuffix(s.Name, ".index") {
			fillIndex(unsafe.Slice((*byte)(ptrs[i]), s.Type.Bytes()), s.Type, matrixOf(p))
		}
	}
	for i := 0; i < threads; i++ {
		b, err := alloc(p.ScratchBytes)
		if err != nil {
			r.free()
			return nil, err
		}
		r.scratch = append(r.scratch, b)
	}
	for _, st := range p.Steps {
		args := make([]unsafe.Pointer, len(st.Args))
		for i, a := range st.Args {
			args[i] = ptrs[a]
		}
		r.steps = append(r.steps, native.NewArgs(args))
	}
	return r, nil
}

// do runs the program once: each step on every thread, then a barrier.
func (r *preparedRun) do() {
	for i, st := range r.p.Steps {
		fn, a := r.ex.fns[st.Kernel], r.steps[i]
		var wg sync.WaitGroup
		for tid := 1; tid < r.threads; tid++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				native.Call(fn, a, tid, r.threads, r.scratch[tid])
			}()
		}
		native.Call(fn, a, 0, r.threads, r.scratch[0])
		wg.Wait()
	}
}

// free releases every buffer.
func (r *preparedRun) free() {
	for _, a := range r.steps {
		a.Free()
	}
	for _, b := range r.bufs {
		b.Free()
	}
	r.steps, r.bufs = nil, nil
}

// matrixOf is the element count of W, out·in, of a calibration program:
// B's rows times A's columns.
func matrixOf(p *artifact.Program) int64 {
	var out, in int64 = 1, 1
	for _, s := range p.Slots {
		switch {
		case strings.HasSuffix(s.Name, ".B"):
			out = int64(s.Type.Shape[0])
		case strings.HasSuffix(s.Name, ".A"):
			in = int64(s.Type.Shape[1])
		}
	}
	return out * in
}

// fillRandom fills b with values of t's dtype: floats uniform in ±0.5,
// integers 0.
func fillRandom(b []byte, t ir.Type, rng *rand.Rand) error {
	n := int(t.NumElements())
	for i := 0; i < n; i++ {
		x := float32(rng.Float64() - 0.5)
		switch t.DType {
		case ir.F32:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		case ir.BF16:
			binary.LittleEndian.PutUint16(b[2*i:], ir.BF16FromFloat32(x))
		case ir.F64:
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(x)))
		case ir.I32, ir.I64:
			clear(b)
			return nil
		default:
			return fmt.Errorf("cannot fill a %v", t)
		}
	}
	return nil
}

// fillIndex writes nnz sorted, distinct flat indices spread evenly over
// [0, total), as SLTrain's support is spread over W.
func fillIndex(b []byte, t ir.Type, total int64) {
	n := t.NumElements()
	for j := int64(0); j < n; j++ {
		v := j * total / max(n, 1)
		if t.DType == ir.I32 {
			binary.LittleEndian.PutUint32(b[4*j:], uint32(v))
		} else {
			binary.LittleEndian.PutUint64(b[8*j:], uint64(v))
		}
	}
}
