package runtime

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
)

// hostDevice is a Device over host memory that runs the test artifact's CPU
// kernels as its "PTX": each launch calls the kernel once per GPU thread, in
// order, with that thread's tid of grid×block and scratch. It checks the GPU
// half of the runtime (layout in device memory, argument tables, copies in
// and out, state updates) against the CPU half with the same kernels; the
// PTX itself is checked in e2e through the emulator.
type hostDevice struct {
	grid, block int
	lib         *library
	bar         barrier
	steps       unsafe.Pointer
	live        map[uint64]int64
	launches    int
	log         []string // "kernel grid×block stride" of every launch
	failAlloc   int64    // Alloc of this size fails
	failKernel  string   // Launch of this kernel fails
	loadErr     error
}

func newHostDevice(grid, block int) *hostDevice {
	return &hostDevice{grid: grid, block: block, live: map[uint64]int64{}}
}

func (d *hostDevice) Name() string { return "host test device" }

func (d *hostDevice) Load(t artifact.Target, code string) error {
	if d.loadErr != nil {
		return d.loadErr
	}
	if t.Kind != artifact.TargetCUDA {
		return fmt.Errorf("target %q", t.Kind)
	}
	lib, err := openCode([]byte(code))
	if err != nil {
		return err
	}
	d.lib = lib
	if d.bar, err = newBarrier(1); err != nil {
		return err
	}
	d.steps, err = cAlloc(stepSize, 64)
	return err
}

func (d *hostDevice) Geometry() (int, int) { return d.grid, d.block }

func (d *hostDevice) Alloc(n int64) (uint64, error) {
	if n == d.failAlloc {
		return 0, errors.New("out of device memory")
	}
	p, err := cAlloc(n, artifact.Alignment)
	if err != nil {
		return 0, err
	}
	d.live[uint64(uintptr(p))] = n
	return uint64(uintptr(p)), nil
}

// mem views device memory at addr.
func (d *hostDevice) mem(addr uint64, n int64) []byte {
	return unsafe.Slice((*byte)(ptrOf(addr)), n)
}

func (d *hostDevice) Free(addr uint64) error {
	if _, ok := d.live[addr]; !ok {
		return fmt.Errorf("free of %#x, not allocated", addr)
	}
	delete(d.live, addr)
	cFree(ptrOf(addr))
	return nil
}

func (d *hostDevice) Write(dst uint64, src []byte) error {
	copy(d.mem(dst, int64(len(src))), src)
	return nil
}
func (d *hostDevice) Read(dst []byte, src uint64) error {
	copy(dst, d.mem(src, int64(len(dst))))
	return nil
}
func (d *hostDevice) Copy(dst, src uint64, n int64) error {
	copy(d.mem(dst, n), d.mem(src, n))
	return nil
}

func (d *hostDevice) Launch(kernel string, grid, block, shared int, args, scratch, stride uint64) error {
	if kernel == d.failKernel {
		return errors.New("illegal memory access")
	}
	fn, err := d.lib.sym(kernel)
	if err != nil {
		return err
	}
	d.launches++
	d.log = append(d.log, fmt.Sprintf("%s %d×%d %d", kernel, grid, block, stride))
	n := grid * block
	setStep(d.steps, 0, fn, ptrOf(args), ptrOf(scratch), int64(stride), n)
	for tid := range n {
		runSteps(d.steps, 1, tid, n, d.bar, nil)
	}
	return nil
}

func (d *hostDevice) Sync() error { return nil }

func (d *hostDevice) Close() error {
	if d.lib != nil {
		d.lib.close()
		d.bar.free()
		cFree(d.steps)
	}
	return nil
}

// cudaArtifact is the test artifact retargeted to the cuda device.
func cudaArtifact(t testing.TB) *artifact.Artifact {
	a := testArtifact(t)
	a.Target = artifact.Target{Kind: artifact.TargetCUDA, Triple: "nvptx64-nvidia-cuda", CPU: "sm_90", Features: "+ptx78"}
	return a
}

