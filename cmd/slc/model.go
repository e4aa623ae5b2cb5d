package main

import (
	"github.com/urfave/cli/v2"

	"gitee.com/gidean/conv-linn/driver"
)

// The model a command runs is package driver's; these are its names here.
type modelSpec = driver.Model

var (
	isArtifact = driver.IsArtifact
	readSource = driver.ReadSource
)

// The kinds of model file (driver.Kind).
const (
	kindConfig   = driver.KindConfig
	kindBinary   = driver.KindBinary
	kindArtifact = driver.KindArtifact
	kindONNX     = driver.KindONNX
)

// artifactFlags are the flags an artifact's settings may contradict.
var artifactFlags = []string{"dtype", "optimizer", "beta1", "batch-size", "max-length", "peft", "rank", "sp-ratio", "lora-alpha", "target-modules", "cpu", "sltrain-lowering", "rows", "activation-checkpointing", "memory-budget"}

// openOptions are slc train's flags of opening a model.
func openOptions(c *cli.Context) (driver.OpenOptions, error) {
	co, err := codegenOptions(c, "train", nil, nil)
	if err != nil {
		return driver.OpenOptions{}, err
	}
	o := driver.OpenOptions{Cmd: "train", BatchSet: c.IsSet("batch-size"), Codegen: co,
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

// maxLengthUsage turns a LengthError of a length that --max-length asked
// for into the usage error every command gives for it.
func maxLengthUsage(cmd string, c *cli.Context, err error) error {
	return driver.MaxLengthUsage(cmd, c.IsSet("max-length"), err)
}
