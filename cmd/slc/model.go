package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/runtime"
)

// The model a command runs is package driver's; these are its names here.
type modelSpec = driver.Model

var (
	isArtifact  = driver.IsArtifact
	readSource  = driver.ReadSource
	passOptions = driver.PassOptions
)

// The kinds of model file (driver.Kind).
const (
	kindConfig   = driver.KindConfig
	kindText     = driver.KindText
	kindBinary   = driver.KindBinary
	kindArtifact = driver.KindArtifact
	kindONNX     = driver.KindONNX
)

// spec is the model part of a run's settings (checked by trainFlags).
func (s *trainSettings) spec() driver.Spec {
	p, _ := driver.ParsePrecision(s.DType)
	return driver.Spec{
		BatchSize: s.BatchSize, MaxLength: s.MaxLength, Seed: s.Seed, Precision: p, Rows: s.Rows,
		PEFT: s.PEFT, Rank: s.Rank, SpRatio: s.SpRatio, LoraAlpha: s.LoraAlpha, TargetModules: s.TargetModules,
		Optimizer: s.Optimizer, Beta1: s.Beta1, Lowering: s.Lowering, CPU: s.CPU,
	}
}

// take records what opening the model fixed (an artifact's settings, an
// ONNX model's static dims, a config's shorter length).
func (s *trainSettings) take(sp driver.Spec) {
	s.BatchSize, s.MaxLength, s.Seed, s.DType, s.Rows = sp.BatchSize, sp.MaxLength, sp.Seed, sp.Precision.String(), sp.Rows
	s.PEFT, s.Rank, s.SpRatio, s.LoraAlpha, s.TargetModules = sp.PEFT, sp.Rank, sp.SpRatio, sp.LoraAlpha, sp.TargetModules
	s.Optimizer, s.Beta1, s.Lowering, s.CPU = sp.Optimizer, sp.Beta1, sp.Lowering, sp.CPU
}

// artifactFlags are the flags an artifact's settings may contradict.
var artifactFlags = []string{"dtype", "optimizer", "beta1", "batch-size", "max-length", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "rows"}

// openOptions are slc train's flags of opening a model.
func openOptions(c *cli.Context, lengthSet bool) (driver.OpenOptions, error) {
	co, err := codegenOptions(c, "train", nil, nil)
	if err != nil {
		return driver.OpenOptions{}, err
	}
	o := driver.OpenOptions{Cmd: "train", LengthSet: lengthSet, BatchSet: c.IsSet("batch-size"), Codegen: co,
		Freeze: driver.FreezePatterns(c.StringSlice("freeze")), Logits: c.String("logits"),
		ONNXFlags: c.IsSet("dim") || c.IsSet("logits") || c.IsSet("freeze"), Given: map[string]any{}}
	for _, f := range artifactFlags {
		if c.IsSet(f) {
			o.Given[f] = c.Value(f)
		}
	}
	o.DimFlags = c.StringSlice("dim")
	return o, nil
}

// openModel reads slc train's MODEL with the run's settings, which take
// what the model fixes.
func openModel(c *cli.Context, path string, lengthSet bool, s *trainSettings) (*modelSpec, error) {
	o, err := openOptions(c, lengthSet)
	if err != nil {
		return nil, err
	}
	sp := s.spec()
	m, err := driver.Open(path, &sp, o)
	if err != nil {
		return nil, err
	}
	s.take(sp)
	return m, nil
}

// runsOn says where a runtime runs its kernels, for progress lines.
func runsOn(rt *runtime.Runtime) string {
	if rt.Device() != nil {
		grid, block := rt.Geometry()
		return fmt.Sprintf("on the GPU (%d blocks of %d threads, %.2f GiB of device memory held)", grid, block, float64(rt.DeviceBytes())/(1<<30))
	}
	return fmt.Sprintf("%d threads", rt.Threads())
}

// maxLengthUsage turns a LengthError of a length that --max-length asked
// for into the usage error every command gives for it.
func maxLengthUsage(cmd string, c *cli.Context, err error) error {
	return driver.MaxLengthUsage(cmd, c.IsSet("max-length"), err)
}

// loadModel compiles m (when it is not an artifact) and loads it.
func loadModel(c *cli.Context, m *modelSpec, threads int) (*runtime.Runtime, error) {
	return m.Load(driver.LoadOptions{Cmd: c.Command.Name, Threads: threads, Log: c.App.Writer})
}
