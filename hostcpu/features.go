// Package hostcpu tells which x86-64 instruction-set extensions this machine
// can run, by asking the CPU (CPUID) and the operating system (XGETBV: the
// register state it saves), never a text file such as /proc/cpuinfo whose
// spelling differs between kernels. Extensions go by their LLVM feature names
// ("avx2", "lzcnt", "avx512bf16"), the names an artifact's target records.
//
// The table covers every feature LLVM 19's host detection reports, so an
// artifact compiled for this host (LLVM's own CPUID reading) always passes the
// runtime's check on this host.
package hostcpu

import (
	"sort"
	"sync"
)

// reg names a CPUID output register.
type reg uint8

const (
	eax reg = iota
	ebx
	ecx
	edx
)

// cpuBit is one CPUID bit: leaf, sub-leaf, register, bit.
type cpuBit struct {
	leaf, sub uint32
	r         reg
	bit       uint8
}

// XCR0 state components the OS must enable before code may use a register
// file: SSE|AVX for ymm, plus opmask|ZMM_Hi256|Hi16_ZMM for AVX-512, the
// tile state for AMX, the extended GPRs for APX.
const (
	stateAVX    uint64 = 0x6
	stateAVX512 uint64 = 0xe6
	stateAMX    uint64 = 0x60000
	stateAPX    uint64 = 1 << 19
)

// feature is what an extension needs: every listed CPUID bit set and every
// XCR0 bit of state enabled.
type feature struct {
	bits  []cpuBit
	state uint64
}

func b(leaf, sub uint32, r reg, bit uint8) cpuBit { return cpuBit{leaf, sub, r, bit} }

// Frequently used leaves.
var (
	osxsave  = b(1, 0, ecx, 27)
	avx512f  = b(7, 0, ebx, 16)
	avx10    = b(7, 1, edx, 19)
	apx      = b(7, 1, edx, 21)
	keyLock  = b(7, 0, ecx, 23)
	pkuBit   = b(7, 0, ecx, 3)
	ospkeBit = b(7, 0, ecx, 4)
)

func f(bits ...cpuBit) feature                   { return feature{bits: bits} }
func withState(s uint64, bits ...cpuBit) feature { return feature{bits: bits, state: s} }

