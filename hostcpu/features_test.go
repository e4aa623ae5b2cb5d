package hostcpu

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write this machine's CPUID answers to testdata/host.cpuid.new (add its LLVM feature line, then rename it CPU.cpuid)")

// dump is a recorded CPU: its CPUID answers, XCR0, and the feature string
// LLVM 19's LLVMGetHostCPUFeatures printed on it.
type dump struct {
	regs map[[2]uint32][4]uint32
	xcr0 uint64
	llvm string
}

func (d *dump) query(leaf, sub uint32) [4]uint32 { return d.regs[[2]uint32{leaf, sub}] }

func readDump(t *testing.T, path string) *dump {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	d := &dump{regs: map[[2]uint32][4]uint32{}}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		w := strings.Fields(line)
		switch {
		case w[0] == "xcr0" && len(w) == 2:
			v, err := strconv.ParseUint(w[1], 0, 64)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			d.xcr0 = v
		case w[0] == "llvm" && len(w) == 2:
			d.llvm = w[1]
		case len(w) == 6:
			var v [6]uint64
			for i := range w {
				if v[i], err = strconv.ParseUint(w[i], 0, 32); err != nil {
					t.Fatalf("%s: %q: %v", path, line, err)
				}
			}
			d.regs[[2]uint32{uint32(v[0]), uint32(v[1])}] = [4]uint32{uint32(v[2]), uint32(v[3]), uint32(v[4]), uint32(v[5])}
		default:
			t.Fatalf("%s: bad line %q", path, line)
		}
	}
	return d
}

// TestRecordedCPUs checks the detection against LLVM's own on recorded CPUs:
// every feature LLVM enabled must be supported (else an artifact compiled for
// that host would be refused on it: the Zen 5 dump has LZCNT, which Linux 6.18
// no longer prints as "abm" in /proc/cpuinfo), and every feature LLVM
// disabled must not be.
func TestRecordedCPUs(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.cpuid")
	if len(files) == 0 {
		t.Fatal("no testdata/*.cpuid")
	}
	for _, path := range files {
		d := readDump(t, path)
		if d.llvm == "" {
			t.Fatalf("%s: no llvm line", path)
		}
		p := detect(d.query, d.xcr0)
		for _, ft := range strings.Split(d.llvm, ",") {
			name, want := ft[1:], ft[0] == '+'
			if !Known(name) {
				t.Errorf("%s: LLVM feature %s is not in the table", path, name)
				continue
			}
			if p.has[name] != want {
				t.Errorf("%s: %s detected %v, LLVM says %v", path, name, p.has[name], want)
			}
		}
	}
}

// TestEachFeature sets, for each feature alone, the CPUID bits and XCR0
// state it needs, and checks that it is detected then and not when any one
// of them is missing (or the OS has not set OSXSAVE).
func TestEachFeature(t *testing.T) {
	for _, name := range Names() {
		ft := table[name]
		regs := map[[2]uint32][4]uint32{
			{0, 0}: {0x24}, {0x80000000, 0}: {0x80000008}, {7, 0}: {1},
		}
		set := func(c cpuBit, on bool) {
			k := [2]uint32{c.leaf, c.sub}
			r := regs[k]
			if on {
				r[c.r] |= 1 << c.bit
			} else {
				r[c.r] &^= 1 << c.bit
			}
			regs[k] = r
		}
		q := func(leaf, sub uint32) [4]uint32 { return regs[[2]uint32{leaf, sub}] }
		set(osxsave, true)
		for _, c := range ft.bits {
			set(c, true)
		}
		if !detect(q, ft.state).has[name] {
			t.Errorf("%s: not detected with its bits %v and state %#x", name, ft.bits, ft.state)
		}
		for _, c := range ft.bits {
			set(c, false)
			if c != osxsave && detect(q, ft.state).has[name] {
				t.Errorf("%s: detected without CPUID bit %v", name, c)
			}
			set(c, true)
		}
		if ft.state != 0 {
			if detect(q, 0).has[name] {
				t.Errorf("%s: detected although the OS does not enable state %#x", name, ft.state)
			}
			set(osxsave, false)
			if detect(q, ft.state).has[name] {
				t.Errorf("%s: detected without OSXSAVE", name)
			}
		}
	}
}

// TestLeafLimits: bits of a leaf above the CPU's maximum are not read.
func TestLeafLimits(t *testing.T) {
	all := [4]uint32{^uint32(0), ^uint32(0), ^uint32(0), ^uint32(0)}
	q := func(leaf, sub uint32) [4]uint32 {
		switch leaf {
		case 0:
			return [4]uint32{1}
		case 0x80000000:
			return [4]uint32{0x80000000}
		}
		return all
	}
	p := detect(q, ^uint64(0))
	for _, n := range []string{"avx2", "lzcnt", "avx512f", "xsaveopt", "64bit"} {
		if p.has[n] {
			t.Errorf("%s detected from a leaf above the maximum", n)
		}
	}
	if !p.has["sse4.2"] || !p.has["avx"] {
		t.Errorf("leaf 1 features missing: %v", p.has)
	}
}

func TestLevelCPU(t *testing.T) {
	for n, want := range []string{"", "x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"} {
		if got := LevelCPU(n); got != want {
			t.Errorf("LevelCPU(%d) = %q, want %q", n, got, want)
		}
	}
	for _, feats := range levels {
		for _, n := range feats {
			if !Known(n) {
				t.Errorf("level feature %s is not in the table", n)
			}
		}
	}
}
