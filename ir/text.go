package ir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// TextFormat is the value of the "format" field of slc's JSON IR.
const TextFormat = "slc-ir/1"

// MarshalText prints the module in slc's JSON text form: deterministic (sorted
// metadata and attributes, one input, node or output per line) and exact (floats
// print so they read back bit-identical), so golden files diff well.
func (m *Module) MarshalText() []byte {
	var b bytes.Buffer
	b.WriteString("{\n  \"format\": \"" + TextFormat + "\",\n")
	if len(m.Meta) > 0 {
		b.WriteString("  \"meta\": {")
		for i, k := range m.MetaKeys() {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString("\n    " + quote(k) + ": " + quote(m.Meta[k]))
		}
		b.WriteString("\n  },\n")
	}
	b.WriteString("  \"graphs\": [")
	for gi, g := range m.Graphs {
		if gi > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    {\n      \"name\": " + quote(g.Name) + ",\n      \"inputs\": [")
		for i, in := range g.Inputs {
			sep(&b, i)
			b.WriteString(`{"name": ` + quote(in.Name) + `, "type": ` + quote(in.Type.String()) + `, "role": ` + quote(in.Role.String()))
			if in.Of != "" {
				b.WriteString(`, "of": ` + quote(in.Of))
			}
			if in.Init != nil {
				b.WriteString(`, "init": ` + in.Init.text())
			}
			b.WriteString("}")
		}
		closeList(&b, len(g.Inputs))
		b.WriteString(",\n      \"nodes\": [")
		for i, n := range g.Nodes {
			sep(&b, i)
			b.WriteString(`{"op": ` + quote(n.Op))
			if n.Name != "" {
				b.WriteString(`, "name": ` + quote(n.Name))
			}
			b.WriteString(`, "in": [`)
			for j, v := range n.Inputs {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quote(v))
			}
			b.WriteString(`], "out": [`)
			for j, v := range n.Outputs {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quote(v.Name + ": " + v.Type.String()))
			}
			b.WriteString("]")
			if len(n.Attrs) > 0 {
				b.WriteString(`, "attrs": {`)
				for j, k := range n.Attrs.Keys() {
					if j > 0 {
						b.WriteString(", ")
					}
					b.WriteString(quote(k) + ": " + attrText(n.Attrs[k]))
				}
				b.WriteString("}")
			}
			b.WriteString("}")
		}
		closeList(&b, len(g.Nodes))
		b.WriteString(",\n      \"outputs\": [")
		for i, o := range g.Outputs {
			sep(&b, i)
			b.WriteString(`{"name": ` + quote(o.Name) + `, "value": ` + quote(o.Value))
			if o.Updates != "" {
				b.WriteString(`, "updates": ` + quote(o.Updates))
			}
			b.WriteString("}")
		}
		closeList(&b, len(g.Outputs))
		b.WriteString("\n    }")
	}
	if len(m.Graphs) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
	return b.Bytes()
}

func sep(b *bytes.Buffer, i int) {
	if i > 0 {
		b.WriteString(",")
	}
	b.WriteString("\n        ")
}

func closeList(b *bytes.Buffer, n int) {
	if n > 0 {
		b.WriteString("\n      ")
	}
	b.WriteString("]")
}