// TestGPURunsLikeCPU runs every program of the test artifact on the GPU half
// (through hostDevice) and on the CPU half with as many threads, and wants
// the same outputs and state bit for bit after every run.
func TestGPURunsLikeCPU(t *testing.T) {
	dev := newHostDevice(2, 3)
	g, err := Load(cudaArtifact(t), Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	c := load(t, testArtifact(t), 6)
	if g.Threads() != 6 || g.Device() != dev {
		t.Fatalf("Threads() = %d, Device() = %v", g.Threads(), g.Device())
	}
	if grid, block := g.Geometry(); grid != 2 || block != 3 {
		t.Fatalf("Geometry() = %d, %d", grid, block)
	}
	runs := []struct {
		prog string
		in   Inputs
	}{
		{"train", Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.25}}},
		{"train", Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.5}}},
		{"embed", Inputs{Data: map[string][]int64{"tokens": {3, 0, 15, 3, 7, 1}}}},
		{"barrier", Inputs{}},
		{"swap", Inputs{}},
		{"copy", Inputs{}},
		{"count", Inputs{}},
		{"count", Inputs{}},
	}
	for i, r := range runs {
		want, err := c.Run(r.prog, r.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := g.Run(r.prog, r.in)
		if err != nil {
			t.Fatalf("run %d (%s) on the GPU: %v", i, r.prog, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("run %d (%s): GPU outputs %v, CPU %v", i, r.prog, got, want)
		}
		for _, name := range c.StateNames() {
			a, _ := c.State(name)
			b, err := g.State(name)
			if err != nil || !reflect.DeepEqual(a, b) {
				t.Errorf("run %d (%s): state %s differs (%v)", i, r.prog, name, err)
			}
		}
	}
	// Each GPU thread ran with its own tid of grid×block and its own
	// scratch area.
	want, _ := c.Run("threads", Inputs{Scalars: map[string]float64{"nbytes": 100}})
	got, err := g.Run("threads", Inputs{Scalars: map[string]float64{"nbytes": 100}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"tids", "ok"} {
		if !reflect.DeepEqual(got[o], want[o]) {
			t.Errorf("threads: %s %v on the GPU, %v on the CPU", o, i64(t, got[o]), i64(t, want[o]))
		}
	}
	if err := g.SetStateFloat32("b", make([]float32, 100)); err != nil {
		t.Fatal(err)
	}
	if x, _ := g.State("b"); !reflect.DeepEqual(x.Data, make([]byte, 400)) {
		t.Error("SetStateFloat32 did not reach the device")
	}
	if err := g.Profile(true); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run("count", Inputs{}); err != nil {
		t.Fatal(err)
	}
	rep := g.ProfileReport()
	if len(rep) != 1 || rep[0].Kernel != "count_step" || rep[0].Calls != 100 {
		t.Errorf("profile %+v, want count_step called 100 times", rep)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if len(dev.live) != 0 {
		t.Errorf("%d device allocations left after Close", len(dev.live))
	}
	dev.Close()
}

func TestGPUErrors(t *testing.T) {
	// Data crosses into the device before the launch: a bad binding leaves
	// the state as it was, as on the CPU.
	dev := newHostDevice(1, 2)
	g, err := Load(cudaArtifact(t), Options{Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	defer g.Close()
	before, _ := g.State("w")
	if _, err := g.Run("train", Inputs{Floats: map[string][]float32{"g": make([]float32, 3)}, Scalars: map[string]float64{"lr": 1}}); err == nil {
		t.Error("a short binding ran")
	}
	if after, _ := g.State("w"); !reflect.DeepEqual(before, after) {
		t.Error("a failed bind changed the state")
	}
	dev.failKernel = "axpy_b"
	_, err = g.Run("train", Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 1}})
	if err == nil || !strings.Contains(err.Error(), `program "train" on host test device: step 1 (axpy_b): illegal memory access`) {
		t.Errorf("failing launch: %v", err)
	}

	for _, tc := range []struct {
		name string
		dev  func(*hostDevice)
		opt  Options
		want string
	}{
		{"load", func(d *hostDevice) { d.loadErr = errors.New("PTX too new") }, Options{}, "PTX too new"},
		{"arena", func(d *hostDevice) { d.failAlloc = 8064 }, Options{}, "the arena (8064 bytes): out of device memory"},
		{"state", func(d *hostDevice) { d.failAlloc = 4032 }, Options{}, `state "w" (f32[10,100]): out of device memory`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newHostDevice(1, 1)
			if tc.dev != nil {
				tc.dev(d)
			}
			defer d.Close()
			tc.opt.Device = d
			r, err := Load(cudaArtifact(t), tc.opt)
			if err == nil {
				r.Close()
				t.Fatalf("loaded; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want %q", err, tc.want)
			}
			if len(d.live) != 0 {
				t.Errorf("%d device allocations left after a failed Load", len(d.live))
			}
		})
	}
}

// TestNoCUDA: on a machine without a CUDA GPU, a cuda artifact is one clear
// error naming the way out.
func TestNoCUDA(t *testing.T) {
	if d, err := OpenCUDA(); err == nil {
		t.Skipf("this machine has a CUDA GPU (%s)", d.Name())
	}
	_, err := Load(cudaArtifact(t), Options{})
	if err == nil || !strings.Contains(err.Error(), "the artifact runs on a CUDA GPU (sm_90): no CUDA driver") || !strings.Contains(err.Error(), "recompile it for the CPU") {
		t.Fatalf("got %v", err)
	}
}

// TestGPUStepGeometry: steps carrying a launch geometry run on it (grid,
// block, their own scratch stride), steps without one on the device's,
// Options override both, and the results stay the CPU's.
func TestGPUStepGeometry(t *testing.T) {
	art := cudaArtifact(t)
	tr := art.Program("train")
	tr.Steps[0].Grid, tr.Steps[0].Block, tr.Steps[0].ScratchBytes = 5, 4, 100
	tr.Steps[2].Grid, tr.Steps[2].Block = 1, 7
	c := load(t, testArtifact(t), 6)
	in := Inputs{Floats: map[string][]float32{"g": gradient()}, Scalars: map[string]float64{"lr": 0.25}}
	want, err := c.Run("train", in)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opt  Options
		want []string
	}{
		{Options{}, []string{"scale_w 5×4 128", "axpy_b 2×3 64", "sum_loss 1×7 64"}},
		{Options{GPUGrid: 3}, []string{"scale_w 3×4 128", "axpy_b 3×3 64", "sum_loss 3×7 64"}},
		{Options{GPUBlock: 2}, []string{"scale_w 5×2 128", "axpy_b 2×2 64", "sum_loss 1×2 64"}},
	} {
		dev := newHostDevice(2, 3)
		tc.opt.Device = dev
		g, err := Load(art, tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := g.Run("train", in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%+v: outputs %v, CPU %v", tc.opt, got, want)
		}
		if !reflect.DeepEqual(dev.log, tc.want) {
			t.Errorf("%+v: launches %q, want %q", tc.opt, dev.log, tc.want)
		}
		gr, bl, sh, sc, ok := g.StepLaunch("train", 0)
		if got := fmt.Sprintf("scale_w %d×%d %d", gr, bl, sc); !ok || sh != 0 || got != tc.want[0] {
			t.Errorf("%+v: StepLaunch(train, 0) = %q, shared %d, %v; want %q", tc.opt, got, sh, ok, tc.want[0])
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
