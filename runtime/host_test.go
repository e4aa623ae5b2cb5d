package runtime

import (
	"math"
	"strings"
	"syscall"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

func TestParseTriple(t *testing.T) {
	tests := []struct {
		triple, arch, goos, err string
	}{
		{"x86_64-unknown-linux-gnu", "amd64", "linux", ""},
		{"x86_64-pc-linux-gnu", "amd64", "linux", ""},
		{"aarch64-apple-darwin23.1.0", "arm64", "darwin", ""},
		{"arm64-apple-macosx14.0.0", "arm64", "darwin", ""},
		{"x86_64-pc-windows-msvc", "amd64", "windows", ""},
		{"i686-unknown-linux-gnu", "386", "linux", ""},
		{"riscv64-unknown-elf", "riscv64", "", ""},
		{"s390x-ibm-linux", "", "", "does not know"}, // big-endian
		{"nvptx64-nvidia-cuda", "", "", "does not know"},
		{"", "", "", "no target triple"},
	}
	for _, tc := range tests {
		arch, goos, err := parseTriple(tc.triple)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want an error containing %q", tc.triple, err, tc.err)
			}
			continue
		}
		if err != nil || arch != tc.arch || goos != tc.goos {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.triple, arch, goos, err, tc.arch, tc.goos)
		}
	}
}

func TestCheckFeatures(t *testing.T) {
	host := map[string]bool{"avx": true, "avx2": true, "fma": true, "sse4.1": true, "avx512bf16": true, "lzcnt": true}
	supported := func(n string) bool { return host[n] }
	tests := []struct {
		features, want string
	}{
		{"", ""},
		{"+avx2,+fma,+sse4.1,-avx512f", ""},
		{"+avx2,+avx512f", "compiled for znver5) needs the CPU feature avx512f, which this CPU lacks; recompile it without --cpu"},
		{"+avx512bf16,+lzcnt", ""},
		{"-cx16,-prfchw", ""},                             // disabled features need nothing
		{"+avx, +sse4.2", "needs the CPU feature sse4.2"}, // spaces are tolerated
		{"+avx,+future-ext", "needs the CPU feature future-ext, which this runtime cannot check"},
	}
	for _, tc := range tests {
		err := checkFeatures("znver5", tc.features, supported)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: got %v, want %q", tc.features, err, tc.want)
		}
	}
}

func TestRequestTiles(t *testing.T) {
	calls := 0
	refuse := func() error { calls++; return syscall.EINVAL }
	grant := func() error { calls++; return nil }
	if err := requestTiles("znver4", "+avx512f,+avx512bf16,-amx-tile", refuse); err != nil || calls != 0 {
		t.Errorf("no AMX: err %v, %d requests; want none", err, calls)
	}
	if err := requestTiles("sapphirerapids", "+avx512f,+amx-bf16,+amx-tile", grant); err != nil || calls != 1 {
		t.Errorf("granted: err %v, %d requests", err, calls)
	}
	err := requestTiles("sapphirerapids", "+amx-tile, +amx-bf16", refuse)
	const want = "artifact (compiled for sapphirerapids) uses AMX tiles, and the kernel refused this process their state (invalid argument); recompile it with a --cpu without AMX, e.g. --cpu x86-64-v4"
	if err == nil || err.Error() != want || calls != 2 {
		t.Errorf("refused: got %v (%d requests), want %q", err, calls, want)
	}
}

func TestConvert(t *testing.T) {
	bf16 := []struct {
		in   float32
		bits uint16
	}{
		{1, 0x3f80}, {-2, 0xc000}, {1.00390625, 0x3f80}, {1.01171875, 0x3f82}, {1.0078125, 0x3f81},
		{float32(math.Inf(1)), 0x7f80}, {math.MaxFloat32, 0x7f80}, {float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, c := range bf16 {
		if got := ir.BF16FromFloat32(c.in); got != c.bits {
			t.Errorf("bf16(%v) = %#04x, want %#04x", c.in, got, c.bits)
		}
	}
	if nan := ir.BF16FromFloat32(math.Float32frombits(0x7f800001)); !math.IsNaN(float64(ir.BF16ToFloat32(nan))) {
		t.Errorf("bf16 of a NaN with low payload is %#04x, not a NaN", nan)
	}
	f16 := []struct {
		in   float64
		bits uint16
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00}, {math.Inf(-1), 0xfc00},
		{0x1p-14, 0x0400}, {0x1p-24, 0x0001}, {0x1p-25, 0x0000}, {0x1.8p-25, 0x0001}, {1 + 0x1p-11, 0x3c00},
		{1 + 0x3p-11, 0x3c02}, {0x1.ffcp-15, 0x0400}, {math.Copysign(0, -1), 0x8000},
	}
	for _, c := range f16 {
		if got := ir.F16FromFloat64(c.in); got != c.bits {
			t.Errorf("f16(%v) = %#04x, want %#04x", c.in, got, c.bits)
		}
	}
	// Every finite half converts to float64 and back unchanged.
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := ir.F16FromFloat64(ir.F16ToFloat64(uint16(h))); got != uint16(h) {
			t.Fatalf("f16 %#04x → %v → %#04x", h, ir.F16ToFloat64(uint16(h)), got)
		}
	}
	if !math.IsNaN(ir.F16ToFloat64(ir.F16FromFloat64(math.NaN()))) {
		t.Error("f16 NaN is not a NaN")
	}

	// Tensor accessors.
	x := Tensor{Type: ir.T(ir.I32), Data: []byte{0xfe, 0xff, 0xff, 0xff}}
	if v, err := x.Scalar(); err != nil || v != -2 {
		t.Errorf("Scalar = %v, %v", v, err)
	}
	if _, err := x.Float32s(); err == nil {
		t.Error("Float32s of an i32 tensor succeeded")
	}
	if _, err := (Tensor{Type: ir.T(ir.F32, 2), Data: make([]byte, 8)}).Int64s(); err == nil {
		t.Error("Int64s of an f32 tensor succeeded")
	}
	if _, err := (Tensor{Type: ir.T(ir.F32, 2), Data: make([]byte, 8)}).Scalar(); err == nil {
		t.Error("Scalar of two elements succeeded")
	}
	if _, err := (Tensor{Type: ir.T(ir.F32, 2), Data: make([]byte, 7)}).Float32s(); err == nil || !strings.Contains(err.Error(), "holds 7 bytes, want 8") {
		t.Errorf("Float32s of a short tensor: %v", err)
	}
}
