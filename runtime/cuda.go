package runtime

import (
	"fmt"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/runtime/internal/cudadrv"
)

// CUDA geometry: 256 threads per block (8 warps), BlocksPerSM blocks on
// each multiprocessor.
const (
	cudaBlock   = 256
	BlocksPerSM = 4
)

// MaxScratchBytes bounds the scratch areas of one launch's GPU threads.
const MaxScratchBytes = artifact.MaxScratchBytes

// cudaDevice is the machine's first GPU through the CUDA driver
// (libcuda.so.1, loaded at run time: a binary built without the CUDA
// toolkit runs on a GPU machine).
type cudaDevice struct {
	d     *cudadrv.Device
	mod   *cudadrv.Module
	funcs map[string]cudadrv.Function
	grid  int
	// stream is where graphs are recorded and replayed (created by the
	// first Capture); capturing routes Launch there while one records.
	stream    cudadrv.Stream
	hasStream bool
	capturing bool
}

// OpenCUDA opens the machine's first CUDA GPU. Without a driver or a device
// the error is one line saying so.
func OpenCUDA() (Device, error) {
	d, err := cudadrv.Open()
	if err != nil {
		return nil, err
	}
	return &cudaDevice{d: d, funcs: map[string]cudadrv.Function{}, grid: max(1, d.SMs) * BlocksPerSM}, nil
}

func (c *cudaDevice) Name() string {
	return fmt.Sprintf("%s (sm_%d%d, %d SMs, %.0f GiB, driver %d.%d)", c.d.Name, c.d.Major, c.d.Minor, c.d.SMs,
		float64(c.d.TotalMem)/(1<<30), c.d.Driver/1000, c.d.Driver%1000/10)
}

func (c *cudaDevice) Load(t artifact.Target, ptx string) error {
	major, minor, err := gpuArch(t.CPU)
	if err != nil {
		return err
	}
	if c.d.Major*10+c.d.Minor < major*10+minor {
		return fmt.Errorf("artifact was compiled for %s but this GPU, %s, is sm_%d%d; recompile it with --gpu sm_%d%d", t.CPU, c.d.Name, c.d.Major, c.d.Minor, c.d.Major, c.d.Minor)
	}
	mod, err := c.d.LoadPTX(ptx)
	if err != nil {
		isa := strings.TrimPrefix(t.Features, "+ptx")
		if len(isa) >= 2 {
			isa = isa[:len(isa)-1] + "." + isa[len(isa)-1:]
		}
		return fmt.Errorf("loading the artifact's PTX (ISA %s, %s) on %s: %w; a driver older than the PTX ISA cannot load it: update the driver", isa, t.CPU, c.d.Name, err)
	}
	c.mod = mod
	return nil
}

func (c *cudaDevice) Geometry() (grid, block int) { return c.grid, cudaBlock }

func (c *cudaDevice) Alloc(n int64) (uint64, error) {
	p, err := cudadrv.Alloc(int(n))
	if err != nil {
		free, _ := cudadrv.FreeMem()
		return 0, fmt.Errorf("%w (%d bytes asked, %d free on %s)", err, n, free, c.d.Name)
	}
	return uint64(p), nil
}

func (c *cudaDevice) Free(addr uint64) error { return cudadrv.Free(cudadrv.Ptr(addr)) }

func (c *cudaDevice) Write(dst uint64, src []byte) error {
	return cudadrv.CopyIn(cudadrv.Ptr(dst), src)
}

func (c *cudaDevice) Read(dst []byte, src uint64) error {
	return cudadrv.CopyOut(dst, cudadrv.Ptr(src))
}

func (c *cudaDevice) Copy(dst, src uint64, n int64) error {
	return cudadrv.CopyDevice(cudadrv.Ptr(dst), cudadrv.Ptr(src), n)
}

func (c *cudaDevice) Launch(kernel string, grid, block, shared int, args, scratch, stride uint64) error {
	f, ok := c.funcs[kernel]
	if !ok {
		var err error
		if f, err = c.mod.Function(kernel); err != nil {
			return err
		}
		c.funcs[kernel] = f
	}
	if c.capturing {
		return cudadrv.Launch3On(c.stream, f, grid, block, shared, args, scratch, stride)
	}
	return cudadrv.Launch3(f, grid, block, shared, args, scratch, stride)
}

// Capture records record's launches on the device's own stream into a CUDA
// graph (ErrNoGraphs when the driver lacks the entry points). The stream is
// blocking: a replay there waits for the copies queued before it on the
// legacy default stream, and the copies and Sync after it wait for it.
func (c *cudaDevice) Capture(record func() error) (Graph, error) {
	if err := cudadrv.GraphsSupported(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoGraphs, err)
	}
	if !c.hasStream {
		s, err := cudadrv.NewStream()
		if err != nil {
			return nil, err
		}
		c.stream, c.hasStream = s, true
	}
	if err := c.stream.BeginCapture(); err != nil {
		return nil, err
	}
	c.capturing = true
	rerr := record()
	c.capturing = false
	g, err := c.stream.EndCapture() // always, so the stream is usable again
	if rerr != nil {
		if g != nil {
			g.Destroy()
		}
		return nil, rerr
	}
	if err != nil {
		return nil, err
	}
	return &cudaGraph{g: g, stream: c.stream}, nil
}

// cudaGraph is a program's launches recorded on the device's stream.
type cudaGraph struct {
	g      *cudadrv.Graph
	stream cudadrv.Stream
}

func (g *cudaGraph) Launch() error  { return g.g.Launch(g.stream) }
func (g *cudaGraph) Destroy() error { return g.g.Destroy() }

func (c *cudaDevice) Sync() error { return cudadrv.Sync() }

func (c *cudaDevice) Close() error {
	if c.mod == nil {
		return nil
	}
	err := c.mod.Unload()
	c.mod, c.funcs = nil, map[string]cudadrv.Function{}
	if c.hasStream {
		if serr := c.stream.Destroy(); serr != nil && err == nil {
			err = serr
		}
		c.hasStream = false
	}
	return err
}
