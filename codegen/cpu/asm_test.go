package cpu

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// funcAsm returns the assembly of every function whose label starts with
// prefix, keyed by label.
func funcAsm(asm, prefix string) map[string]string {
	out := map[string]string{}
	lines := strings.Split(asm, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.Trim(lines[i], `"`)
		if !strings.HasPrefix(l, prefix) || !strings.HasSuffix(lines[i], ":") {
			continue
		}
		name := strings.Trim(strings.TrimSuffix(lines[i], ":"), `"`)
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], ".Lfunc_end"); i++ {
			body = append(body, lines[i])
		}
		out[name] = strings.Join(body, "\n")
	}
	return out
}

// TestMicroKernelAsm checks that the optimized micro-kernels are what the
// design promises: vector FMAs on zmm (AVX-512) or ymm (AVX2) registers,
// and no accumulator spilled to the stack. A control with a tile too large
// for AVX2's 16 registers checks that spills are detected.
func TestMicroKernelAsm(t *testing.T) {
	for _, c := range []struct {
		name   string
		tm     llvm.TargetMachine
		reg    string
		tile   [2]int // MR, NR; zero for the default
		spills bool   // a control: this tile cannot fit in the registers
	}{
		{"avx512", func() llvm.TargetMachine {
			tm, err := llvm.NewTargetMachine(llvm.DefaultTargetTriple(), llvm.MachineOptions{
				CPU: "znver4", Features: "+avx512f,+avx512vl,+avx512bw,+avx512dq,+avx2,+fma,+avx", OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tm.Dispose)
			return tm
		}(), "zmm", [2]int{}, false},
		{"avx2", avx2Machine(t), "ymm", [2]int{}, false},
		{"host", hostMachine(t), "", [2]int{}, false},
		{"avx2-too-big", avx2Machine(t), "ymm", [2]int{8, 32}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewGenerator(c.tm)
			if c.tile[0] != 0 {
				g.Blocking.MR, g.Blocking.NR = c.tile[0], c.tile[1]
			}
			reg := c.reg
			if reg == "" {
				reg = map[int]string{16: "zmm", 8: "ymm", 4: "xmm"}[g.Arch.VectorWidth]
			}
			ctx := llvm.NewContext()
			defer ctx.Dispose()
			m := ctx.NewModule("asm")
			defer m.Dispose()
			m.ConfigureFor(c.tm)
			for _, s := range []GEMM{
				{Name: "fwd", M: 2048, N: 512, K: 512, TransB: true, Alpha: 1},
				{Name: "dw", M: 100, N: 37, K: 300, TransA: true, Alpha: 0.5, Accumulate: true},
			} {
				if _, err := g.Add(m, s); err != nil {
					t.Fatal(err)
				}
			}
			if err := Optimize(m, c.tm); err != nil {
				t.Fatal(err)
			}
			asm, err := c.tm.Emit(m, llvm.AssemblyFile)
			if err != nil {
				t.Fatal(err)
			}
			fma := regexp.MustCompile(`vfmadd\d+ps\s+%` + reg + `\d+, %` + reg + `\d+, %` + reg + `\d+`)
			mks := 0
			for _, prefix := range []string{"fwd.mk.", "dw.mk."} {
				for name, body := range funcAsm(string(asm), prefix) {
					mks++
					if n := len(fma.FindAllString(body, -1)); n == 0 {
						t.Errorf("%s has no vfmadd…ps on %s registers:\n%s", name, reg, body)
					}
					// A micro-kernel has no locals and makes no calls: any
					// use of the stack is a register spill.
					spills := strings.Contains(body, "%rsp")
					if spills && !c.spills {
						t.Errorf("%s spills registers:\n%s", name, body)
					} else if !spills && c.spills && strings.HasSuffix(name, fmt.Sprintf(".m%d.n%d", c.tile[0], c.tile[1])) {
						t.Errorf("%s: the spill detector found no spill in a 32-accumulator AVX2 kernel", name)
					}
				}
			}
			if mks < 3 {
				t.Fatalf("found %d micro-kernels in the assembly, want ≥ 3", mks)
			}
		})
	}
}

