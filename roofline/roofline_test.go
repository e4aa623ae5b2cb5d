package roofline

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
)

func TestLookup(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"H100", "NVIDIA H100 SXM"}, {"h100-sxm", "NVIDIA H100 SXM"}, {"NVIDIA H100 SXM", "NVIDIA H100 SXM"},
		{"h200", "NVIDIA H200"}, {"A100", "NVIDIA A100 SXM"},
	} {
		g, err := Lookup(c.in)
		if err != nil || g.Name != c.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", c.in, g.Name, err, c.want)
		}
	}
	if _, err := Lookup("V100"); err == nil || !strings.Contains(err.Error(), `unknown GPU "V100"`) {
		t.Errorf("Lookup(V100): %v", err)
	}
}

// ptxasReport is the shape of ptxas 11.8's -v report.
const ptxasReport = `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'slc_ew_0123456789ab' for 'sm_90'
ptxas info    : Function properties for slc_ew_0123456789ab
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 20 registers
ptxas info    : Compiling entry function 'slc_matmul_ba9876543210' for 'sm_90'
ptxas info    : Function properties for slc_matmul_ba9876543210
    8 bytes stack frame, 16 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 56 registers, 18432 bytes smem
`

func TestParsePtxas(t *testing.T) {
	got := ParsePtxas(ptxasReport)
	want := map[string]Usage{
		"slc_ew_0123456789ab":     {Registers: 20},
		"slc_matmul_ba9876543210": {Registers: 56, SharedBytes: 18432, Spills: 16},
	}
	if len(got) != len(want) {
		t.Fatalf("ParsePtxas: %v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
}

func TestClass(t *testing.T) {
	for in, want := range map[string]string{
		"slc_ew_0123456789ab":                 "ew",
		"slc_mt_ew_0123456789ab":              "mt_ew",
		"slc_lowranksparseadd_0123456789ab_s": "lowranksparseadd_s",
		"slc_red_0123456789ab_sum":            "red_sum",
		"slc_ew_0123456789ab_2":               "ew_2",
		"other":                               "other",
	} {
		if got := Class(in); got != want {
			t.Errorf("Class(%q) = %q, want %q", in, got, want)
		}
	}
}

// gpuX is a round-numbered GPU for hand-computed expectations.
var gpuX = GPU{Name: "X", SMs: 100, TensorTFLOPS: 1000, SIMTTFLOPS: 100, HBMGBps: 1000, LaunchUs: 2,
	ThreadsPerSM: 2048, RegsPerSM: 65536, SharedPerSM: 200 << 10, BlocksPerSM: 32}

// TestPredict checks each bound against the formulas by hand: a launch of
// nothing, a memory-bound kernel filling the GPU, a one-block reduction, a
// compute-bound tensor-core product and the one-launch design's geometry.
func TestPredict(t *testing.T) {
	art := &artifact.Artifact{
		Target: artifact.Target{Kind: artifact.TargetCUDA, CPU: "sm_90"},
		Programs: []*artifact.Program{{
			Name: "p", ScratchBytes: 1 << 20, Slots: []artifact.Slot{{Name: "x", Type: ir.T(ir.F32, 1), Kind: artifact.SlotState}},
			Steps: []artifact.Step{
				{Kernel: "slc_ew_000000000001", Grid: 1, Block: 256},
				{Kernel: "slc_ew_000000000002", Grid: 800, Block: 256, Bytes: 1e9, Flops: 1e8},
				{Kernel: "slc_red_000000000003", Grid: 1, Block: 256, Bytes: 1e8},
				{Kernel: "slc_matmul_000000000004", Grid: 400, Block: 256, Bytes: 1e8, Flops: 1e13, TensorCore: true},
				{Kernel: "slc_ew_000000000005", Grid: 3, Block: 32},
			},
		}},
	}
	usage := map[string]Usage{
		"slc_ew_000000000001": {Registers: 32}, "slc_ew_000000000002": {Registers: 32},
		"slc_red_000000000003": {Registers: 32, SharedBytes: 8192}, "slc_matmul_000000000004": {Registers: 64, SharedBytes: 18432},
		"slc_ew_000000000005": {Registers: 32},
	}
	p, err := Predict(art, gpuX, Options{Usage: usage})
	if err != nil {
		t.Fatal(err)
	}
	const launch = 2e-6
	// 32 registers × 256 threads: 8 blocks per SM; 800 blocks fill 100 SMs
	// with 8 each = 64 warps ≥ 16: full bandwidth, 1 GB at 1 TB/s.
	ew := launch + 1e9/1e12
	// One block on one of 100 SMs, 8 warps of the 16 that saturate it.
	red := launch + 1e8/(1e12*0.01*0.5)
	// 64 registers: 4 blocks per SM (shared allows 11); 400 blocks = one
	// wave; tensor cores at tensorEff.
	mm := launch + 1e13/(1000e12*tensorEff)
	want := []struct {
		t     float64
		bound string
	}{{launch, "launch"}, {ew, "memory"}, {red, "memory"}, {mm, "compute"}, {launch, "launch"}}
	for i, w := range want {
		k := p.Kernels[i]
		if math.Abs(k.Seconds-w.t) > 1e-9*w.t || k.Bound() != w.bound {
			t.Errorf("step %d (%s): %.9f s %s, want %.9f s %s", i, k.Name, k.Seconds, k.Bound(), w.t, w.bound)
		}
	}
	if p.Estimated != 0 || p.Launches("") != 5 || math.Abs(p.Seconds("p")-(2*launch+ew+red+mm)) > 1e-12 {
		t.Errorf("estimated %d, launches %d, seconds %g", p.Estimated, p.Launches(""), p.Seconds("p"))
	}
	// The one-launch design: 4 blocks per SM, capped by 1 MiB of scratch
	// per thread in 1 GiB (4 blocks of 256), and by each kernel's units
	// (3 blocks of 32 threads: one block of 256).
	o, err := Predict(art, gpuX, Options{OneLaunch: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, wantGrid := range []int{1, 4, 1, 4, 1} {
		if o.Kernels[i].Grid != wantGrid {
			t.Errorf("one launch, step %d: grid %d, want %d", i, o.Kernels[i].Grid, wantGrid)
		}
	}
	if o.Estimated != 5 {
		t.Errorf("one launch without usage: %d estimated, want 5", o.Estimated)
	}
	var buf bytes.Buffer
	Write(&buf, p, 3e12, "test")
	for _, s := range []string{"prediction (a roofline model, not a measurement) on X", "matmul", "step: 5 launches", "MFU predicted"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, buf.String())
		}
	}
	if _, err := Predict(&artifact.Artifact{Target: artifact.Target{Kind: artifact.TargetCPU}}, gpuX, Options{}); err == nil {
		t.Error("a CPU artifact was predicted")
	}
}