func quote(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

func floatText(f float64) string {
	switch {
	case math.IsNaN(f):
		return `"nan"`
	case math.IsInf(f, 1):
		return `"inf"`
	case math.IsInf(f, -1):
		return `"-inf"`
	}
	return formatFloat(f)
}

func attrText(a Attr) string {
	switch a.Kind {
	case AttrInt:
		return strconv.FormatInt(a.Int, 10)
	case AttrFloat:
		return floatText(a.Float)
	case AttrInts:
		parts := make([]string, len(a.Ints))
		for i, v := range a.Ints {
			parts[i] = strconv.FormatInt(v, 10)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case AttrFloats:
		parts := make([]string, len(a.Floats))
		for i, v := range a.Floats {
			parts[i] = floatText(v)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case AttrString:
		return quote(a.Str)
	}
	return "null"
}

// text prints the fields the kind uses, and any other field that is set (the
// parser accepts every field with every kind, so dropping one would lose it).
func (in *Init) text() string {
	s := `{"kind": ` + quote(in.Kind.String())
	k := in.Kind
	for _, f := range [...]struct {
		name string
		v    float64
		used bool
	}{{"mean", in.Mean, k == InitNormal}, {"std", in.Std, k == InitNormal}, {"low", in.Low, k == InitUniform}, {"high", in.High, k == InitUniform}} {
		if f.used || math.Float64bits(f.v) != 0 {
			s += `, "` + f.name + `": ` + floatText(f.v)
		}
	}
	if k == InitSupport || in.Total != 0 {
		s += `, "total": ` + strconv.FormatInt(in.Total, 10)
	}
	if k == InitExplicit || len(in.Data) > 0 {
		s += `, "data": ` + attrText(Floats(in.Data...))
	}
	if k == InitNormal || k == InitUniform || k == InitSupport || in.Seed != 0 {
		s += `, "seed": ` + strconv.FormatUint(in.Seed, 10)
	}
	return s + "}"
}

// JSON shapes used only for parsing.
type textModule struct {
	Format *string           `json:"format"`
	Meta   map[string]string `json:"meta"`
	Graphs []textGraph       `json:"graphs"`
}

type textGraph struct {
	Name    string       `json:"name"`
	Inputs  []textInput  `json:"inputs"`
	Nodes   []textNode   `json:"nodes"`
	Outputs []textOutput `json:"outputs"`
}

type textInput struct {
	Name string    `json:"name"`
	Type string    `json:"type"`
	Role string    `json:"role"`
	Of   string    `json:"of"`
	Init *textInit `json:"init"`
}

type textInit struct {
	Kind  string            `json:"kind"`
	Mean  json.RawMessage   `json:"mean"`
	Std   json.RawMessage   `json:"std"`
	Low   json.RawMessage   `json:"low"`
	High  json.RawMessage   `json:"high"`
	Seed  json.Number       `json:"seed"`
	Total json.Number       `json:"total"`
	Data  []json.RawMessage `json:"data"`
}

type textNode struct {
	Op    string                     `json:"op"`
	Name  string                     `json:"name"`
	In    []string                   `json:"in"`
	Out   []string                   `json:"out"`
	Attrs map[string]json.RawMessage `json:"attrs"`
}

type textOutput struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Updates string `json:"updates"`
}

// ParseText reads slc's JSON text form. It checks the syntax and every field
// (types, roles, ops, attribute kinds); call Verify for the graph rules.
// Errors say where: the line and column of a syntax error, or the graph, node
// and field of a bad value.
func ParseText(data []byte) (*Module, error) {
	var tm textModule
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tm); err != nil {
		return nil, jsonError(data, err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if tm.Format == nil {
		return nil, errors.New(`field "format": missing (want "` + TextFormat + `")`)
	}
	if *tm.Format != TextFormat {
		return nil, fmt.Errorf(`field "format": %q is not %q`, *tm.Format, TextFormat)
	}
	m := &Module{Meta: tm.Meta}
	if len(m.Meta) == 0 {
		m.Meta = nil
	}
	for gi, tg := range tm.Graphs {
		g := &Graph{Name: tg.Name}
		where := fmt.Sprintf("graph %d (%q)", gi, tg.Name)
		for i, ti := range tg.Inputs {
			t, err := ParseType(ti.Type)
			if err != nil {
				return nil, fmt.Errorf("%s: input %d (%q): field \"type\": %v", where, i, ti.Name, err)
			}
			r, err := ParseRole(ti.Role)
			if err != nil {
				return nil, fmt.Errorf("%s: input %d (%q): field \"role\": %v", where, i, ti.Name, err)
			}
			in := &Input{Value: Value{ti.Name, t}, Role: r, Of: ti.Of}
			if ti.Init != nil {
				if in.Init, err = ti.Init.parse(); err != nil {
					return nil, fmt.Errorf("%s: input %d (%q): field \"init\": %v", where, i, ti.Name, err)
				}
			}
			g.Inputs = append(g.Inputs, in)
		}
		for i, tn := range tg.Nodes {
			n, err := tn.parse()
			if err != nil {
				return nil, fmt.Errorf("%s: node %d (%s): %v", where, i, tn.Op, err)
			}
			g.Nodes = append(g.Nodes, n)
		}
		for _, to := range tg.Outputs {
			g.Outputs = append(g.Outputs, &Output{Name: to.Name, Value: to.Value, Updates: to.Updates})
		}
		m.Graphs = append(m.Graphs, g)
	}
	return m, nil
}

func (tn *textNode) parse() (*Node, error) {
	d := Lookup(tn.Op)
	if d == nil {
		return nil, fmt.Errorf("field \"op\": unknown op %q", tn.Op)
	}
	n := &Node{Op: tn.Op, Name: tn.Name}
	if len(tn.In) > 0 {
		n.Inputs = tn.In
	}
	for _, o := range tn.Out {
		// The last ": " splits: a type never contains one, a name may.
		i := strings.LastIndex(o, ": ")
		if i < 0 {
			return nil, fmt.Errorf("field \"out\": %q is not \"name: type\"", o)
		}
		name := o[:i]
		t, err := ParseType(o[i+2:])
		if err != nil {
			return nil, fmt.Errorf("field \"out\": %v", err)
		}
		n.Outputs = append(n.Outputs, Value{name, t})
	}
	for k, raw := range tn.Attrs {
		spec := d.Attr(k)
		if spec == nil {
			return nil, fmt.Errorf("attribute %q: %s has no such attribute", k, tn.Op)
		}
		a, err := parseAttr(spec.Kind, raw)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %v", k, err)
		}
		if n.Attrs == nil {
			n.Attrs = Attrs{}
		}
		n.Attrs[k] = a
	}
	return n, nil
}

func parseAttr(kind AttrKind, raw json.RawMessage) (Attr, error) {
	switch kind {
	case AttrInt:
		v, err := parseInt(raw)
		return Int(v), err
	case AttrFloat:
		v, err := parseFloat(raw)
		return Float(v), err
	case AttrString:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Attr{}, fmt.Errorf("want a string, got %s", raw)
		}
		return String(s), nil
	case AttrInts, AttrFloats:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return Attr{}, fmt.Errorf("want a list, got %s", raw)
		}
		a := Attr{Kind: kind}
		for _, it := range items {
			if kind == AttrInts {
				v, err := parseInt(it)
				if err != nil {
					return Attr{}, err
				}
				a.Ints = append(a.Ints, v)
			} else {
				v, err := parseFloat(it)
				if err != nil {
					return Attr{}, err
				}
				a.Floats = append(a.Floats, v)
			}
		}
		return a, nil
	}
	return Attr{}, fmt.Errorf("unknown attribute kind %v", kind)
}

