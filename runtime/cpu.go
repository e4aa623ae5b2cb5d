package runtime

import (
	"fmt"
	goruntime "runtime"
	"sync"
	"unsafe"

	"gitee.com/gidean/conv-linn/artifact"
)

// cpuDevice is this machine's CPU as a Device: a CPU artifact's shared
// object loaded with dlopen, C memory, and a persistent pool of OS threads
// (one per Geometry thread; the caller of Sync is thread 0) that run the
// queued steps through the trampoline (cgo.go), a barrier after each.
//
// Its memory is host memory, so addresses are pointers: Write, Read and
// Copy are memcpy, and the runtime fills buffers in place through Bytes
// (hostMemory) instead of staging copies. Launch only appends the step to
// a C array; Sync runs the array in one cgo call per thread, so a program
// run costs what it did before the CPU was a Device: a kernel call and a
// barrier per step.
type cpuDevice struct {
	threads int
	lib     *library
	kernels map[string]unsafe.Pointer
	bar     barrier
	jobs    []chan job // one per worker thread (tid 1 … threads-1)
	workers sync.WaitGroup
	queue   unsafe.Pointer // C array of slc_step
	cap, n  int            // its capacity and the steps queued
}

// job asks a worker thread to run queued steps.
type job struct {
	steps  unsafe.Pointer
	nsteps int
}

// hostMemory is a Device whose memory the host addresses directly (the
// CPU): the runtime fills and reads its buffers in place.
type hostMemory interface {
	// Bytes views n bytes of device memory at addr, after every queued
	// launch. The view must not outlive the allocation.
	Bytes(addr uint64, n int64) []byte
}

// kernelResolver is a Device that finds kernels when the code is loaded
// (the CPU: in the shared object), so that a missing one fails Load rather
// than the first run.
type kernelResolver interface {
	Resolve(kernel string) error
}

// timedSyncer is a Device that times each queued step itself (the CPU: in
// the trampoline, well under a microsecond a step), instead of the runtime
// waiting after every launch.
type timedSyncer interface {
	// SyncTimed is Sync that adds each queued step's nanoseconds to ns[i].
	SyncTimed(ns []int64) error
}

// newCPUDevice starts threads−1 worker threads.
func newCPUDevice(threads int) (*cpuDevice, error) {
	d := &cpuDevice{threads: threads, kernels: map[string]unsafe.Pointer{}}
	var err error
	if d.bar, err = newBarrier(threads); err != nil {
		return nil, err
	}
	d.jobs = make([]chan job, threads-1)
	for i := range d.jobs {
		ch := make(chan job, 1)
		d.jobs[i] = ch
		d.workers.Add(1)
		go func(tid int) {
			defer d.workers.Done()
			goruntime.LockOSThread()
			defer goruntime.UnlockOSThread()
			for j := range ch {
				runSteps(j.steps, j.nsteps, tid, threads, d.bar, nil)
			}
		}(i + 1)
	}
	return d, nil
}

// cpuThreads checks Options.Threads and resolves 0 to one per CPU.
func cpuThreads(threads int) (int, error) {
	switch {
	case threads < 0 || threads > MaxThreads:
		return 0, fmt.Errorf("threads must be between 1 and %d (or 0 for one per CPU), got %d", MaxThreads, threads)
	case threads == 0:
		return goruntime.NumCPU(), nil
	}
	return threads, nil
}

func (d *cpuDevice) Name() string { return fmt.Sprintf("the CPU (%d threads)", d.threads) }

// Load checks that this machine runs t's code (architecture, operating
// system, instruction-set extensions) and loads the shared object.
func (d *cpuDevice) Load(t artifact.Target, code string) error {
	if err := checkTarget(t); err != nil {
		return err
	}
	lib, err := openCode(unsafe.Slice(unsafe.StringData(code), len(code)))
	if err != nil {
		return err
	}
	d.lib = lib
	return nil
}

// Resolve finds kernel in the shared object.
func (d *cpuDevice) Resolve(kernel string) error {
	_, err := d.kernel(kernel)
	return err
}