// TestMicroKernelAsmBF16 checks that bf16 GEMMs for an AVX512-BF16 target
// multiply with vdpbf16ps on zmm registers in every micro-kernel, without
// spilling accumulators, while the same GEMMs for AVX-512 without it
// (x86-64-v4) take the converting fallback: vfmadd…ps only, no vdpbf16ps.
func TestMicroKernelAsmBF16(t *testing.T) {
	dot := regexp.MustCompile(`vdpbf16ps\s+(%zmm\d+|[^,]*\(%\w+[^)]*\)\{1to16\}), %zmm\d+, %zmm\d+`)
	fma := regexp.MustCompile(`vfmadd\d+ps\s+[^\n]*%zmm\d+, %zmm\d+`)
	for _, c := range []struct {
		name string
		tm   llvm.TargetMachine
		dot  bool
	}{
		{"znver4", func() llvm.TargetMachine {
			tm, err := llvm.NewTargetMachine(llvm.DefaultTargetTriple(), llvm.MachineOptions{
				CPU: "znver4", Features: "+avx512f,+avx512bf16,+avx512bw,+avx512vl", OptLevel: llvm.CodeGenAggressive, Reloc: llvm.RelocPIC,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(tm.Dispose)
			return tm
		}(), true},
		{"x86-64-v4", cpuMachine(t, "x86-64-v4"), false},
		{"host", hostMachine(t), hostHasBF16()},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewGenerator(c.tm)
			if g.Arch.AMX {
				t.Skip("host has AMX: its bf16 GEMMs take tiles (TestMicroKernelAsmAMX)")
			}
			if g.Arch.BF16 != c.dot {
				t.Fatalf("arch %+v: BF16 = %v, want %v", g.Arch, g.Arch.BF16, c.dot)
			}
			ctx := llvm.NewContext()
			defer ctx.Dispose()
			m := ctx.NewModule("asm")
			defer m.Dispose()
			m.ConfigureFor(c.tm)
			for _, s := range []GEMM{
				{Name: "fwd", M: 2048, N: 512, K: 512, TransB: true, Alpha: 1, ElemA: BF16, ElemB: BF16, ElemC: BF16},
				{Name: "dw", M: 100, N: 37, K: 3001, TransA: true, Alpha: 0.5, Accumulate: true, ElemA: BF16, ElemB: BF16, ElemC: BF16},
				{Name: "mixed", M: 64, N: 64, K: 1000, Alpha: 1, ElemA: BF16, ElemB: BF16},
			} {
				k, err := g.Add(m, s)
				if err != nil {
					t.Fatal(err)
				}
				if k.DotBF16 != c.dot {
					t.Errorf("%s: DotBF16 = %v, want %v", s.Name, k.DotBF16, c.dot)
				}
			}
			if err := Optimize(m, c.tm); err != nil {
				t.Fatal(err)
			}
			asm, err := c.tm.Emit(m, llvm.AssemblyFile)
			if err != nil {
				t.Fatal(err)
			}
			mks := 0
			for _, prefix := range []string{"fwd.mk.", "dw.mk.", "mixed.mk."} {
				for name, body := range funcAsm(string(asm), prefix) {
					mks++
					nd, nf := len(dot.FindAllString(body, -1)), len(fma.FindAllString(body, -1))
					var rows, cols int
					if _, err := fmt.Sscanf(name[strings.LastIndex(name, ".m"):], ".m%d.n%d", &rows, &cols); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					// alpha·acc + C may become one vfmadd per C vector.
					switch epilogue := rows * ceilDiv(cols, 16); {
					case c.dot && (nd < rows*ceilDiv(cols, 16) || nf > epilogue):
						t.Errorf("%s: %d vdpbf16ps on zmm and %d vfmadd…ps, want only vdpbf16ps in the k loop:\n%s", name, nd, nf, body)
					case !c.dot && (nf == 0 || strings.Contains(body, "vdpbf16ps")):
						t.Errorf("%s: %d vfmadd…ps on zmm, vdpbf16ps %v, want only vfmadd:\n%s", name, nf, strings.Contains(body, "vdpbf16ps"), body)
					}
					if strings.Contains(body, "%rsp") {
						t.Errorf("%s spills registers:\n%s", name, body)
					}
				}
			}
			if mks < 6 {
				t.Fatalf("found %d micro-kernels in the assembly, want ≥ 6", mks)
			}
			if !c.dot && !strings.Contains(string(asm), "vpmovzxwd") {
				t.Error("fallback: no vpmovzxwd widening bf16 while packing")
			}
		})
	}
}

