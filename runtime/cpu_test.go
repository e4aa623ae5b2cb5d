package runtime

import (
	"strings"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/target"
)

// TestCPUDevice: a CPU artifact runs on the CPU Device its target names,
// one block of a thread per worker, with its buffers filled in place (no
// staging copy) and the GPU launch overrides ignored.
func TestCPUDevice(t *testing.T) {
	a := testArtifact(t)
	r, err := Load(a, Options{Threads: 3, GPUGrid: 5, GPUBlock: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want, _ := a.Target.Parse()
	if r.Target() != want || r.Target().IsCUDA() || want != target.NewCPU(a.Target.CPU, a.Target.Features) {
		t.Errorf("Target() = %v, want %v", r.Target(), want)
	}
	if _, ok := r.Device().(*cpuDevice); !ok || !strings.Contains(r.Device().Name(), "CPU (3 threads)") {
		t.Fatalf("Device() = %T %q", r.Device(), r.Device().Name())
	}
	if grid, block := r.Geometry(); grid != 3 || block != 1 || r.Threads() != 3 {
		t.Errorf("Geometry() = %d, %d; Threads() = %d", grid, block, r.Threads())
	}
	if grid, block, shared, _, ok := r.StepLaunch("train", 0); !ok || grid != 3 || block != 1 || shared != 0 {
		t.Errorf("StepLaunch = %d, %d, %d, %v", grid, block, shared, ok)
	}
	b := r.state["w"]
	if s := r.staging(b); unsafe.Pointer(unsafe.SliceData(s)) != ptrOf(b.addr) || int64(len(s)) != b.typ.Bytes() {
		t.Error("staging on the CPU is a copy, not the buffer")
	}
	if r.DeviceBytes() <= 0 {
		t.Errorf("DeviceBytes() = %d", r.DeviceBytes())
	}
}

// TestCPULaunchFewerThreads: a launch on fewer threads than the device has
// runs the kernel on those only (the others wait at its barrier), each with
// its tid of the launch's count.
func TestCPULaunchFewerThreads(t *testing.T) {
	r := load(t, testArtifact(t), 4)
	defer r.Close()
	p := r.programs["threads"]
	for i := range p.launches {
		p.launches[i].grid = 2
	}
	out, err := r.Run("threads", Inputs{Scalars: map[string]float64{"nbytes": 100}})
	if err != nil {
		t.Fatal(err)
	}
	ref := load(t, testArtifact(t), 2)
	defer ref.Close()
	want, err := ref.Run("threads", Inputs{Scalars: map[string]float64{"nbytes": 100}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"tids", "ok"} {
		if string(out[o].Data) != string(want[o].Data) {
			t.Errorf("%s: %v on 2 of 4 threads, %v on 2", o, i64(t, out[o]), i64(t, want[o]))
		}
	}
}
