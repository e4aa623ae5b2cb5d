package ir

import (
	"fmt"
	"sort"
)

// Category groups ops by how codegen and the fusion pass treat them.
type Category uint8

// Op categories.
const (
	CatUnary  Category = iota + 1 // element-wise, one input
	CatBinary                     // element-wise, two inputs with NumPy broadcasting
	CatReduce                     // reduction over axes
	CatShape                      // moves data without arithmetic (reshape, transpose, …)
	CatOther                      // everything with its own kernel (matmul, softmax, …)
)

// AttrSpec declares one attribute of an op.
type AttrSpec struct {
	Name     string
	Kind     AttrKind
	Required bool
}

// OpDef declares an op: its arity, attributes and shape/dtype rule.
type OpDef struct {
	Name       string
	Doc        string
	Category   Category
	MinInputs  int
	MaxInputs  int // -1: variadic
	NumOutputs int
	Attrs      []AttrSpec
	// Infer returns the output types for the given input types and attributes.
	// Attributes have been checked against Attrs before it is called.
	Infer func(in []Type, attrs Attrs) ([]Type, error)
}

// Attr returns the spec of the named attribute, or nil.
func (d *OpDef) Attr(name string) *AttrSpec {
	for i := range d.Attrs {
		if d.Attrs[i].Name == name {
			return &d.Attrs[i]
		}
	}
	return nil
}

var registry = map[string]*OpDef{}

// Register adds an op definition; it panics on a duplicate (a programming error).
func Register(d *OpDef) {
	if _, dup := registry[d.Name]; dup {
		panic("ir: op registered twice: " + d.Name)
	}
	registry[d.Name] = d
}

// Lookup returns the definition of an op, or nil when it is unknown.
func Lookup(op string) *OpDef { return registry[op] }

// OpNames returns every registered op name, sorted.
func OpNames() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// InferTypes checks arity and attributes of an op application and returns the
// output types.
func InferTypes(op string, in []Type, attrs Attrs) ([]Type, error) {
	d := Lookup(op)
	if d == nil {
		return nil, fmt.Errorf("unknown op %q", op)
	}
	if len(in) < d.MinInputs || (d.MaxInputs >= 0 && len(in) > d.MaxInputs) {
		if d.MinInputs == d.MaxInputs {
			return nil, fmt.Errorf("%s takes %d inputs, got %d", op, d.MinInputs, len(in))
		}
		return nil, fmt.Errorf("%s takes at least %d inputs, got %d", op, d.MinInputs, len(in))
	}
	for _, k := range attrs.Keys() {
		spec := d.Attr(k)
		if spec == nil {
			return nil, fmt.Errorf("%s has no attribute %q", op, k)
		}
		if attrs[k].Kind != spec.Kind {
			return nil, fmt.Errorf("%s attribute %q must be %v, got %v", op, k, spec.Kind, attrs[k].Kind)
		}
	}
	for _, spec := range d.Attrs {
		if _, ok := attrs[spec.Name]; spec.Required && !ok {
			return nil, fmt.Errorf("%s needs attribute %q", op, spec.Name)
		}
	}
	for i, t := range in {
		if t.DType == InvalidDType {
			return nil, fmt.Errorf("%s input %d has no type", op, i)
		}
	}
	out, err := d.Infer(in, attrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}

// Broadcast returns the NumPy broadcast of two shapes.
func Broadcast(a, b []int) ([]int, error) {
	n := max(len(a), len(b))
	out := make([]int, n)
	for i := 0; i < n; i++ {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	if n == 0 {
		return nil, nil
	}
	return out, nil
}

// NormAxis maps a possibly negative axis into [0, rank).
func NormAxis(axis int64, rank int) (int, error) {
	a := int(axis)
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return a, nil
}

func one(t Type) []Type { return []Type{t} }

func sameDType(op string, in []Type) error {
	for i := 1; i < len(in); i++ {
		if in[i].DType != in[0].DType {
			return fmt.Errorf("input %d is %v but input 0 is %v (no implicit casts; use Cast)", i, in[i].DType, in[0].DType)
		}
	}
	return nil
}

func needFloat(i int, t Type) error {
	if !t.DType.IsFloat() {
		return fmt.Errorf("input %d must be floating point, got %v", i, t)
	}
	return nil
}

func needInt(i int, t Type) error {
	if !t.DType.IsInt() {
		return fmt.Errorf("input %d must be an integer tensor, got %v", i, t)
	}
	return nil
}

func needRank(i int, t Type, min int) error {
	if t.Rank() < min {
		return fmt.Errorf("input %d must have rank >= %d, got %v", i, min, t)
	}
	return nil
}
