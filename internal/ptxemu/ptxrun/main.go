// Command ptxrun runs the programs of a cuda artifact in the PTX emulator,
// for slc's tests on machines without a GPU. It is a process of its own
// because the emulator links a copy of LLVM 15 that cannot share a process
// with the LLVM 19 of slc's compiler.
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
	"gitee.com/gidean/conv-linn/internal/ptxemu"
	"gitee.com/gidean/conv-linn/ir"
)

// Session is the input of ptxrun.
type Session struct {
	Artifact    string            `json:"artifact"`
	Emulator    string            `json:"emulator"`
	State       map[string]string `json:"state"` // tensor name → raw file
	Runs        []Run             `json:"runs"`
	Out         string            `json:"out"`
	Block, Grid int
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

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var s Session
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	art, err := artifact.ReadFile(s.Artifact)
	if err != nil {
		return err
	}
	emu, err := ptxemu.Open(s.Emulator)
	if err != nil {
		return err
	}
	entries, err := splitEntries(string(art.Code))
	if err != nil {
		return err
	}
	state, types := map[string]*ptxemu.Mem{}, map[string]ir.Type{}
	for _, p := range art.Programs {
		for _, sl := range p.Slots {
			if sl.Kind == artifact.SlotState && state[sl.Name] == nil {
				state[sl.Name], types[sl.Name] = ptxemu.Alloc(int(sl.Type.Bytes())), sl.Type
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
		if len(b) != len(m.Bytes()) {
			return fmt.Errorf("state %s: %d bytes, want %d", name, len(b), len(m.Bytes()))
		}
		copy(m.Bytes(), b)
	}
	for i, r := range s.Runs {
		p := art.Program(r.Program)
		if p == nil {
			return fmt.Errorf("run %d: no program %q", i, r.Program)
		}
		outs, err := runProgram(emu, entries, p, state, r, s.Block, s.Grid)
		if err != nil {
			return fmt.Errorf("run %d (%s): %w", i, r.Program, err)
		}
		dir := filepath.Join(s.Out, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for name, m := range state {
			if err := os.WriteFile(filepath.Join(dir, "state."+name+".bin"), m.Bytes(), 0o644); err != nil {
				return err
			}
		}
		for name, b := range outs {
			if err := os.WriteFile(filepath.Join(dir, "out."+name+".bin"), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// runProgram executes p's steps and returns its outputs that update no
// state (a copy of their bytes), after applying those that do.
func runProgram(emu *ptxemu.Emu, entries map[string]string, p *artifact.Program, state map[string]*ptxemu.Mem, r Run, block, grid int) (map[string][]byte, error) {
	arena := ptxemu.Alloc(int(p.ArenaBytes) + 64)
	defer arena.Free()
	stride := (p.ScratchBytes + 63) / 64 * 64
	scratch := ptxemu.Alloc(int(stride)*block*grid + 64)
	defer scratch.Free()
	var owned []*ptxemu.Mem
	defer func() {
		for _, m := range owned {
			m.Free()
		}
	}()
	addr := make([]uint64, len(p.Slots))
	bufs := make([][]byte, len(p.Slots))
	for i, s := range p.Slots {
		switch s.Kind {
		case artifact.SlotState:
			m := state[s.Name]
			addr[i], bufs[i] = m.Addr(), m.Bytes()
		case artifact.SlotArena:
			addr[i] = arena.Addr() + uint64(s.Offset)
			bufs[i] = arena.Bytes()[s.Offset : s.Offset+s.Type.Bytes()]
		case artifact.SlotData, artifact.SlotScalar:
			m := ptxemu.Alloc(int(s.Type.Bytes()))
			owned = append(owned, m)
			addr[i], bufs[i] = m.Addr(), m.Bytes()
			if s.Kind == artifact.SlotData {
				ids, ok := r.Data[s.Name]
				if !ok {
					return nil, fmt.Errorf("data %q not bound", s.Name)
				}
				if err := encodeInts(m.Bytes(), s.Type, ids); err != nil {
					return nil, err
				}
			} else {
				v, ok := r.Scalars[s.Name]
				if !ok {
					return nil, fmt.Errorf("scalar %q not bound", s.Name)
				}
				if err := encodeScalar(m.Bytes(), s.Type, v); err != nil {
					return nil, err
				}
			}
		}
	}
	for si, st := range p.Steps {
		ptx, ok := entries[st.Kernel]
		if !ok {
			return nil, fmt.Errorf("step %d: kernel %s not in the PTX", si, st.Kernel)
		}
		if os.Getenv("PTXRUN_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "ptxrun: %s step %d: %s\n", p.Name, si, st.Kernel)
		}
		table := ptxemu.Alloc(8 * max(1, len(st.Args)))
		for j, a := range st.Args {
			binary.LittleEndian.PutUint64(table.Bytes()[8*j:], addr[a])
		}
		err := emu.Run(ptx, []uint64{table.Addr(), scratch.Addr(), uint64(stride)}, block, grid, 0)
		table.Free()
		if err != nil {
			return nil, fmt.Errorf("step %d (%s): %w", si, st.Kernel, err)
		}
	}
	out := map[string][]byte{}
	for _, o := range p.Outputs {
		if o.Updates != "" {
			if dst := state[o.Updates]; dst != nil && dst.Addr() != addr[o.Slot] {
				copy(dst.Bytes(), bufs[o.Slot])
			}
			continue
		}
		out[o.Name] = append([]byte(nil), bufs[o.Slot]...)
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
