package driver

import (
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// Precision is how a model trains: its dtype (parameters, gradients,
// AdamW's moments, activations) and whether it is bf16-mixed (an f32 model
// whose matrix products take bf16 operands and whose saved activations are
// bf16; passes.Options.BF16Mixed).
type Precision struct {
	DType ir.DType
	Mixed bool
}

// The precisions slc trains.
var (
	F32       = Precision{DType: ir.F32}
	BF16      = Precision{DType: ir.BF16}
	BF16Mixed = Precision{DType: ir.F32, Mixed: true}
)

// String is the precision's name in checkpoints and messages: f32, bf16 or
// bf16-mixed.
func (p Precision) String() string {
	if p.Mixed {
		return "bf16-mixed"
	}
	return p.DType.String()
}

// TorchName is the precision's --dtype spelling in the seed's and
// torchref's command lines.
func (p Precision) TorchName() string {
	switch {
	case p.Mixed:
		return "bf16-mixed"
	case p.DType == ir.BF16:
		return "bfloat16"
	case p.DType == ir.F64:
		return "float64"
	}
	return "float32"
}

// ParsePrecision reads a training --dtype (the seed's spellings and
// slc's): f32, bf16, or bf16-mixed (PyTorch Lightning's name for the same
// idea).
func ParsePrecision(s string) (Precision, bool) {
	switch strings.ToLower(s) {
	case "f32", "float32", "fp32", "float":
		return F32, true
	case "bf16", "bfloat16":
		return BF16, true
	case "bf16-mixed", "mixed":
		return BF16Mixed, true
	}
	return Precision{}, false
}

// ModulePrecision is the precision a compiled module records in its
// metadata ("dtype" from the frontend, "precision" from mixed-precision).
func ModulePrecision(meta map[string]string) (Precision, bool) {
	if meta["precision"] == "bf16-mixed" {
		return BF16Mixed, meta["dtype"] == "f32"
	}
	dt := meta["dtype"]
	if dt == "" {
		dt = "f32"
	}
	return ParsePrecision(dt)
}
