package hostcpu

// cpuid executes CPUID with EAX = leaf and ECX = sub.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// xgetbv reads XCR0, the register state the operating system saves and
// restores; only valid when CPUID reports OSXSAVE.
func xgetbv() (eax, edx uint32)

// Supported reports whether the CPU reports the instruction-set extension
// the LLVM feature name denotes and the operating system enables the
// register state it needs. Names Known does not know are never supported.
func Supported(name string) bool { return host().has[name] }

// host probes the CPU once.
var host = once(func() *probe {
	var q query = func(leaf, sub uint32) [4]uint32 {
		a, b, c, d := cpuid(leaf, sub)
		return [4]uint32{a, b, c, d}
	}
	var xcr0 uint64
	if _, _, c, _ := cpuid(1, 0); c&(1<<27) != 0 { // OSXSAVE: XGETBV is usable
		lo, hi := xgetbv()
		xcr0 = uint64(hi)<<32 | uint64(lo)
	}
	return detect(q, xcr0)
})