// TestMicroKernelAsmAMX compiles (only: it runs on any host) bf16 GEMMs for
// Sapphire Rapids and checks that they take the AMX path: every
// micro-kernel loads tiles (tileloadd) and multiplies them with one
// tdpbf16ps per C tile and k step, spilling no vector, every kernel loads
// its configuration (ldtilecfg) and releases it (tilerelease), no emulated
// tile function is left, and a bf16·float32 product stays off the tiles. AVX-512 targets
// without AMX (znver4, x86-64-v4) do not get it.
func TestMicroKernelAsmAMX(t *testing.T) {
	for _, cpu := range []string{"znver4", "x86-64-v4"} {
		if a := NewGenerator(cpuMachine(t, cpu)).Arch; a.AMX {
			t.Errorf("%s: arch %+v has AMX", cpu, a)
		}
	}
	tm := cpuMachine(t, "sapphirerapids")
	g := NewGenerator(tm)
	if !g.Arch.AMX || !g.Arch.BF16 || g.Arch.VectorWidth != 16 {
		t.Fatalf("sapphirerapids: arch %+v, want AMX, BF16, width 16", g.Arch)
	}
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("asm")
	defer m.Dispose()
	m.ConfigureFor(tm)
	specs := []GEMM{
		{Name: "fwd", M: 2048, N: 512, K: 512, TransB: true, Alpha: 1, ElemA: BF16, ElemB: BF16, ElemC: BF16},
		{Name: "dw", M: 100, N: 37, K: 3001, TransA: true, Alpha: 0.5, Accumulate: true, ElemA: BF16, ElemB: BF16, ElemC: BF16},
		{Name: "mixed", M: 64, N: 64, K: 1000, Alpha: 1, ElemA: BF16, ElemB: BF16},
		{Name: "half", M: 64, N: 64, K: 100, Alpha: 1, ElemA: BF16},
	}
	for _, s := range specs {
		k, err := g.Add(m, s)
		if err != nil {
			t.Fatal(err)
		}
		if want := s.ElemB == BF16; k.AMX != want || k.DotBF16 {
			t.Errorf("%s: AMX %v DotBF16 %v, want AMX %v", s.Name, k.AMX, k.DotBF16, want)
		}
	}
	if err := Optimize(m, tm); err != nil {
		t.Fatal(err)
	}
	out, err := tm.Emit(m, llvm.AssemblyFile)
	if err != nil {
		t.Fatal(err)
	}
	asm := string(out)
	if strings.Contains(asm, ".tile.") {
		t.Error("the assembly calls emulated tile functions")
	}
	tdp := regexp.MustCompile(`tdpbf16ps\s+%tmm[4-7], %tmm[4-7], %tmm[0-3]`)
	// A vector stored to the stack (the workspace kernels' seventh
	// parameter is read from there, which is no spill).
	spill := regexp.MustCompile(`%[xyz]mm\d+, -?\d*\(%rsp\)`)
	mks := 0
	for _, s := range specs[:3] {
		fns := funcAsm(asm, s.Name)
		drv := fns[s.Name]
		if !strings.Contains(drv, "ldtilecfg") || !strings.Contains(drv, "tilerelease") {
			t.Errorf("%s: kernel without ldtilecfg and tilerelease:\n%s", s.Name, drv)
		}
		for name, body := range funcAsm(asm, s.Name+".mk.") {
			mks++
			var kc, rows, cols int
			if _, err := fmt.Sscanf(name[len(s.Name)+len(".mk."):], "k%d.m%d.n%d", &kc, &rows, &cols); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			tiles := ceilDiv(rows, 16) * ceilDiv(cols, 16)
			if n := len(tdp.FindAllString(body, -1)); n < tiles || n%tiles != 0 || !strings.Contains(body, "tileloadd") || !strings.Contains(body, "tilestored") {
				t.Errorf("%s: %d tdpbf16ps for %d C tiles, tileloadd %v:\n%s", name, n, tiles, strings.Contains(body, "tileloadd"), body)
			}
			if strings.Contains(body, "vdpbf16ps") || strings.Contains(body, "call") {
				t.Errorf("%s: vdpbf16ps or a call in an AMX micro-kernel:\n%s", name, body)
			}
			if spill.MatchString(body) {
				t.Errorf("%s spills registers (the C tiles' vectors must stream from the staging area):\n%s", name, body)
			}
		}
	}
	if mks < 6 {
		t.Fatalf("found %d AMX micro-kernels, want ≥ 6", mks)
	}
	if body := funcAsm(asm, "half")["half"]; strings.Contains(body, "tile") {
		t.Errorf("bf16·float32 GEMM uses tiles:\n%s", body)
	}
}