// table maps each LLVM x86 feature name to its CPUID bits and OS state, as
// the Intel SDM (vol. 2A, CPUID) and AMD APM (vol. 3, appendix E) define them.
var table = map[string]feature{
	// Leaf 1.
	"x87": f(b(1, 0, edx, 0)), "cx8": f(b(1, 0, edx, 8)), "cmov": f(b(1, 0, edx, 15)),
	"mmx": f(b(1, 0, edx, 23)), "fxsr": f(b(1, 0, edx, 24)), "sse": f(b(1, 0, edx, 25)),
	"sse2": f(b(1, 0, edx, 26)),
	"sse3": f(b(1, 0, ecx, 0)), "pclmul": f(b(1, 0, ecx, 1)), "ssse3": f(b(1, 0, ecx, 9)),
	"fma": withState(stateAVX, b(1, 0, ecx, 12)), "cx16": f(b(1, 0, ecx, 13)),
	"sse4.1": f(b(1, 0, ecx, 19)), "sse4.2": f(b(1, 0, ecx, 20)), "crc32": f(b(1, 0, ecx, 20)),
	"movbe": f(b(1, 0, ecx, 22)), "popcnt": f(b(1, 0, ecx, 23)), "aes": f(b(1, 0, ecx, 25)),
	"xsave": f(b(1, 0, ecx, 26), osxsave), "avx": withState(stateAVX, b(1, 0, ecx, 28)),
	"f16c": withState(stateAVX, b(1, 0, ecx, 29)), "rdrnd": f(b(1, 0, ecx, 30)),

	// Leaf 7, sub-leaf 0, EBX.
	"fsgsbase": f(b(7, 0, ebx, 0)), "sgx": f(b(7, 0, ebx, 2)), "bmi": f(b(7, 0, ebx, 3)),
	"avx2": withState(stateAVX, b(7, 0, ebx, 5)), "bmi2": f(b(7, 0, ebx, 8)),
	"invpcid": f(b(7, 0, ebx, 10)), "rtm": f(b(7, 0, ebx, 11)),
	"avx512f": withState(stateAVX512, avx512f), "evex512": withState(stateAVX512, avx512f),
	"avx512dq": withState(stateAVX512, b(7, 0, ebx, 17)), "rdseed": f(b(7, 0, ebx, 18)),
	"adx": f(b(7, 0, ebx, 19)), "avx512ifma": withState(stateAVX512, b(7, 0, ebx, 21)),
	"clflushopt": f(b(7, 0, ebx, 23)), "clwb": f(b(7, 0, ebx, 24)),
	"avx512cd": withState(stateAVX512, b(7, 0, ebx, 28)), "sha": f(b(7, 0, ebx, 29)),
	"avx512bw": withState(stateAVX512, b(7, 0, ebx, 30)), "avx512vl": withState(stateAVX512, b(7, 0, ebx, 31)),

	// Leaf 7, sub-leaf 0, ECX.
	"avx512vbmi": withState(stateAVX512, b(7, 0, ecx, 1)), "pku": f(pkuBit, ospkeBit),
	"waitpkg": f(b(7, 0, ecx, 5)), "avx512vbmi2": withState(stateAVX512, b(7, 0, ecx, 6)),
	"shstk": f(b(7, 0, ecx, 7)), "gfni": f(b(7, 0, ecx, 8)),
	"vaes": withState(stateAVX, b(7, 0, ecx, 9)), "vpclmulqdq": withState(stateAVX, b(7, 0, ecx, 10)),
	"avx512vnni": withState(stateAVX512, b(7, 0, ecx, 11)), "avx512bitalg": withState(stateAVX512, b(7, 0, ecx, 12)),
	"avx512vpopcntdq": withState(stateAVX512, b(7, 0, ecx, 14)), "rdpid": f(b(7, 0, ecx, 22)),
	"kl": f(keyLock), "cldemote": f(b(7, 0, ecx, 25)), "movdiri": f(b(7, 0, ecx, 27)),
	"movdir64b": f(b(7, 0, ecx, 28)), "enqcmd": f(b(7, 0, ecx, 29)),

	// Leaf 7, sub-leaf 0, EDX.
	"uintr": f(b(7, 0, edx, 5)), "avx512vp2intersect": withState(stateAVX512, b(7, 0, edx, 8)),
	"serialize": f(b(7, 0, edx, 14)), "tsxldtrk": f(b(7, 0, edx, 16)), "pconfig": f(b(7, 0, edx, 18)),
	"amx-bf16": withState(stateAMX, b(7, 0, edx, 22)), "avx512fp16": withState(stateAVX512, b(7, 0, edx, 23)),
	"amx-tile": withState(stateAMX, b(7, 0, edx, 24)), "amx-int8": withState(stateAMX, b(7, 0, edx, 25)),

	// Leaf 7, sub-leaf 1.
	"sha512": withState(stateAVX, b(7, 1, eax, 0)), "sm3": withState(stateAVX, b(7, 1, eax, 1)),
	"sm4": withState(stateAVX, b(7, 1, eax, 2)), "raoint": f(b(7, 1, eax, 3)),
	"avxvnni": withState(stateAVX, b(7, 1, eax, 4)), "avx512bf16": withState(stateAVX512, b(7, 1, eax, 5)),
	"cmpccxadd": f(b(7, 1, eax, 7)), "amx-fp16": withState(stateAMX, b(7, 1, eax, 21)),
	"hreset": f(b(7, 1, eax, 22)), "avxifma": withState(stateAVX, b(7, 1, eax, 23)),
	"avxvnniint8": withState(stateAVX, b(7, 1, edx, 4)), "avxneconvert": withState(stateAVX, b(7, 1, edx, 5)),
	"amx-complex": withState(stateAMX, b(7, 1, edx, 8)), "avxvnniint16": withState(stateAVX, b(7, 1, edx, 10)),
	"prefetchi": f(b(7, 1, edx, 14)), "usermsr": f(b(7, 1, edx, 15)),
	"avx10.1-256": withState(stateAVX512, avx10), "avx10.1-512": withState(stateAVX512, avx10, b(0x24, 0, ebx, 18)),
	"egpr": withState(stateAPX, apx), "push2pop2": withState(stateAPX, apx), "ppx": withState(stateAPX, apx),
	"ndd": withState(stateAPX, apx), "ccmp": withState(stateAPX, apx), "cf": withState(stateAPX, apx),

	// Leaves 0xD (XSAVE variants), 0x14 (processor trace), 0x19 (Key Locker).
	"xsaveopt": f(b(0xd, 1, eax, 0), osxsave), "xsavec": f(b(0xd, 1, eax, 1), osxsave),
	"xsaves": f(b(0xd, 1, eax, 3), osxsave), "ptwrite": f(b(0x14, 0, ebx, 4)),
	"widekl": f(keyLock, b(0x19, 0, ebx, 2)),

	// Extended leaves (AMD's, most shared with Intel).
	"sahf": f(b(0x80000001, 0, ecx, 0)), "lzcnt": f(b(0x80000001, 0, ecx, 5)),
	"sse4a": f(b(0x80000001, 0, ecx, 6)), "prfchw": f(b(0x80000001, 0, ecx, 8)),
	"xop": withState(stateAVX, b(0x80000001, 0, ecx, 11)), "lwp": f(b(0x80000001, 0, ecx, 15)),
	"fma4": withState(stateAVX, b(0x80000001, 0, ecx, 16)), "tbm": f(b(0x80000001, 0, ecx, 21)),
	"mwaitx": f(b(0x80000001, 0, ecx, 29)), "64bit": f(b(0x80000001, 0, edx, 29)),
	"clzero": f(b(0x80000008, 0, ebx, 0)), "rdpru": f(b(0x80000008, 0, ebx, 4)),
	"wbnoinvd": f(b(0x80000008, 0, ebx, 9)),
}