// kernel is kernel's address, looked up in the shared object once.
func (d *cpuDevice) kernel(name string) (unsafe.Pointer, error) {
	if fn, ok := d.kernels[name]; ok {
		return fn, nil
	}
	fn, err := d.lib.sym(name)
	if err != nil {
		return nil, err
	}
	d.kernels[name] = fn
	return fn, nil
}

// Geometry is one block of a thread per worker: every launch without a
// geometry of its own runs on all of them.
func (d *cpuDevice) Geometry() (grid, block int) { return d.threads, 1 }

func (d *cpuDevice) Alloc(n int64) (uint64, error) {
	p, err := cAlloc(n, artifact.Alignment)
	if err != nil {
		return 0, err
	}
	return uint64(uintptr(p)), nil
}

func (d *cpuDevice) Free(addr uint64) error {
	cFree(ptrOf(addr))
	return nil
}

func (d *cpuDevice) Bytes(addr uint64, n int64) []byte {
	d.flush()
	return unsafe.Slice((*byte)(ptrOf(addr)), n)
}

func (d *cpuDevice) Write(dst uint64, src []byte) error {
	copy(d.Bytes(dst, int64(len(src))), src)
	return nil
}

func (d *cpuDevice) Read(dst []byte, src uint64) error {
	copy(dst, d.Bytes(src, int64(len(dst))))
	return nil
}

func (d *cpuDevice) Copy(dst, src uint64, n int64) error {
	copy(d.Bytes(dst, n), d.Bytes(src, n))
	return nil
}

// Launch queues kernel on the first grid×block threads (all of them at
// most); shared memory does not exist on the CPU.
func (d *cpuDevice) Launch(kernel string, grid, block, shared int, args, scratch, stride uint64) error {
	fn, err := d.kernel(kernel)
	if err != nil {
		return err
	}
	if d.n == d.cap {
		if err := d.grow(); err != nil {
			return err
		}
	}
	setStep(d.queue, d.n, fn, ptrOf(args), ptrOf(scratch), int64(stride), min(grid*block, d.threads))
	d.n++
	return nil
}

// grow doubles the queue's capacity.
func (d *cpuDevice) grow() error {
	c := max(64, 2*d.cap)
	q, err := cAlloc(int64(c)*stepSize, 64)
	if err != nil {
		return err
	}
	if d.queue != nil {
		copy(unsafe.Slice((*byte)(q), d.n*stepSize), unsafe.Slice((*byte)(d.queue), d.n*stepSize))
		cFree(d.queue)
	}
	d.queue, d.cap = q, c
	return nil
}

func (d *cpuDevice) Sync() error {
	d.run(nil)
	return nil
}

func (d *cpuDevice) SyncTimed(ns []int64) error {
	if len(ns) < d.n {
		return fmt.Errorf("%d steps queued, times for %d", d.n, len(ns))
	}
	if d.n > 0 {
		d.run(&ns[0])
	}
	return nil
}

// flush runs whatever is queued.
func (d *cpuDevice) flush() {
	if d.n > 0 {
		d.run(nil)
	}
}

// run runs the queued steps on every thread and returns when all are done:
// the trampoline ends with a barrier, so when thread 0 returns every thread
// has finished the last step.
func (d *cpuDevice) run(ns *int64) {
	if d.n == 0 {
		return
	}
	j := job{steps: d.queue, nsteps: d.n}
	for _, ch := range d.jobs {
		ch <- j
	}
	runSteps(d.queue, d.n, 0, d.threads, d.bar, ns)
	d.n = 0
}

// Close stops the threads and unloads the code (not memory from Alloc).
func (d *cpuDevice) Close() error {
	for _, ch := range d.jobs {
		close(ch)
	}
	d.workers.Wait()
	d.jobs = nil
	if d.bar.b != nil {
		d.bar.free()
		d.bar = barrier{}
	}
	if d.queue != nil {
		cFree(d.queue)
		d.queue, d.cap, d.n = nil, 0, 0
	}
	if d.lib != nil {
		err := d.lib.close()
		d.lib = nil
		if err != nil {
			return fmt.Errorf("unloading the artifact's code: %w", err)
		}
	}
	return nil
}

// ptrOf turns a host device address back into a pointer (C memory, never
// Go's).
func ptrOf(addr uint64) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&addr)) }
