//go:build slc_runtime

package codegen

import (
	"errors"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
)

// ErrNoCompiler is Compile's error in a runtime-only slc (go build -tags
// slc_runtime): a binary without LLVM, for machines that only run
// artifacts compiled elsewhere (a GPU box with nothing but the NVIDIA
// driver).
var ErrNoCompiler = errors.New("this slc is runtime-only (built with -tags slc_runtime, without LLVM): it runs compiled artifacts; compile the model with a full slc (slc compile MODEL [--device cuda] -o m.slc) and pass m.slc")

// Compile refuses: a runtime-only slc has no compiler.
func Compile(m *ir.Module, opt Options) (*artifact.Artifact, error) { return nil, ErrNoCompiler }

// MeasureSLTrainLayers refuses: timing kernels needs the compiler.
func MeasureSLTrainLayers(m *ir.Module, opt Options) ([]SLTrainLayerTimes, error) {
	return nil, ErrNoCompiler
}
