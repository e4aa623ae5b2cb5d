package hostcpu

func rawCPUID(leaf, sub uint32) [4]uint32 {
	a, b, c, d := cpuid(leaf, sub)
	return [4]uint32{a, b, c, d}
}

func rawXCR0() uint64 {
	lo, hi := xgetbv()
	return uint64(hi)<<32 | uint64(lo)
}