// Known reports whether name is an x86 feature this package can check.
func Known(name string) bool { _, ok := table[name]; return ok }

// Names returns every feature name the package can check, sorted.
func Names() []string {
	names := make([]string, 0, len(table))
	for n := range table {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// query runs CPUID for a leaf and sub-leaf: EAX, EBX, ECX, EDX.
type query func(leaf, sub uint32) [4]uint32

// probe is the answer for one CPU: every supported feature name.
type probe struct{ has map[string]bool }

// detect evaluates the table on a CPU's CPUID answers and XCR0. A leaf above
// the CPU's maximum (CPUID 0 / 0x80000000, or leaf 7's sub-leaf count) reads
// as zero, as the SDM requires callers to treat it.
func detect(q query, xcr0 uint64) *probe {
	maxBasic := q(0, 0)[0]
	maxExt := q(0x80000000, 0)[0]
	var maxSub7 uint32
	if maxBasic >= 7 {
		maxSub7 = q(7, 0)[0]
	}
	valid := func(c cpuBit) bool {
		switch {
		case c.leaf >= 0x80000000:
			return c.leaf <= maxExt
		case c.leaf == 7:
			return maxBasic >= 7 && c.sub <= maxSub7
		default:
			return c.leaf <= maxBasic
		}
	}
	cache := map[[2]uint32][4]uint32{}
	read := func(c cpuBit) bool {
		if !valid(c) {
			return false
		}
		k := [2]uint32{c.leaf, c.sub}
		regs, ok := cache[k]
		if !ok {
			regs = q(c.leaf, c.sub)
			cache[k] = regs
		}
		return regs[c.r]&(1<<c.bit) != 0
	}
	p := &probe{has: map[string]bool{}}
	for name, ft := range table {
		ok := xcr0&ft.state == ft.state
		for _, c := range ft.bits {
			ok = ok && read(c)
		}
		if ok && ft.state != 0 {
			ok = read(osxsave) // XCR0 means nothing unless the OS set OSXSAVE
		}
		if ok {
			p.has[name] = true
		}
	}
	return p
}

// Level returns the highest x86-64 psABI microarchitecture level (1 to 4:
// x86-64, x86-64-v2, -v3, -v4) whose every feature this host supports; 0
// when it is not x86-64 at all.
func Level() int {
	level := 0
	for i, feats := range levels {
		for _, n := range feats {
			if !Supported(n) {
				return level
			}
		}
		level = i + 1
	}
	return level
}

// levels are the features each psABI level adds (LLVM's x86-64, x86-64-v2,
// x86-64-v3, x86-64-v4 CPUs).
var levels = [][]string{
	{"64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2", "x87"},
	{"cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3", "crc32"},
	{"avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"},
	{"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "evex512"},
}

// LevelCPU is the LLVM CPU name of psABI level n ("x86-64-v3"), "" for 0.
func LevelCPU(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "x86-64"
	}
	return "x86-64-v" + string(rune('0'+n))
}

// once is sync.OnceValue, named for the probe.
func once[T any](fn func() T) func() T { return sync.OnceValue(fn) }
