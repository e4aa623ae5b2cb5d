package peak

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAMXEncodings disassembles the bytes that spell the AMX instructions
// of peak_amd64.s (Go's assembler has no AMX) with LLVM's llvm-mc and
// checks that each is the instruction its comment names, so the loop is
// right before it ever runs on an AMX machine.
func TestAMXEncodings(t *testing.T) {
	mc := llvmMC()
	if mc == "" {
		t.Skip("no llvm-mc to disassemble with")
	}
	f, err := os.Open("peak_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^\s*((?:BYTE \$0x[0-9a-f]{2};?\s*)+)// (.*)$`)
	hex := regexp.MustCompile(`0x[0-9a-f]{2}`)
	var in []string
	var want []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil || !strings.Contains(m[2], "tile") && !strings.Contains(m[2], "tdp") {
			continue
		}
		in = append(in, strings.Join(hex.FindAllString(m[1], -1), " "))
		want = append(want, strings.Join(strings.Fields(m[2]), " "))
	}
	if len(in) < 16 {
		t.Fatalf("found %d AMX instructions in peak_amd64.s, want ≥ 16", len(in))
	}
	cmd := exec.Command(mc, "-disassemble", "-triple=x86_64", "-mattr=+amx-tile,+amx-bf16")
	cmd.Stdin = strings.NewReader(strings.Join(in, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("llvm-mc: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, ".") {
			continue
		}
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if len(got) != len(want) {
		t.Fatalf("llvm-mc decoded %d instructions, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bytes %s: llvm-mc reads %q, the comment says %q", in[i], got[i], want[i])
		}
	}
}

// llvmMC finds llvm-mc on PATH or beside LLVM 19's other tools.
func llvmMC() string {
	for _, name := range []string{"llvm-mc", "llvm-mc-19"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if p := filepath.Join("/usr/lib/llvm-19/bin", "llvm-mc"); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// The AMX loop on known values: every element of the four C tiles gains
// 32·x·y per iteration (one tdpbf16ps: 16 pairs of two products), exactly
// here; chains 4–11 are left alone.
func TestLoopAMXKnownValue(t *testing.T) {
	p := PathAMXBF16
	if !p.Supported() {
		t.Skip("no AMX (or no tile permission) here")
	}
	var acc Accumulators
	seedAccumulators(&acc)
	want := acc
	Run(p, 3000, &acc, 0x1p-5, 0x1p-5)
	for j := range acc {
		for l := range acc[j] {
			w := want[j][l]
			if j < 4 {
				w += 3000 * 32 * 0x1p-10
			}
			if acc[j][l] != w {
				t.Fatalf("chain %d lane %d = %g, want %g", j, l, acc[j][l], w)
			}
		}
	}
}

// TestMeasureAMX measures the AMX peak where the CPU has it.
func TestMeasureAMX(t *testing.T) {
	r, err := MeasurePath(PathAMXBF16, 1, 40*time.Millisecond)
	if !PathAMXBF16.Supported() {
		if err == nil {
			t.Error("MeasurePath on an unsupported path did not fail")
		}
		t.Skip("no AMX (or no tile permission) here")
	}
	if err != nil || !(r.GFLOPS > 0) || Best() == PathAMXBF16 {
		t.Fatalf("MeasurePath(AMX): %+v, %v (Best %v)", r, err, Best())
	}
	t.Logf("1 thread: %.1f GFLOP/s (%v)", r.GFLOPS, r.Path)
}
