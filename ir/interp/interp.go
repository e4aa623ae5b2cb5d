// Package interp is slc's reference interpreter: it executes any verified
// ir.Graph in plain Go with float64 arithmetic. It is the oracle that autodiff's
// finite-difference checks, the LLVM kernels and the runtime are tested against,
// so every op is written as directly from its Doc string (ir/opdefs.go) as
// possible, favouring obvious correctness over speed.
//
// Rounding: arithmetic inside a node is float64; after each node, results of
// dtype F32 are rounded to float32, BF16 to bfloat16 (round to nearest even on
// the f32 bits) and F16 to half precision; F64 results are kept exact, so a graph
// built in F64 is an exact reference for finite differences. Integer values are
// int64; I32 results wrap to int32.
package interp

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// kernel computes one node's single output of type t from its input values.
// Inputs have been checked against the node's verified types, so a kernel may
// rely on every shape rule of ir; it reports only data-dependent errors (an index
// out of range, an integer division by zero, …).
type kernel func(n *ir.Node, in []*Tensor, t ir.Type) (*Tensor, error)

// kernels maps every op name to its implementation; a test checks that it
// covers ir.OpNames().
var kernels = map[string]kernel{
	"Const":                   constKernel,
	"Cast":                    castKernel,
	"MatMul":                  matMulKernel,
	"Linear":                  linearKernel,
	"LowRankSparseAdd":        lowRankSparseAddKernel,
	"ReduceSum":               reduceKernel(false),
	"ReduceMean":              reduceKernel(true),
	"AbsMaxLast":              absMaxLastKernel,
	"Reshape":                 reshapeKernel,
	"Expand":                  expandKernel,
	"Transpose":               transposeKernel,
	"Slice":                   sliceKernel,
	"Concat":                  concatKernel,
	"Gather":                  gatherKernel,
	"ScatterAdd":              scatterAddKernel,
	"Softmax":                 softmaxKernel,
	"SoftmaxCrossEntropy":     crossEntropyKernel,
	"SoftmaxCrossEntropyGrad": crossEntropyGradKernel,
	"RoPE":                    ropeKernel,
	"CausalMask":              causalMaskKernel,
}

func init() {
	for op := range unaryFloat {
		kernels[op] = unaryKernel(op)
	}
	for op := range binaryFloat {
		kernels[op] = binaryKernel(op)
	}
}

// InitState materialises every input that has an Init (params, buffers,
// optimizer state) with ir.Fill. Values are drawn in float64 and rounded once to
// the element type, as the runtime does: F32 and BF16 are filled as float32 (BF16
// then rounded from those f32 bits), I32 as int32.
func InitState(g *ir.Graph) (map[string]*Tensor, error) {
	state := map[string]*Tensor{}
	for _, in := range g.Inputs {
		if in.Init == nil {
			continue
		}
		if err := in.Init.Check(in.Type); err != nil {
			return nil, fmt.Errorf("graph %q: input %q: %v", g.Name, in.Name, err)
		}
		t := NewTensor(in.Type)
		var err error
		switch in.Type.DType {
		case ir.F32, ir.BF16:
			f := make([]float32, len(t.F))
			err = ir.Fill(in.Init, f)
			for i, v := range f {
				t.F[i] = float64(v)
			}
			roundSlice(in.Type.DType, t.F)
		case ir.F64, ir.F16:
			err = ir.Fill(in.Init, t.F)
			roundSlice(in.Type.DType, t.F)
		case ir.I32:
			v := make([]int32, len(t.I))
			err = ir.Fill(in.Init, v)
			for i, x := range v {
				t.I[i] = int64(x)
			}
		case ir.I64:
			err = ir.Fill(in.Init, t.I)
		case ir.U8:
			v := make([]int32, len(t.I))
			err = ir.Fill(in.Init, v)
			for i, x := range v {
				t.I[i] = int64(uint8(x))
			}
		default:
			err = fmt.Errorf("invalid dtype %v", in.Type.DType)
		}
		if err != nil {
			return nil, fmt.Errorf("graph %q: input %q: %v", g.Name, in.Name, err)
		}
		state[in.Name] = t
	}
	return state, nil
}

