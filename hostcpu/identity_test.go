//go:build amd64

package hostcpu

import (
	"strings"
	"testing"
)

func TestIdentityOf(t *testing.T) {
	// A Zen 4 (family 0xf + 0xa = 25, model 0x11 = 17) with its brand string.
	brand := "AMD EPYC 9R14 96-Core Processor"
	regs := map[uint32][4]uint32{
		0:          {0x10, 0x68747541, 0x444d4163, 0x69746e65}, // "AuthenticAMD"
		1:          {0x00a10f11, 0, 0, 0},
		0x80000000: {0x80000008, 0, 0, 0},
	}
	b := []byte(brand + strings.Repeat("\x00", 48-len(brand)))
	for i := uint32(0); i < 3; i++ {
		var r [4]uint32
		for j := range r {
			o := 16*i + 4*uint32(j)
			r[j] = uint32(b[o]) | uint32(b[o+1])<<8 | uint32(b[o+2])<<16 | uint32(b[o+3])<<24
		}
		regs[0x80000002+i] = r
	}
	q := func(leaf, sub uint32) [4]uint32 { return regs[leaf] }
	got := identityOf(q, []string{"avx2", "avx512f"})
	want := `AuthenticAMD "AMD EPYC 9R14 96-Core Processor" family 25 model 17 stepping 1; avx2,avx512f`
	if got != want {
		t.Errorf("identityOf = %s\nwant         %s", got, want)
	}
	if id := Identity(); !strings.Contains(id, "family") {
		t.Errorf("Identity() = %q", id)
	}
}
