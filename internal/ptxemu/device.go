package ptxemu

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
)

// Device is a runtime.Device over the emulator: device memory is host C
// memory, each kernel runs as a module of its own (the emulator runs a
// module's first entry), launches run at once, in order. It lets the
// runtime's cuda half, and everything above it (the training loop), run a
// cuda artifact's real PTX on a machine without a GPU.
type Device struct {
	emu         *Emu
	grid, block int
	entries     map[string]string
	live        map[uint64]*Mem
}

// NewDevice returns a device on emu whose Geometry is grid blocks of block
// threads (small: the emulator is slow; 2 × 32 when either is 0), the
// launch of steps without a geometry of their own.
func NewDevice(emu *Emu, grid, block int) *Device {
	if grid < 1 || block < 1 {
		grid, block = 2, 32 // a small launch: the emulator runs every thread
	}
	return &Device{emu: emu, grid: grid, block: block, live: map[uint64]*Mem{}}
}

// Name implements runtime.Device.
func (d *Device) Name() string { return "the PTX emulator" }

// Load implements runtime.Device.
func (d *Device) Load(t artifact.Target, ptx string) error {
	if t.Kind != artifact.TargetCUDA {
		return fmt.Errorf("ptxemu: target %q", t.Kind)
	}
	entries, err := SplitEntries(ptx)
	if err != nil {
		return err
	}
	d.entries = entries
	return nil
}

// Geometry implements runtime.Device.
func (d *Device) Geometry() (grid, block int) { return d.grid, d.block }

// Alloc implements runtime.Device.
func (d *Device) Alloc(n int64) (uint64, error) {
	m := Alloc(int(n))
	if m.p == nil {
		return 0, fmt.Errorf("ptxemu: out of memory allocating %d bytes", n)
	}
	d.live[m.Addr()] = m
	return m.Addr(), nil
}

// Free implements runtime.Device.
func (d *Device) Free(addr uint64) error {
	m, ok := d.live[addr]
	if !ok {
		return fmt.Errorf("ptxemu: free of %#x, not allocated", addr)
	}
	delete(d.live, addr)
	m.Free()
	return nil
}

// Live returns the number of allocations not freed.
func (d *Device) Live() int { return len(d.live) }

// at views n bytes of emulator memory at addr.
func at(addr uint64, n int64) []byte {
	return unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&addr))), n)
}

// Write implements runtime.Device.
func (d *Device) Write(dst uint64, src []byte) error { copy(at(dst, int64(len(src))), src); return nil }

// Read implements runtime.Device.
func (d *Device) Read(dst []byte, src uint64) error { copy(dst, at(src, int64(len(dst)))); return nil }

// Copy implements runtime.Device.
func (d *Device) Copy(dst, src uint64, n int64) error { copy(at(dst, n), at(src, n)); return nil }

// Launch implements runtime.Device.
func (d *Device) Launch(kernel string, grid, block, shared int, args, scratch, stride uint64) error {
	ptx, ok := d.entries[kernel]
	if !ok {
		return fmt.Errorf("kernel %s is not in the PTX", kernel)
	}
	return d.emu.Run(ptx, []uint64{args, scratch, stride}, block, grid, shared)
}

// Sync implements runtime.Device.
func (d *Device) Sync() error { return nil }

// Close implements runtime.Device.
func (d *Device) Close() error { return nil }

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

// SplitEntries cuts a PTX module into one module per .entry: the header,
// every global and every .func, plus that entry (the emulator runs a
// module's first entry), rewritten for the emulator (forEmulator).
func SplitEntries(ptx string) (map[string]string, error) {
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
