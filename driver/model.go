package driver

import (
	"fmt"
	"io"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/codegen"
	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/native"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/runtime"
	"gitee.com/gidean/conv-linn/version"
)

// Model is a model to run: a LLaMA config or an ONNX model with the
// settings to compile it in-process (frontend → passes → codegen), or a
// compiled artifact.
type Model struct {
	Path      string // what the user named, for messages
	Kind      string // "LLaMA config", "artifact", "checkpoint", …
	Config    *frontend.LlamaConfig
	Artifact  *artifact.Artifact // set for an artifact
	VocabSize int
	// An ONNX model: its bytes, the module imported from them (with the
	// loss), and the record of how (the checkpoint's config.json).
	ONNX       []byte
	ONNXModule *ir.Module
	Desc       *onnx.Descriptor
	Build      frontend.Options
	Passes     passes.Options
	Codegen    codegen.Options
}

// LoadOptions say how Load runs a model.
type LoadOptions struct {
	Cmd     string    // the command, for usage errors
	Threads int       // CPU threads of the runtime
	Log     io.Writer // receives "Device: …" when a GPU is opened (nil: none)
}

// Module builds the model's IR (an artifact has none to build): the
// config's through the frontend, or a copy of the imported ONNX module.
func (m *Model) Module() (*ir.Module, error) {
	if m.ONNXModule != nil {
		return m.ONNXModule.Clone(), nil
	}
	mod, err := frontend.BuildLlama(m.Config, m.Build)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	return mod, nil
}

// Load compiles the model when it is not an artifact and loads it into a
// runtime. A GPU is opened first: without one, nothing is compiled.
func (m *Model) Load(o LoadOptions) (*runtime.Runtime, error) {
	art := m.Artifact
	var dev runtime.Device
	if m.Codegen.Target.IsCUDA() || (art != nil && art.Target.Kind == artifact.TargetCUDA) {
		d, err := runtime.OpenCUDA()
		if err != nil {
			if art != nil {
				return nil, fmt.Errorf("%s: compiled for a CUDA GPU (%s), but %v; compile the model without --device cuda to run it on the CPU", m.Path, art.Target.CPU, err)
			}
			return nil, fmt.Errorf("--device cuda: %v; without a CUDA GPU, run on the CPU (leave --device cuda out)", err)
		}
		dev = d
		if o.Log != nil {
			fmt.Fprintf(o.Log, "Device: %s\n", d.Name())
		}
	}
	if art == nil {
		var err error
		if art, err = m.compile(o.Cmd); err != nil {
			return nil, err
		}
		native.ReturnFreed() // the compiler's memory, before the model's
	}
	rt, err := runtime.Load(art, runtime.Options{Threads: o.Threads, Version: version.Version, Device: dev})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Path, err)
	}
	return rt, nil
}

// compile builds the model's IR, runs the whole pass pipeline and lowers
// it to native code.
func (m *Model) compile(cmd string) (*artifact.Artifact, error) {
	mod, err := m.Module()
	if err != nil {
		return nil, err
	}
	if err := mod.Verify(); err != nil {
		return nil, &InternalError{fmt.Errorf("the IR built from %s does not verify: %w", m.Path, err)}
	}
	po := m.Passes
	po.Device = m.Codegen.Target.Device.String() // the pipeline's groups are for the device compiled for
	st := &passes.State{Module: mod, Options: po}
	if err := passes.Run(st, passes.Pipeline); err != nil {
		return nil, PassError(cmd, m.Path, err)
	}
	co := m.Codegen
	co.Groups, co.Plans = st.Groups, st.Plans
	return Compile(m.Path, mod, co)
}

// Compile lowers a compiled module to native code. A module without the
// pipeline's groups and plans (IR read from a file, a --passes list that
// left fuse-groups or memory-plan out) gets them from the required passes,
// run on a copy (passes.Schedule), which is what is compiled. Errors start
// with path.
func Compile(path string, m *ir.Module, o codegen.Options) (*artifact.Artifact, error) {
	if m.Graph("train_step") == nil && m.Graph("infer") == nil {
		return nil, fmt.Errorf("%s: nothing to run: the module has no train_step or infer graph (was --passes used?)", path)
	}
	if o.Groups == nil || o.Plans == nil {
		if err := m.Verify(); err != nil {
			return nil, fmt.Errorf("%s: codegen: %w", path, err)
		}
		s, err := passes.Schedule(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m, o.Groups, o.Plans = s.Module, s.Groups, s.Plans
	}
	art, err := codegen.Compile(m, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return art, nil
}

// BuildLlama reads a LLaMA config and builds its IR. Unless the length was
// given explicitly, the default length shrinks to the model's
// max_sequence_length, so that small test models compile without flags; opt
// records the length used. A module the frontend builds but that does not
// verify is slc's bug, not the user's.
func BuildLlama(path string, opt *frontend.Options, lengthSet bool) (*ir.Module, error) {
	cfg, err := frontend.ReadLlamaConfig(path) // errors start with the path
	if err != nil {
		return nil, err
	}
	if !lengthSet && cfg.MaxSequenceLength < opt.SeqLen {
		opt.SeqLen = cfg.MaxSequenceLength
	}
	if opt.SeqLen > cfg.MaxSequenceLength { // --max-length: a usage error in every command
		return nil, &LengthError{Path: path, Length: opt.SeqLen, Max: cfg.MaxSequenceLength}
	}
	m, err := frontend.BuildLlama(cfg, *opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.Verify(); err != nil {
		return nil, &InternalError{fmt.Errorf("the IR built from %s does not verify: %w", path, err)}
	}
	return m, nil
}

// RunsOn says where a runtime runs its kernels, for the lines of a run
// (slc train's Training line, slc bench's timings).
func RunsOn(rt *runtime.Runtime) string {
	if rt.Target().IsCUDA() {
		grid, block := rt.Geometry()
		return fmt.Sprintf("on the GPU (%d blocks of %d threads, %.2f GiB of device memory held)", grid, block, float64(rt.DeviceBytes())/(1<<30))
	}
	return fmt.Sprintf("%d threads", rt.Threads())
}
