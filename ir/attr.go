package ir

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// AttrKind is the type of an attribute value.
type AttrKind uint8

// Attribute kinds.
const (
	AttrInt AttrKind = iota + 1
	AttrFloat
	AttrInts
	AttrFloats
	AttrString
)

var attrKindNames = [...]string{AttrInt: "int", AttrFloat: "float", AttrInts: "ints", AttrFloats: "floats", AttrString: "string"}

func (k AttrKind) String() string {
	if int(k) < len(attrKindNames) && k != 0 {
		return attrKindNames[k]
	}
	return "attr(" + strconv.Itoa(int(k)) + ")"
}

// Attr is one attribute value; Kind says which field holds it.
type Attr struct {
	Kind   AttrKind
	Int    int64
	Float  float64
	Ints   []int64
	Floats []float64
	Str    string
}

// Int returns an integer attribute.
func Int(v int64) Attr { return Attr{Kind: AttrInt, Int: v} }

// Float returns a floating-point attribute.
func Float(v float64) Attr { return Attr{Kind: AttrFloat, Float: v} }

// Ints returns an integer-list attribute.
func Ints(v ...int64) Attr { return Attr{Kind: AttrInts, Ints: v} }

// IntsOf converts an []int to an integer-list attribute.
func IntsOf(v []int) Attr {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return Attr{Kind: AttrInts, Ints: out}
}

// Floats returns a float-list attribute.
func Floats(v ...float64) Attr { return Attr{Kind: AttrFloats, Floats: v} }

// String returns a string attribute.
func String(v string) Attr { return Attr{Kind: AttrString, Str: v} }

// Equal reports whether two attributes are identical (floats bitwise, so NaN
// equals itself).
func (a Attr) Equal(b Attr) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case AttrInt:
		return a.Int == b.Int
	case AttrFloat:
		return math.Float64bits(a.Float) == math.Float64bits(b.Float)
	case AttrInts:
		if len(a.Ints) != len(b.Ints) {
			return false
		}
		for i := range a.Ints {
			if a.Ints[i] != b.Ints[i] {
				return false
			}
		}
		return true
	case AttrFloats:
		if len(a.Floats) != len(b.Floats) {
			return false
		}
		for i := range a.Floats {
			if math.Float64bits(a.Floats[i]) != math.Float64bits(b.Floats[i]) {
				return false
			}
		}
		return true
	case AttrString:
		return a.Str == b.Str
	}
	return false
}

// String prints the value for messages.
func (a Attr) String() string {
	switch a.Kind {
	case AttrInt:
		return strconv.FormatInt(a.Int, 10)
	case AttrFloat:
		return formatFloat(a.Float)
	case AttrInts:
		return fmt.Sprint(a.Ints)
	case AttrFloats:
		return fmt.Sprint(a.Floats)
	case AttrString:
		return strconv.Quote(a.Str)
	}
	return "?"
}

// Attrs maps attribute names to values. A node without attributes has a nil map.
type Attrs map[string]Attr

// Keys returns the attribute names in sorted order.
func (as Attrs) Keys() []string {
	keys := make([]string, 0, len(as))
	for k := range as {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// GetInt returns an int attribute, or def when absent.
func (as Attrs) GetInt(name string, def int64) int64 {
	if a, ok := as[name]; ok && a.Kind == AttrInt {
		return a.Int
	}
	return def
}

// GetFloat returns a float attribute, or def when absent.
func (as Attrs) GetFloat(name string, def float64) float64 {
	if a, ok := as[name]; ok && a.Kind == AttrFloat {
		return a.Float
	}
	return def
}

// GetInts returns an int-list attribute, or nil when absent.
func (as Attrs) GetInts(name string) []int64 {
	if a, ok := as[name]; ok && a.Kind == AttrInts {
		return a.Ints
	}
	return nil
}

// GetString returns a string attribute, or def when absent.
func (as Attrs) GetString(name string, def string) string {
	if a, ok := as[name]; ok && a.Kind == AttrString {
		return a.Str
	}
	return def
}

// Equal reports whether two attribute maps hold the same values (nil equals empty).
func (as Attrs) Equal(bs Attrs) bool {
	if len(as) != len(bs) {
		return false
	}
	for k, a := range as {
		b, ok := bs[k]
		if !ok || !a.Equal(b) {
			return false
		}
	}
	return true
}

// Clone returns a deep copy.
func (as Attrs) Clone() Attrs {
	if as == nil {
		return nil
	}
	out := make(Attrs, len(as))
	for k, a := range as {
		a.Ints = append([]int64(nil), a.Ints...)
		a.Floats = append([]float64(nil), a.Floats...)
		if len(a.Ints) == 0 {
			a.Ints = nil
		}
		if len(a.Floats) == 0 {
			a.Floats = nil
		}
		out[k] = a
	}
	return out
}

// formatFloat prints f so that it reads back bit-exactly and always looks like a
// float (has a '.', an exponent, or is non-finite).
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	for _, c := range s {
		if c == '.' || c == 'e' || c == 'n' || c == 'N' || c == 'I' {
			return s
		}
	}
	return s + ".0"
}
