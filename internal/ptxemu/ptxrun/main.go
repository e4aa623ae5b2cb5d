// Command ptxrun runs the programs of a cuda artifact in the PTX emulator,
// for slc's tests on machines without a GPU, or on a real GPU through the
// CUDA driver (session "device": "cuda": the device check runs the same
// tests there). It is a process of its own because the emulator links a
// copy of LLVM 15 that cannot share a process with the LLVM 19 of slc's
// compiler.
//
//	ptxrun SESSION.json
//
// The session names the artifact, the emulator library, the initial state
// (one file of raw little-endian bytes per tensor) and the program runs, in
// order; after run i, every state tensor and every output is written to
// OUT/i/<name>.bin. Each step of a program is one launch of its kernel (the
// PTX module cut down to that one .entry) on Block×Grid threads, over host
// buffers laid out as the artifact's slots say.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/internal/cudadrv"
	"gitee.com/gidean/conv-linn/internal/ptxemu"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// Session is the input of ptxrun.
type Session struct {
	Artifact    string            `json:"artifact"`
	Emulator    string            `json:"emulator"`
	State       map[string]string `json:"state"` // tensor name → raw file
	Runs        []Run             `json:"runs"`
	Out         string            `json:"out"`
	Block, Grid int
	// Device is "emu" (the PTX emulator, the default) or "cuda" (the real
	// driver, libcuda.so.1: the whole PTX module loaded as it is).
	Device string `json:"device"`
	// Check, when set, judges every run against the reference interpreter
	// started from the state the device had before it (the artifact's own
	// module), with these norm-wise tolerances: the loss, state after an
	// update, other state. The verdict is printed; a failure exits 1.
	Check     bool    `json:"check"`
	LossTol   float64 `json:"loss_tol"`
	UpdateTol float64 `json:"update_tol"`
	StateTol  float64 `json:"state_tol"`
}