func parseInt(raw json.RawMessage) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %s", raw)
	}
	return v, nil
}

func parseFloat(raw json.RawMessage) (float64, error) {
	s := strings.TrimSpace(string(raw))
	switch s {
	case `"nan"`:
		return math.NaN(), nil
	case `"inf"`:
		return math.Inf(1), nil
	case `"-inf"`:
		return math.Inf(-1), nil
	}
	if s == "" || s[0] == '"' || s == "null" || s == "true" || s == "false" || s[0] == '[' || s[0] == '{' {
		return 0, fmt.Errorf("want a number, got %s", raw)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("want a number, got %s", raw)
	}
	return v, nil
}

func (ti *textInit) parse() (*Init, error) {
	k, err := ParseInitKind(ti.Kind)
	if err != nil {
		return nil, err
	}
	in := &Init{Kind: k}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *float64
	}{{"mean", ti.Mean, &in.Mean}, {"std", ti.Std, &in.Std}, {"low", ti.Low, &in.Low}, {"high", ti.High, &in.High}} {
		if f.raw != nil {
			if *f.dst, err = parseFloat(f.raw); err != nil {
				return nil, fmt.Errorf("%s: %v", f.name, err)
			}
		}
	}
	if ti.Seed != "" {
		if in.Seed, err = strconv.ParseUint(string(ti.Seed), 10, 64); err != nil {
			return nil, fmt.Errorf("seed: want an unsigned integer, got %s", ti.Seed)
		}
	}
	if ti.Total != "" {
		if in.Total, err = strconv.ParseInt(string(ti.Total), 10, 64); err != nil || in.Total < 0 {
			return nil, fmt.Errorf("total: want a non-negative integer, got %s", ti.Total)
		}
	}
	if ti.Data != nil {
		in.Data = make([]float64, len(ti.Data))
		for i, raw := range ti.Data {
			if in.Data[i], err = parseFloat(raw); err != nil {
				return nil, fmt.Errorf("data[%d]: %v", i, err)
			}
		}
	}
	return in, nil
}

// jsonError turns a decoder error into one with a line and column.
func jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
		if te.Field != "" {
			err = fmt.Errorf("field %q: want %v, got JSON %s", te.Field, te.Type, te.Value)
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of JSON")
	}
	if off < 0 {
		return err
	}
	line, col := LineCol(data, off)
	return fmt.Errorf("line %d, column %d: %v", line, col, err)
}

// LineCol converts a byte offset into a 1-based line and column.
func LineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	line, col := 1, 1
	for _, c := range data[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}
