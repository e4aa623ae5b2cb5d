package runtime

import (
	"fmt"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
)

// Device is what an artifact runs on: this machine's CPU (a CPU artifact's
// shared object, C memory and a pool of threads; cpu.go) or a GPU (a cuda
// artifact's PTX in device memory; OpenCUDA, the default, through the CUDA
// driver; slc's tests implement it over a PTX emulator). The artifact's
// target chooses it. The runtime lays the artifact out in device memory
// (state, one arena, scratch, each step's argument table) and drives it
// through these few calls only, so that the training loop, checkpoints and
// export see the same Runtime on every device.
//
// Addresses are the device's: the kernels dereference them. A Device is used
// by one Runtime at a time, from one goroutine at a time.
type Device interface {
	// Name describes the device for messages ("NVIDIA H200 (sm_90)",
	// "the CPU (8 threads)").
	Name() string
	// Load prepares the artifact's code for target: a GPU's PTX module, the
	// CPU's shared object (one clear error when the device cannot run it:
	// an older GPU, a driver too old for the PTX version, a CPU without an
	// extension the code uses).
	Load(target artifact.Target, ptx string) error
	// Geometry is the launch that fills the device: blocks per grid and
	// threads per block. slc's kernels split their work over any number of
	// threads; the runtime launches each step on the geometry the compiler
	// recorded for it, and this for steps without one (artifacts of slc
	// before per-kernel geometry), fewer blocks when the threads' scratch
	// areas would not fit in MaxScratchBytes.
	Geometry() (grid, block int)
	// Alloc returns n zeroed bytes of device memory (aligned for any type).
	Alloc(n int64) (uint64, error)
	// Free releases memory from Alloc.
	Free(addr uint64) error
	// Write copies host bytes to dst after every queued launch.
	Write(dst uint64, src []byte) error
	// Read copies device bytes to the host after every queued launch.
	Read(dst []byte, src uint64) error
	// Copy queues a copy of n bytes on the device.
	Copy(dst, src uint64, n int64) error
	// Launch queues kernel on grid blocks of block threads with shared
	// bytes of dynamic shared memory and slc's CUDA ABI parameters (see
	// codegen/lower: the step's argument table, the threads' scratch, its
	// stride per thread; the CPU's kernel ABI takes the same, per thread).
	Launch(kernel string, grid, block, shared int, args, scratch, stride uint64) error
	// Sync waits for everything queued; a kernel's fault surfaces here.
	Sync() error
	// Close releases the module (not memory from Alloc).
	Close() error
}

// gpuArch returns the compute capability of an sm_XY target name (sm_90 →
// 9, 0).
func gpuArch(sm string) (major, minor int, err error) {
	v, ok := strings.CutPrefix(sm, "sm_")
	n, perr := strconv.Atoi(strings.TrimRight(v, "a"))
	if !ok || perr != nil || n < 10 {
		return 0, 0, fmt.Errorf("artifact targets GPU %q, not an sm_XY name", sm)
	}
	return n / 10, n % 10, nil
}
