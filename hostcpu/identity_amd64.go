package hostcpu

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Identity names this CPU for caches of measurements taken on it: the
// vendor, the brand string, family/model/stepping (CPUID leaf 1, extended
// fields folded in as the SDM says) and every feature Supported reports.
// Two machines with the same Identity run the same code at the same speed
// per core, as far as CPUID can tell.
func Identity() string { return identity() }

var identity = once(func() string {
	var q query = func(leaf, sub uint32) [4]uint32 {
		a, b, c, d := cpuid(leaf, sub)
		return [4]uint32{a, b, c, d}
	}
	var names []string
	for _, n := range Names() {
		if Supported(n) {
			names = append(names, n)
		}
	}
	return identityOf(q, names)
})

// identityOf builds Identity from CPUID answers and the supported features.
func identityOf(q query, features []string) string {
	v := q(0, 0)
	vendor := make([]byte, 12)
	binary.LittleEndian.PutUint32(vendor[0:], v[1])
	binary.LittleEndian.PutUint32(vendor[4:], v[3])
	binary.LittleEndian.PutUint32(vendor[8:], v[2])
	var family, model, stepping uint32
	if v[0] >= 1 {
		a := q(1, 0)[0]
		family, model, stepping = a>>8&0xf, a>>4&0xf, a&0xf
		if family == 0xf {
			family += a >> 20 & 0xff
		}
		if family == 0x6 || family >= 0xf {
			model |= (a >> 16 & 0xf) << 4
		}
	}
	var brand []byte
	if q(0x80000000, 0)[0] >= 0x80000004 {
		for leaf := uint32(0x80000002); leaf <= 0x80000004; leaf++ {
			r := q(leaf, 0)
			for _, x := range r {
				brand = binary.LittleEndian.AppendUint32(brand, x)
			}
		}
	}
	b := strings.Join(strings.Fields(strings.TrimRight(string(brand), "\x00")), " ")
	return fmt.Sprintf("%s %q family %d model %d stepping %d; %s",
		strings.TrimRight(string(vendor), "\x00"), b, family, model, stepping, strings.Join(features, ","))
}
