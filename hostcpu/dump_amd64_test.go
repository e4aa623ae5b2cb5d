package hostcpu

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

func rawCPUID(leaf, sub uint32) [4]uint32 {
	a, b, c, d := cpuid(leaf, sub)
	return [4]uint32{a, b, c, d}
}

func rawXCR0() uint64 {
	lo, hi := xgetbv()
	return uint64(hi)<<32 | uint64(lo)
}

// TestWriteDump records this machine (go test ./hostcpu -run WriteDump -update).
func TestWriteDump(t *testing.T) {
	if !*update {
		t.Skip("only with -update")
	}
	var keys [][2]uint32
	for _, ft := range table {
		for _, c := range append(ft.bits, osxsave) {
			keys = append(keys, [2]uint32{c.leaf, c.sub})
		}
	}
	keys = append(keys, [2]uint32{0, 0}, [2]uint32{0x80000000, 0})
	slices.SortFunc(keys, func(a, b [2]uint32) int {
		if a[0] != b[0] {
			return int(int64(a[0]) - int64(b[0]))
		}
		return int(a[1]) - int(b[1])
	})
	keys = slices.Compact(keys)
	var sb strings.Builder
	sb.WriteString("# leaf sub eax ebx ecx edx\n")
	for _, k := range keys {
		r := rawCPUID(k[0], k[1])
		fmt.Fprintf(&sb, "%#x %#x %#08x %#08x %#08x %#08x\n", k[0], k[1], r[0], r[1], r[2], r[3])
	}
	fmt.Fprintf(&sb, "xcr0 %#x\n", rawXCR0())
	if err := os.WriteFile("testdata/host.cpuid.new", []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