// Run is one program run.
type Run struct {
	Program string             `json:"program"`
	Data    map[string][]int64 `json:"data"`
	Scalars map[string]float64 `json:"scalars"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ptxrun SESSION.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "ptxrun:", err)
		os.Exit(1)
	}
}

// buffer is memory the kernels address: host memory in the emulator, device
// memory on a GPU.
type buffer interface {
	addr() uint64
	read(off, n int64) ([]byte, error)
	write(off int64, b []byte) error
	free()
}

// device runs kernels over buffers.
type device interface {
	alloc(n int64) (buffer, error)
	launch(kernel string, args []uint64, block, grid int) error
}

type emuDevice struct {
	emu     *ptxemu.Emu
	entries map[string]string
}

type emuBuf struct{ m *ptxemu.Mem }

func (b emuBuf) addr() uint64 { return b.m.Addr() }
func (b emuBuf) read(off, n int64) ([]byte, error) {
	return append([]byte(nil), b.m.Bytes()[off:off+n]...), nil
}
func (b emuBuf) write(off int64, p []byte) error   { copy(b.m.Bytes()[off:], p); return nil }
func (b emuBuf) free()                             { b.m.Free() }
func (d *emuDevice) alloc(n int64) (buffer, error) { return emuBuf{ptxemu.Alloc(int(n))}, nil }
func (d *emuDevice) launch(kernel string, args []uint64, block, grid int) error {
	ptx, ok := d.entries[kernel]
	if !ok {
		return fmt.Errorf("kernel %s not in the PTX", kernel)
	}
	return d.emu.Run(ptx, args, block, grid, 0)
}

type cudaDevice struct {
	mod   *cudadrv.Module
	funcs map[string]cudadrv.Function
}

type cudaBuf struct{ p cudadrv.Ptr }

func (b cudaBuf) addr() uint64 { return uint64(b.p) }
func (b cudaBuf) read(off, n int64) ([]byte, error) {
	out := make([]byte, n)
	return out, cudadrv.CopyOut(out, b.p+cudadrv.Ptr(off))
}
func (b cudaBuf) write(off int64, p []byte) error { return cudadrv.CopyIn(b.p+cudadrv.Ptr(off), p) }
func (b cudaBuf) free()                           { cudadrv.Free(b.p) }
func (d *cudaDevice) alloc(n int64) (buffer, error) {
	p, err := cudadrv.Alloc(int(n))
	return cudaBuf{p}, err
}
func (d *cudaDevice) launch(kernel string, args []uint64, block, grid int) error {
	f, ok := d.funcs[kernel]
	if !ok {
		var err error
		if f, err = d.mod.Function(kernel); err != nil {
			return err
		}
		d.funcs[kernel] = f
	}
	return cudadrv.Launch3(f, grid, block, args[0], args[1], args[2])
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var s Session
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// Relative paths are the session file's directory's (a prepared check
	// travels to another machine).
	base := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	s.Artifact, s.Out = rel(s.Artifact), rel(s.Out)
	for k, v := range s.State {
		s.State[k] = rel(v)
	}
	art, err := artifact.ReadFile(s.Artifact)
	if err != nil {
		return err
	}
	var dev device
	switch s.Device {
	case "", "emu":
		emu, err := ptxemu.Open(s.Emulator)
		if err != nil {
			return err
		}
		entries, err := splitEntries(string(art.Code))
		if err != nil {
			return err
		}
		dev = &emuDevice{emu: emu, entries: entries}
	case "cuda":
		d, err := cudadrv.Open()
		if err != nil {
			return err
		}
		mod, err := d.LoadPTX(string(art.Code))
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "ptxrun: %s\n", d.Name)
		dev = &cudaDevice{mod: mod, funcs: map[string]cudadrv.Function{}}
	default:
		return fmt.Errorf("unknown device %q (want emu or cuda)", s.Device)
	}
	state, types := map[string]buffer{}, map[string]ir.Type{}
	for _, p := range art.Programs {
		for _, sl := range p.Slots {
			if sl.Kind == artifact.SlotState && state[sl.Name] == nil {
				if state[sl.Name], err = dev.alloc(sl.Type.Bytes()); err != nil {
					return err
				}
				types[sl.Name] = sl.Type
			}
		}
	}
	for name, file := range s.State {
		m := state[name]
		if m == nil {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if int64(len(b)) != types[name].Bytes() {
			return fmt.Errorf("state %s: %d bytes, want %d", name, len(b), types[name].Bytes())
		}
		if err := m.write(0, b); err != nil {
			return err
		}
	}
	for i, r := range s.Runs {
		p := art.Program(r.Program)
		if p == nil {
			return fmt.Errorf("run %d: no program %q", i, r.Program)
		}
		outs, err := runProgram(dev, p, state, r, s.Block, s.Grid)
		if err != nil {
			return fmt.Errorf("run %d (%s): %w", i, r.Program, err)
		}
		dir := filepath.Join(s.Out, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for name, m := range state {
			b, err := m.read(0, types[name].Bytes())
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "state."+name+".bin"), b, 0o644); err != nil {
				return err
			}
		}
		for name, b := range outs {
			if err := os.WriteFile(filepath.Join(dir, "out."+name+".bin"), b, 0o644); err != nil {
				return err
			}
		}
	}
	if s.Check {
		return check(&s, art, types)
	}
	return nil
}

// runProgram executes p's steps and returns its outputs that update no
// state (a copy of their bytes), after applying those that do.
func runProgram(dev device, p *artifact.Program, state map[string]buffer, r Run, block, grid int) (map[string][]byte, error) {
	var owned []buffer
	defer func() {
		for _, m := range owned {
			m.free()
		}
	}()
	alloc := func(n int64) (buffer, error) {
		b, err := dev.alloc(n)
		if err == nil {
			owned = append(owned, b)
		}
		return b, err
	}
	arena, err := alloc(p.ArenaBytes + 64)
	if err != nil {
		return nil, err
	}
	stride := (p.ScratchBytes + 63) / 64 * 64
	scratch, err := alloc(stride*int64(block*grid) + 64)
	if err != nil {
		return nil, err
	}
	type loc struct {
		buf buffer
		off int64
	}
	where := make([]loc, len(p.Slots))
	addr := make([]uint64, len(p.Slots))
	for i, s := range p.Slots {
		switch s.Kind {
		case artifact.SlotState:
			where[i] = loc{state[s.Name], 0}
		case artifact.SlotArena:
			where[i] = loc{arena, s.Offset}
		case artifact.SlotData, artifact.SlotScalar:
			m, err := alloc(s.Type.Bytes())
			if err != nil {
				return nil, err
			}
			where[i] = loc{m, 0}
			b := make([]byte, s.Type.Bytes())
			if s.Kind == artifact.SlotData {
				ids, ok := r.Data[s.Name]
				if !ok {
					return nil, fmt.Errorf("data %q not bound", s.Name)
				}
				if err := encodeInts(b, s.Type, ids); err != nil {
					return nil, err
				}
			} else {
				v, ok := r.Scalars[s.Name]
				if !ok {
					return nil, fmt.Errorf("scalar %q not bound", s.Name)
				}
				if err := encodeScalar(b, s.Type, v); err != nil {
					return nil, err
				}
			}
			if err := m.write(0, b); err != nil {
				return nil, err
			}
		}
		addr[i] = where[i].buf.addr() + uint64(where[i].off)
	}
	for si, st := range p.Steps {
		if os.Getenv("PTXRUN_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "ptxrun: %s step %d: %s\n", p.Name, si, st.Kernel)
		}
		table, err := alloc(int64(8 * max(1, len(st.Args))))
		if err != nil {
			return nil, err
		}
		tb := make([]byte, 8*max(1, len(st.Args)))
		for j, a := range st.Args {
			binary.LittleEndian.PutUint64(tb[8*j:], addr[a])
		}
		if err := table.write(0, tb); err != nil {
			return nil, err
		}
		if err := dev.launch(st.Kernel, []uint64{table.addr(), scratch.addr(), uint64(stride)}, block, grid); err != nil {
			return nil, fmt.Errorf("step %d (%s): %w", si, st.Kernel, err)
		}
	}
	out := map[string][]byte{}
	for _, o := range p.Outputs {
		s, w := p.Slots[o.Slot], where[o.Slot]
		b, err := w.buf.read(w.off, s.Type.Bytes())
		if err != nil {
			return nil, err
		}
		if o.Updates != "" {
			if dst := state[o.Updates]; dst != nil && dst.addr() != addr[o.Slot] {
				if err := dst.write(0, b); err != nil {
					return nil, err
				}
			}
			continue
		}
		out[o.Name] = b
	}
	return out, nil
}

func encodeInts(dst []byte, t ir.Type, v []int64) error {
	if int64(len(v)) != t.NumElements() {
		return fmt.Errorf("%d ids for %v", len(v), t)
	}
	for i, x := range v {
		switch t.DType {
		case ir.I64:
			binary.LittleEndian.PutUint64(dst[8*i:], uint64(x))
		case ir.I32:
			binary.LittleEndian.PutUint32(dst[4*i:], uint32(x))
		default:
			return fmt.Errorf("data of dtype %v", t.DType)
		}
	}
	return nil
}

func encodeScalar(dst []byte, t ir.Type, v float64) error {
	switch t.DType {
	case ir.F32:
		binary.LittleEndian.PutUint32(dst, math.Float32bits(float32(v)))
	case ir.F64:
		binary.LittleEndian.PutUint64(dst, math.Float64bits(v))
	case ir.I64:
		binary.LittleEndian.PutUint64(dst, uint64(int64(v)))
	case ir.I32:
		binary.LittleEndian.PutUint32(dst, uint32(int32(v)))
	default:
		return fmt.Errorf("scalar of dtype %v", t.DType)
	}
	return nil
}

var entryRE = regexp.MustCompile(`(?m)^\.visible \.entry (\S+)\(`)

// bfeRE matches a 64-bit bit-field extract with constant position and
// length, which LLVM emits for (x >> p) & mask and the emulator's parser
// rejects ("operand 1 type u64 cannot be assigned to u32").
var bfeRE = regexp.MustCompile(`bfe\.u64\s+(%rd\d+), (%rd\d+), (\d+), (\d+);`)

// forEmulator rewrites what the emulator cannot parse into equivalent PTX:
// bfe.u64 d, a, p, n with constants becomes shr.u64 d, a, p; and.b64 d, d,
// 2ⁿ−1. The real GPU gets the compiler's PTX unchanged.
func forEmulator(ptx string) string {
	return bfeRE.ReplaceAllStringFunc(ptx, func(m string) string {
		g := bfeRE.FindStringSubmatch(m)
		n, _ := strconv.Atoi(g[4])
		mask := uint64(1)<<uint(n) - 1
		if n >= 64 {
			mask = ^uint64(0)
		}
		return fmt.Sprintf("shr.u64 %s, %s, %s;\n\tand.b64 %s, %s, %d;", g[1], g[2], g[3], g[1], g[1], mask)
	})
}

// splitEntries cuts a PTX module into one module per .entry: the header,
// every global and every .func, plus that entry (the emulator runs a
// module's first entry).
func splitEntries(ptx string) (map[string]string, error) {
	type item struct{ entry, text string }
	var items []item
	var header strings.Builder
	lines := strings.Split(ptx, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		isFunc := strings.HasPrefix(l, ".visible .entry") || strings.HasPrefix(l, ".visible .func") || strings.HasPrefix(l, ".func") || strings.HasPrefix(l, ".extern .func")
		if !isFunc {
			switch {
			case len(items) == 0:
				header.WriteString(l + "\n")
			case strings.HasPrefix(l, ".global") || strings.HasPrefix(l, ".const"):
				items = append(items, item{text: l + "\n"})
			}
			continue
		}
		var b strings.Builder
		depth, opened := 0, false
		for ; i < len(lines); i++ {
			b.WriteString(lines[i] + "\n")
			depth += strings.Count(lines[i], "{") - strings.Count(lines[i], "}")
			opened = opened || strings.Contains(lines[i], "{")
			if (opened && depth == 0) || (!opened && strings.HasSuffix(strings.TrimSpace(lines[i]), ";")) {
				break
			}
		}
		it := item{text: b.String()}
		if m := entryRE.FindStringSubmatch(it.text); m != nil {
			it.entry = m[1]
		}
		items = append(items, it)
	}
	out := map[string]string{}
	for _, e := range items {
		if e.entry == "" {
			continue
		}
		var b strings.Builder
		b.WriteString(header.String())
		for _, it := range items {
			if it.entry == "" {
				b.WriteString(it.text)
			}
		}
		b.WriteString(e.text)
		out[e.entry] = forEmulator(b.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no .entry in the PTX")
	}
	return out, nil
}

// check judges each run of s, already done, against the interpreter: run i
// starts from the device's state after run i−1 (run 0 from the initial
// files), so that each program is judged alone.
func check(s *Session, art *artifact.Artifact, types map[string]ir.Type) error {
	m, err := ir.ParseBinary(art.Module)
	if err != nil {
		return fmt.Errorf("the artifact's module: %w", err)
	}
	read := func(file string, t ir.Type) (*interp.Tensor, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return decode(b, t)
	}
	failed := 0
	for i, r := range s.Runs {
		g := m.Graph(r.Program)
		in := map[string]*interp.Tensor{}
		for name, t := range types {
			file := s.State[name]
			if i > 0 {
				file = filepath.Join(s.Out, strconv.Itoa(i-1), "state."+name+".bin")
			}
			if file == "" || g.Input(name) == nil {
				continue
			}
			v, err := read(file, t)
			if err != nil {
				return err
			}
			in[name] = v
		}
		for k, v := range r.Data {
			in[k] = interp.FromInts(g.Input(k).Type, v)
		}
		for k, v := range r.Scalars {
			in[k] = interp.FromFloats(g.Input(k).Type, []float64{v})
		}
		want, err := interp.Run(g, in)
		if err != nil {
			return fmt.Errorf("run %d: interpreter: %w", i, err)
		}
		dir := filepath.Join(s.Out, strconv.Itoa(i))
		worst, worstName := 0.0, ""
		tol := s.StateTol
		if r.Program == "update" {
			tol = s.UpdateTol
		}
		for _, o := range g.Outputs {
			w := want[o.Name]
			if w == nil || !w.Type.DType.IsFloat() {
				continue
			}
			file, limit := filepath.Join(dir, "out."+o.Name+".bin"), tol
			if o.Updates != "" {
				file = filepath.Join(dir, "state."+o.Updates+".bin")
			} else if o.Name == "loss" {
				limit = s.LossTol
			}
			got, err := read(file, w.Type)
			if err != nil {
				return err
			}
			e := relErr(got.F, w.F)
			if e > worst {
				worst, worstName = e, o.Name
			}
			if e > limit {
				failed++
				fmt.Printf("run %d (%s): %s differs from the interpreter by %.3g (norm-wise; tolerance %g)\n", i, r.Program, o.Name, e, limit)
			}
		}
		fmt.Printf("run %d (%s): worst %.3g (%s)\n", i, r.Program, worst, worstName)
	}
	if failed > 0 {
		return fmt.Errorf("%d results outside their tolerance", failed)
	}
	fmt.Println("check: every run within its tolerance")
	return nil
}

// decode reads raw little-endian bytes of dtype t.
func decode(b []byte, t ir.Type) (*interp.Tensor, error) {
	if int64(len(b)) != t.Bytes() {
		return nil, fmt.Errorf("%d bytes for %v", len(b), t)
	}
	n := int(t.NumElements())
	switch t.DType {
	case ir.F32:
		f := make([]float64, n)
		for i := range f {
			f[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return interp.FromFloats(t, f), nil
	case ir.BF16:
		f := make([]float64, n)
		for i := range f {
			f[i] = float64(ir.BF16ToFloat32(binary.LittleEndian.Uint16(b[2*i:])))
		}
		return interp.FromFloats(t, f), nil
	case ir.I64:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return interp.FromInts(t, v), nil
	case ir.I32:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		}
		return interp.FromInts(t, v), nil
	}
	return nil, fmt.Errorf("dtype %v", t.DType)
}

// relErr is the norm-wise relative error ‖a−b‖/max(‖b‖, tiny).
func relErr(got, want []float64) float64 {
	var d, n float64
	for i := range want {
		e := got[i] - want[i]
		d += e * e
		n += want[i] * want[i]
	}
	return math.Sqrt(d) / math.Max(math.Sqrt(n), 1e-30)
}
