package lower

import "gitee.com/gidean/conv-linn/codegen/gpu"

// Launch is a cuda kernel's launch geometry (codegen/gpu's geometry.go).
type Launch = gpu.Launch

// chainFlops counts an element-wise or reduce group's arithmetic: one
// operation per computing node per element of its space.
func chainFlops(g *Group) int64 {
	ops := int64(0)
	for _, n := range g.Nodes {
		switch n.Op {
		case "Const", "Reshape", "Identity":
		default:
			ops++
		}
	}
	return ops * numel(g.Space)
}

// Launch returns the launch geometry of a cuda kernel the emitter defined
// (false for an unknown name, or on the CPU).
func (e *Emitter) Launch(kernel string) (Launch, bool) {
	l, ok := e.launches[kernel]
	return l, ok
}