// Run executes g with the given inputs (by input name; every input must be
// bound, with exactly its declared type) and returns the graph outputs by output
// name. Entries of inputs that g does not declare are ignored, so one map of
// state can feed several graphs of a module. Inputs are copied (and rounded to
// their dtype), never modified; outputs are fresh tensors.
func Run(g *ir.Graph, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	out, _, err := run(g, inputs)
	return out, err
}

// RunAll is Run but also returns every value of the graph (inputs and node
// outputs) by value name, for kernel tests.
func RunAll(g *ir.Graph, inputs map[string]*Tensor) (outputs, values map[string]*Tensor, err error) {
	return run(g, inputs)
}

func run(g *ir.Graph, inputs map[string]*Tensor) (map[string]*Tensor, map[string]*Tensor, error) {
	if err := g.Verify(); err != nil {
		return nil, nil, err
	}
	env := make(map[string]*Tensor, len(g.Inputs)+len(g.Nodes))
	for _, in := range g.Inputs {
		t, ok := inputs[in.Name]
		if !ok || t == nil {
			return nil, nil, fmt.Errorf("graph %q: input %q (%v %v) is not bound", g.Name, in.Name, in.Role, in.Type)
		}
		if !t.Type.Equal(in.Type) {
			return nil, nil, fmt.Errorf("graph %q: input %q is bound to a %v tensor, want %v", g.Name, in.Name, t.Type, in.Type)
		}
		if err := t.check(); err != nil {
			return nil, nil, fmt.Errorf("graph %q: input %q: %v", g.Name, in.Name, err)
		}
		c := &Tensor{Type: cloneType(in.Type)}
		if in.Type.DType.IsFloat() {
			c.F = append([]float64(nil), t.F...)
		} else {
			c.I = append([]int64(nil), t.I...)
		}
		finish(c)
		env[in.Name] = c
	}
	for i, n := range g.Nodes {
		y, err := runNode(n, env)
		if err != nil {
			return nil, nil, fmt.Errorf("graph %q: node %d (%s): %w", g.Name, i, n, err)
		}
		env[n.Outputs[0].Name] = y
	}
	outs := make(map[string]*Tensor, len(g.Outputs))
	for _, o := range g.Outputs {
		outs[o.Name] = env[o.Value].Clone()
	}
	return outs, env, nil
}

// runNode evaluates one node; a panic inside a kernel (a bug in the
// interpreter, never expected) becomes an error naming the node instead of
// crashing the caller.
func runNode(n *ir.Node, env map[string]*Tensor) (y *Tensor, err error) {
	k := kernels[n.Op]
	if k == nil {
		return nil, fmt.Errorf("the interpreter has no kernel for op %q", n.Op)
	}
	if len(n.Outputs) != 1 {
		return nil, fmt.Errorf("the interpreter expects 1 output, the node has %d", len(n.Outputs))
	}
	in := make([]*Tensor, len(n.Inputs))
	for j, name := range n.Inputs {
		in[j] = env[name]
	}
	t := n.Outputs[0].Type
	defer func() {
		if r := recover(); r != nil {
			y, err = nil, fmt.Errorf("interpreter bug: %v", r)
		}
	}()
	y, err = k(n, in, t)
	if err != nil {
		return nil, err
	}
	if !y.Type.Equal(t) {
		return nil, fmt.Errorf("interpreter bug: kernel made %v, want %v", y.Type, t)
	}
	if err := y.check(); err != nil {
		return nil, fmt.Errorf("interpreter bug: %v", err)
	}
	finish(y)
	return y, nil
}

// finish rounds a node's result to its dtype: F32/BF16/F16 floats to their
// precision, I32 integers wrapped to int32.
func finish(t *Tensor) {
	switch t.Type.DType {
	case ir.I32:
		wrapI32(t.I)
		return
	case ir.U8:
		wrapU8(t.I)
		return
	}
	roundSlice(t.Type.DType, t.F)
}
