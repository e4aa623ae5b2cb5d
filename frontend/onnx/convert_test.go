package onnx

import (
	"slices"
	"strings"
	"testing"
)

// TestOpTableIsSupportedOps: the converter table holds exactly the ops that
// the conformance test counts as supported, so a new op is added to both.
func TestOpTableIsSupportedOps(t *testing.T) {
	var table, claimed []string
	for op := range opTable {
		table = append(table, op)
	}
	for op := range supportedOps {
		claimed = append(claimed, op)
	}
	slices.Sort(table)
	slices.Sort(claimed)
	if !slices.Equal(table, claimed) {
		t.Errorf("opTable %v\nsupportedOps %v", table, claimed)
	}
}

// TestConvertErrorsNameTheNode: errors raised by converters through ctx
// name the node and the op, and a refused attribute value says name=value.
func TestConvertErrorsNameTheNode(t *testing.T) {
	for _, c := range []struct {
		name  string
		nodes [][]byte
		want  string
	}{
		{"bad axis", [][]byte{node("Softmax", "y", [][]byte{msg(1, "axis", 20, int64(attrInt), 3, int64(5))}, "x")},
			`node "y" (Softmax): `},
		{"missing input", [][]byte{node("Add", "y", nil, "x", "")},
			`node "y" (Add): input 1 is missing`},
		{"attribute value", [][]byte{node("NegativeLogLikelihoodLoss", "y", [][]byte{msg(1, "reduction", 20, int64(attrString), 4, "max")}, "x", "t")},
			`unsupported attribute "reduction=max" (op NegativeLogLikelihoodLoss, node "y", opset 17)`},
		{"attribute of another activation", [][]byte{node("Elu", "y", [][]byte{msg(1, "beta", 20, int64(attrFloat))}, "x")},
			`unsupported attribute "beta" (op Elu, node "y", opset 17)`},
		// A node of an op with several outputs that lists none is refused,
		// not read past its end.
		{"no outputs", [][]byte{msg(1, "x", 3, "s", 4, "Split")}, `unsupported number of outputs (0) (op Split, node "s", opset 17)`},
	} {
		_, err := Import(graphModel(c.nodes...), Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}
