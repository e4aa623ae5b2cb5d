// Package cudadrv is a minimal binding of the CUDA driver API, loaded at run
// time from libcuda.so.1 (no CUDA toolkit or headers at build time), for the
// runtime's cuda device: load a PTX module, allocate and copy device memory,
// launch kernels in order on the legacy default stream (or on a stream of
// its own, captured once into a CUDA graph and replayed), synchronize. The driver's types are declared here
// from its documented ABI (CUdeviceptr is 64-bit, handles are pointers).
package cudadrv

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef int CUresult;
typedef uint64_t CUdeviceptr;

static void *h;
static CUresult (*p_cuInit)(unsigned);
static CUresult (*p_cuDeviceGet)(int *, int);
static CUresult (*p_cuDevicePrimaryCtxRetain)(void **, int);
static CUresult (*p_cuCtxSetCurrent)(void *);
static CUresult (*p_cuModuleLoadDataEx)(void **, const void *, unsigned, void *, void **);
static CUresult (*p_cuModuleGetFunction)(void **, void *, const char *);
static CUresult (*p_cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemFree)(CUdeviceptr);
static CUresult (*p_cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
static CUresult (*p_cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
static CUresult (*p_cuMemsetD8)(CUdeviceptr, unsigned char, size_t);
static CUresult (*p_cuLaunchKernel)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
	unsigned, void *, void **, void **);
static CUresult (*p_cuCtxSynchronize)(void);
static CUresult (*p_cuGetErrorString)(CUresult, const char **);
static CUresult (*p_cuDeviceGetName)(char *, int, int);
static CUresult (*p_cuDeviceGetAttribute)(int *, int, int);
static CUresult (*p_cuMemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
static CUresult (*p_cuMemGetInfo)(size_t *, size_t *);
static CUresult (*p_cuDriverGetVersion)(int *);
static CUresult (*p_cuModuleUnload)(void *);
// CUDA graphs (optional: a driver without them launches directly).
static CUresult (*p_cuStreamCreate)(void **, unsigned);
static CUresult (*p_cuStreamDestroy)(void *);
static CUresult (*p_cuStreamBeginCapture)(void *, int);
static CUresult (*p_cuStreamEndCapture)(void *, void **);
static CUresult (*p_cuGraphInstantiateWithFlags)(void **, void *, unsigned long long);
static CUresult (*p_cuGraphLaunch)(void *, void *);
static CUresult (*p_cuGraphExecDestroy)(void *);
static CUresult (*p_cuGraphDestroy)(void *);

static const char *load(void) {
	h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) return dlerror();
#define SYM(name, sym) if (!(*(void **)&p_##name = dlsym(h, sym))) return "libcuda.so.1 lacks " sym;
	SYM(cuInit, "cuInit")
	SYM(cuDeviceGet, "cuDeviceGet")
	SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
	SYM(cuCtxSetCurrent, "cuCtxSetCurrent")
	SYM(cuModuleLoadDataEx, "cuModuleLoadDataEx")
	SYM(cuModuleGetFunction, "cuModuleGetFunction")
	SYM(cuMemAlloc, "cuMemAlloc_v2")
	SYM(cuMemFree, "cuMemFree_v2")
	SYM(cuMemcpyHtoD, "cuMemcpyHtoD_v2")
	SYM(cuMemcpyDtoH, "cuMemcpyDtoH_v2")
	SYM(cuMemsetD8, "cuMemsetD8_v2")
	SYM(cuLaunchKernel, "cuLaunchKernel")
	SYM(cuCtxSynchronize, "cuCtxSynchronize")
	SYM(cuGetErrorString, "cuGetErrorString")
	SYM(cuDeviceGetName, "cuDeviceGetName")
	SYM(cuDeviceGetAttribute, "cuDeviceGetAttribute")
	SYM(cuMemcpyDtoD, "cuMemcpyDtoD_v2")
	SYM(cuMemGetInfo, "cuMemGetInfo_v2")
	SYM(cuDriverGetVersion, "cuDriverGetVersion")
	SYM(cuModuleUnload, "cuModuleUnload")
	return 0;
}

// load_graphs resolves the graph entry points (CUDA 11.4's
// cuGraphInstantiateWithFlags the newest); 0 when the driver has them all.
static const char *load_graphs(void) {
	SYM(cuStreamCreate, "cuStreamCreate")
	SYM(cuStreamDestroy, "cuStreamDestroy_v2")
	SYM(cuStreamBeginCapture, "cuStreamBeginCapture_v2")
	SYM(cuStreamEndCapture, "cuStreamEndCapture")
	SYM(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags")
	SYM(cuGraphLaunch, "cuGraphLaunch")
	SYM(cuGraphExecDestroy, "cuGraphExecDestroy")
	SYM(cuGraphDestroy, "cuGraphDestroy")
	return 0;
}

static const char *errstr(CUresult r) {
	const char *s = 0;
	if (p_cuGetErrorString && p_cuGetErrorString(r, &s) == 0 && s) return s;
	return "unknown CUDA error";
}

static CUresult c_init(int *dev, void **ctx, char *name, int n) {
	CUresult r;
	if ((r = p_cuInit(0))) return r;
	if ((r = p_cuDeviceGet(dev, 0))) return r;
	if ((r = p_cuDevicePrimaryCtxRetain(ctx, *dev))) return r;
	if ((r = p_cuCtxSetCurrent(*ctx))) return r;
	return p_cuDeviceGetName(name, n, *dev);
}
static CUresult c_load(void **mod, const char *ptx) { return p_cuModuleLoadDataEx(mod, ptx, 0, 0, 0); }
static CUresult c_func(void **f, void *mod, const char *name) { return p_cuModuleGetFunction(f, mod, name); }
static CUresult c_alloc(CUdeviceptr *p, size_t n) {
	CUresult r = p_cuMemAlloc(p, n ? n : 1);
	if (r) return r;
	return p_cuMemsetD8(*p, 0, n ? n : 1);
}
static CUresult c_free(CUdeviceptr p) { return p_cuMemFree(p); }
static CUresult c_htod(CUdeviceptr d, const void *s, size_t n) { return n ? p_cuMemcpyHtoD(d, s, n) : 0; }
static CUresult c_dtoh(void *d, CUdeviceptr s, size_t n) { return n ? p_cuMemcpyDtoH(d, s, n) : 0; }
static CUresult c_dtod(CUdeviceptr d, CUdeviceptr s, size_t n) { return n ? p_cuMemcpyDtoD(d, s, n) : 0; }
static CUresult c_launch3(void *f, unsigned grid, unsigned block, unsigned shared, uint64_t a, uint64_t b, uint64_t c) {
	void *params[3] = {&a, &b, &c};
	return p_cuLaunchKernel(f, grid, 1, 1, block, 1, 1, shared, 0, params, 0);
}
static CUresult c_launch3_on(void *stream, void *f, unsigned grid, unsigned block, unsigned shared, uint64_t a, uint64_t b, uint64_t c) {
	void *params[3] = {&a, &b, &c};
	return p_cuLaunchKernel(f, grid, 1, 1, block, 1, 1, shared, stream, params, 0);
}
// A blocking stream (flags 0): it orders itself with the legacy default
// stream, where copies run, both ways.
static CUresult c_stream(void **s) { return p_cuStreamCreate(s, 0); }
static CUresult c_stream_destroy(void *s) { return p_cuStreamDestroy(s); }
// Relaxed capture (mode 2): the capturing goroutine's C calls may run on
// different OS threads.
static CUresult c_begin_capture(void *s) { return p_cuStreamBeginCapture(s, 2); }
static CUresult c_end_capture(void *s, void **g) { return p_cuStreamEndCapture(s, g); }
static CUresult c_instantiate(void **e, void *g) { return p_cuGraphInstantiateWithFlags(e, g, 0); }
static CUresult c_graph_launch(void *e, void *s) { return p_cuGraphLaunch(e, s); }
static CUresult c_graph_destroy(void *e, void *g) {
	CUresult r = e ? p_cuGraphExecDestroy(e) : 0, r2 = g ? p_cuGraphDestroy(g) : 0;
	return r ? r : r2;
}
static CUresult c_sync(void) { return p_cuCtxSynchronize(); }
static CUresult c_attr(int *v, int attr, int dev) { return p_cuDeviceGetAttribute(v, attr, dev); }
static CUresult c_meminfo(size_t *free, size_t *total) { return p_cuMemGetInfo(free, total); }
static CUresult c_version(int *v) { return p_cuDriverGetVersion(v); }
static CUresult c_unload(void *m) { return p_cuModuleUnload(m); }
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

var (
	loadOnce  sync.Once
	loadErr   error
	graphsErr error // why the driver cannot capture graphs; nil when it can
)

// Device is the first CUDA device with its primary context current.
type Device struct {
	Name string
	// Major and Minor are the compute capability (9, 0 for sm_90).
	Major, Minor int
	// SMs is the number of streaming multiprocessors.
	SMs int
	// Driver is the driver's CUDA version, 1000·major + 10·minor.
	Driver int
	// TotalMem is the device memory in bytes.
	TotalMem int64
}

// Device attributes (CUdevice_attribute).
const (
	attrSMs   = 16
	attrMajor = 75
	attrMinor = 76
)

// Open loads libcuda.so.1 and makes device 0's primary context current. No
// driver, or no device, is one error saying so.
func Open() (*Device, error) {
	loadOnce.Do(func() {
		if msg := C.load(); msg != nil {
			loadErr = fmt.Errorf("no CUDA driver (%s)", C.GoString(msg))
			return
		}
		if msg := C.load_graphs(); msg != nil {
			graphsErr = fmt.Errorf("no CUDA graphs in this driver (%s)", C.GoString(msg))
		}
	})
	if loadErr != nil {
		return nil, loadErr
	}
	var dev C.int
	var ctx unsafe.Pointer
	var name [256]C.char
	if r := C.c_init(&dev, &ctx, &name[0], C.int(len(name))); r != 0 {
		return nil, fmt.Errorf("CUDA: no usable device: %s", C.GoString(C.errstr(r)))
	}
	d := &Device{Name: C.GoString(&name[0])}
	for _, a := range []struct {
		attr int
		dst  *int
	}{{attrMajor, &d.Major}, {attrMinor, &d.Minor}, {attrSMs, &d.SMs}} {
		var v C.int
		if err := check("device attribute", C.c_attr(&v, C.int(a.attr), dev)); err != nil {
			return nil, err
		}
		*a.dst = int(v)
	}
	var v C.int
	if err := check("driver version", C.c_version(&v)); err != nil {
		return nil, err
	}
	d.Driver = int(v)
	var free, total C.size_t
	if err := check("memory info", C.c_meminfo(&free, &total)); err != nil {
		return nil, err
	}
	d.TotalMem = int64(total)
	return d, nil
}

// FreeMem returns the device memory not in use, in bytes.
func FreeMem() (int64, error) {
	var free, total C.size_t
	err := check("memory info", C.c_meminfo(&free, &total))
	return int64(free), err
}

func check(what string, r C.CUresult) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("CUDA %s: %s", what, C.GoString(C.errstr(r)))
}

// Module is a loaded PTX module.
type Module struct{ m unsafe.Pointer }

// LoadPTX JIT-compiles ptx for the current device.
func (d *Device) LoadPTX(ptx string) (*Module, error) {
	c := C.CString(ptx)
	defer C.free(unsafe.Pointer(c))
	var m unsafe.Pointer
	if err := check("module load (PTX too new for this driver?)", C.c_load(&m, c)); err != nil {
		return nil, err
	}
	return &Module{m}, nil
}

// Unload releases the module (its kernels are unusable afterwards).
func (m *Module) Unload() error { return check("module unload", C.c_unload(m.m)) }

// Function is a kernel of a module.
type Function struct{ f unsafe.Pointer }

// Function returns the kernel called name.
func (m *Module) Function(name string) (Function, error) {
	c := C.CString(name)
	defer C.free(unsafe.Pointer(c))
	var f unsafe.Pointer
	if err := check("kernel "+name, C.c_func(&f, m.m, c)); err != nil {
		return Function{}, err
	}
	return Function{f}, nil
}

// Ptr is a device address.
type Ptr uint64

// Alloc returns n zeroed bytes of device memory.
func Alloc(n int) (Ptr, error) {
	var p C.CUdeviceptr
	err := check("alloc", C.c_alloc(&p, C.size_t(n)))
	return Ptr(p), err
}

// Free releases p.
func Free(p Ptr) error { return check("free", C.c_free(C.CUdeviceptr(p))) }

// CopyIn copies b to p.
func CopyIn(p Ptr, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return check("copy to device", C.c_htod(C.CUdeviceptr(p), unsafe.Pointer(&b[0]), C.size_t(len(b))))
}

// CopyOut copies len(b) bytes at p into b.
func CopyOut(b []byte, p Ptr) error {
	if len(b) == 0 {
		return nil
	}
	return check("copy from device", C.c_dtoh(unsafe.Pointer(&b[0]), C.CUdeviceptr(p), C.size_t(len(b))))
}

// CopyDevice copies n bytes from src to dst on the device, in stream order.
func CopyDevice(dst, src Ptr, n int64) error {
	return check("copy on device", C.c_dtod(C.CUdeviceptr(dst), C.CUdeviceptr(src), C.size_t(n)))
}

// Launch3 queues f on grid blocks of block threads (shared bytes of dynamic
// shared memory) with three 64-bit parameters (slc's CUDA ABI: args table,
// scratch, stride) on the default stream; it does not wait (Sync does).
func Launch3(f Function, grid, block, shared int, a, b, c uint64) error {
	if f.f == nil {
		return errors.New("CUDA launch: no kernel")
	}
	return check("launch", C.c_launch3(f.f, C.unsigned(grid), C.unsigned(block), C.unsigned(shared), C.uint64_t(a), C.uint64_t(b), C.uint64_t(c)))
}

// Sync waits for every queued launch and copy; a kernel's fault surfaces
// here.
func Sync() error { return check("kernel execution", C.c_sync()) }

// Stream is a CUDA stream of the driver's; the zero Stream is the legacy
// default stream.
type Stream struct{ s unsafe.Pointer }

// Launch3On is Launch3 on stream s (captured into s's graph while s
// captures).
func Launch3On(s Stream, f Function, grid, block, shared int, a, b, c uint64) error {
	if f.f == nil {
		return errors.New("CUDA launch: no kernel")
	}
	return check("launch", C.c_launch3_on(s.s, f.f, C.unsigned(grid), C.unsigned(block), C.unsigned(shared), C.uint64_t(a), C.uint64_t(b), C.uint64_t(c)))
}

// GraphsSupported returns nil when the driver has the CUDA graph entry
// points (stream capture, cuGraphInstantiateWithFlags, cuGraphLaunch), else
// why not. Call it after Open.
func GraphsSupported() error {
	if loadErr != nil {
		return loadErr
	}
	return graphsErr
}

// NewStream creates a blocking stream: work on it and on the legacy default
// stream (Launch3, the copies) is ordered both ways.
func NewStream() (Stream, error) {
	if err := GraphsSupported(); err != nil {
		return Stream{}, err
	}
	var s unsafe.Pointer
	err := check("stream create", C.c_stream(&s))
	return Stream{s}, err
}

// Destroy releases s.
func (s Stream) Destroy() error { return check("stream destroy", C.c_stream_destroy(s.s)) }

// BeginCapture starts capturing s: launches on it are recorded into a
// graph, not run, until EndCapture.
func (s Stream) BeginCapture() error {
	return check("stream capture", C.c_begin_capture(s.s))
}

// Graph is an instantiated CUDA graph.
type Graph struct{ g, exec unsafe.Pointer }

// EndCapture ends s's capture and instantiates what it recorded. The
// capture ends even when it fails (the stream is usable again).
func (s Stream) EndCapture() (*Graph, error) {
	var g unsafe.Pointer
	if err := check("end of stream capture", C.c_end_capture(s.s, &g)); err != nil {
		if g != nil {
			C.c_graph_destroy(nil, g)
		}
		return nil, err
	}
	var e unsafe.Pointer
	if err := check("graph instantiate", C.c_instantiate(&e, g)); err != nil {
		C.c_graph_destroy(nil, g)
		return nil, err
	}
	return &Graph{g: g, exec: e}, nil
}

// Launch queues the whole graph on s; it does not wait (Sync does).
func (g *Graph) Launch(s Stream) error {
	return check("graph launch", C.c_graph_launch(g.exec, s.s))
}

// Destroy releases the graph.
func (g *Graph) Destroy() error {
	err := check("graph destroy", C.c_graph_destroy(g.exec, g.g))
	g.exec, g.g = nil, nil
	return err
}
