package ir

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unicode/utf8"

	"gitee.com/gidean/conv-linn/ir/fbs"
	flatbuffers "github.com/google/flatbuffers/go"
)

// BinaryVersion is the version field MarshalBinary writes. ParseBinary reads only
// this version, so a file from a newer slc fails with a clear message instead of
// being misread.
const BinaryVersion = 1

// A binary IR file is a size-prefixed FlatBuffer: the length of the rest of the
// file (so truncation is caught before anything is read), the root table's
// offset, then the file identifier.

// Vtable slots of the double fields (field index in ir/fbs/slcir.fbs). The
// generated adders drop a value equal to the default 0.0, and -0.0 == 0.0, so they
// would turn -0.0 into +0.0; addFloat64 writes those slots itself.
const (
	slotInitMean = 1
	slotInitStd  = 2
	slotInitLow  = 3
	slotInitHigh = 4
	slotAttrF    = 3
)

// MarshalBinary writes the module in slc's FlatBuffers form (schema
// ir/fbs/slcir.fbs, size-prefixed, identifier "SLIR" at bytes 8 to 12). The output is deterministic (metadata and
// attributes sorted by name) and exact: ParseBinary returns an Equal module, with
// every float bit-identical. It fails, writing nothing, on a module ParseBinary
// would reject: an unknown op, dtype, role, init or attribute kind, an attribute
// its op does not declare, or a string that is not UTF-8.
func (m *Module) MarshalBinary() (data []byte, err error) {
	if err := m.checkFields(); err != nil {
		return nil, fmt.Errorf("cannot write binary IR: %w", err)
	}
	defer func() {
		// The builder panics when the buffer would pass FlatBuffers' 2 GiB limit.
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("cannot write binary IR: %v", r)
		}
	}()
	w := &writer{b: flatbuffers.NewBuilder(1024)}
	return w.module(m), nil
}

// writer builds the FlatBuffer bottom-up: every string, vector and child table of
// a table is created before the table is started, as the builder requires.
type writer struct {
	b *flatbuffers.Builder
}

// str writes a string once per module, so value names repeated as node inputs
// cost four bytes per use. The empty string is left out (it reads back as "").
func (w *writer) str(s string) flatbuffers.UOffsetT {
	if s == "" {
		return 0
	}
	return w.b.CreateSharedString(s)
}

// offsets writes a vector of table or string offsets; 0 when empty.
func (w *writer) offsets(offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	if len(offs) == 0 {
		return 0
	}
	w.b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		w.b.PrependUOffsetT(offs[i])
	}
	return w.b.EndVector(len(offs))
}

func (w *writer) int64s(v []int64) flatbuffers.UOffsetT {
	if len(v) == 0 {
		return 0
	}
	w.b.StartVector(8, len(v), 8)
	for i := len(v) - 1; i >= 0; i-- {
		w.b.PrependInt64(v[i])
	}
	return w.b.EndVector(len(v))
}

func (w *writer) float64s(v []float64) flatbuffers.UOffsetT {
	if len(v) == 0 {
		return 0
	}
	w.b.StartVector(8, len(v), 8)
	for i := len(v) - 1; i >= 0; i-- {
		w.b.PrependFloat64(v[i])
	}
	return w.b.EndVector(len(v))
}

// addFloat64 sets a double field, keeping the sign of -0.0 (see slotInitMean).
func (w *writer) addFloat64(slot int, x float64) {
	if x == 0 && math.Signbit(x) {
		w.b.PrependFloat64(x)
		w.b.Slot(slot)
		return
	}
	w.b.PrependFloat64Slot(slot, x, 0)
}

func (w *writer) module(m *Module) []byte {
	b := w.b
	var meta []flatbuffers.UOffsetT
	for _, k := range m.MetaKeys() {
		key, val := w.str(k), w.str(m.Meta[k])
		fbs.MetaEntryStart(b)
		fbs.MetaEntryAddKey(b, key)
		fbs.MetaEntryAddValue(b, val)
		meta = append(meta, fbs.MetaEntryEnd(b))
	}
	metaVec := w.offsets(meta)
	graphs := make([]flatbuffers.UOffsetT, len(m.Graphs))
	for i, g := range m.Graphs {
		graphs[i] = w.graph(g)
	}
	graphVec := w.offsets(graphs)
	fbs.ModuleStart(b)
	fbs.ModuleAddVersion(b, BinaryVersion)
	fbs.ModuleAddMeta(b, metaVec)
	fbs.ModuleAddGraphs(b, graphVec)
	b.FinishSizePrefixedWithFileIdentifier(fbs.ModuleEnd(b), []byte(fbs.FileIdentifier))
	return b.FinishedBytes()
}

func (w *writer) graph(g *Graph) flatbuffers.UOffsetT {
	b := w.b
	name := w.str(g.Name)
	inputs := make([]flatbuffers.UOffsetT, len(g.Inputs))
	for i, in := range g.Inputs {
		inputs[i] = w.input(in)
	}
	inVec := w.offsets(inputs)
	nodes := make([]flatbuffers.UOffsetT, len(g.Nodes))
	for i, n := range g.Nodes {
		nodes[i] = w.node(n)
	}
	nodeVec := w.offsets(nodes)
	outputs := make([]flatbuffers.UOffsetT, len(g.Outputs))
	for i, o := range g.Outputs {
		oname, val, upd := w.str(o.Name), w.str(o.Value), w.str(o.Updates)
		fbs.OutputStart(b)
		fbs.OutputAddName(b, oname)
		fbs.OutputAddValue(b, val)
		fbs.OutputAddUpdates(b, upd)
		outputs[i] = fbs.OutputEnd(b)
	}
	outVec := w.offsets(outputs)
	fbs.GraphStart(b)
	fbs.GraphAddName(b, name)
	fbs.GraphAddInputs(b, inVec)
	fbs.GraphAddNodes(b, nodeVec)
	fbs.GraphAddOutputs(b, outVec)
	return fbs.GraphEnd(b)
}

func (w *writer) value(v Value) flatbuffers.UOffsetT {
	b := w.b
	name := w.str(v.Name)
	var shape flatbuffers.UOffsetT
	if len(v.Type.Shape) > 0 {
		b.StartVector(8, len(v.Type.Shape), 8)
		for i := len(v.Type.Shape) - 1; i >= 0; i-- {
			b.PrependInt64(int64(v.Type.Shape[i]))
		}
		shape = b.EndVector(len(v.Type.Shape))
	}
	fbs.ValueStart(b)
	fbs.ValueAddName(b, name)
	fbs.ValueAddDtype(b, fbs.DType(v.Type.DType))
	fbs.ValueAddShape(b, shape)
	return fbs.ValueEnd(b)
}

func (w *writer) input(in *Input) flatbuffers.UOffsetT {
	b := w.b
	val := w.value(in.Value)
	of := w.str(in.Of)
	var init flatbuffers.UOffsetT
	if in.Init != nil {
		data := w.float64s(in.Init.Data)
		fbs.InitStart(b)
		fbs.InitAddKind(b, fbs.InitKind(in.Init.Kind))
		w.addFloat64(slotInitMean, in.Init.Mean)
		w.addFloat64(slotInitStd, in.Init.Std)
		w.addFloat64(slotInitLow, in.Init.Low)
		w.addFloat64(slotInitHigh, in.Init.High)
		fbs.InitAddSeed(b, in.Init.Seed)
		fbs.InitAddTotal(b, in.Init.Total)
		fbs.InitAddData(b, data)
		init = fbs.InitEnd(b)
	}
	fbs.InputStart(b)
	fbs.InputAddValue(b, val)
	fbs.InputAddRole(b, fbs.Role(in.Role))
	fbs.InputAddInitializer(b, init)
	fbs.InputAddOf(b, of)
	return fbs.InputEnd(b)
}

func (w *writer) node(n *Node) flatbuffers.UOffsetT {
	b := w.b
	op, name := w.str(n.Op), w.str(n.Name)
	ins := make([]flatbuffers.UOffsetT, len(n.Inputs))
	for i, v := range n.Inputs {
		// An input is never omitted, even when "", so the vector keeps its length.
		ins[i] = b.CreateSharedString(v)
	}
	inVec := w.offsets(ins)
	outs := make([]flatbuffers.UOffsetT, len(n.Outputs))
	for i, o := range n.Outputs {
		outs[i] = w.value(o)
	}
	outVec := w.offsets(outs)
	var attrs []flatbuffers.UOffsetT
	for _, k := range n.Attrs.Keys() {
		attrs = append(attrs, w.attr(k, n.Attrs[k]))
	}
	attrVec := w.offsets(attrs)
	fbs.NodeStart(b)
	fbs.NodeAddOp(b, op)
	fbs.NodeAddName(b, name)
	fbs.NodeAddInputs(b, inVec)
	fbs.NodeAddOutputs(b, outVec)
	fbs.NodeAddAttrs(b, attrVec)
	return fbs.NodeEnd(b)
}

// attr writes the name, the kind and the one field the kind uses.
func (w *writer) attr(name string, a Attr) flatbuffers.UOffsetT {
	b := w.b
	key := w.str(name)
	var vec, s flatbuffers.UOffsetT
	switch a.Kind {
	case AttrInts:
		vec = w.int64s(a.Ints)
	case AttrFloats:
		vec = w.float64s(a.Floats)
	case AttrString:
		s = w.str(a.Str)
	}
	fbs.AttrStart(b)
	fbs.AttrAddName(b, key)
	fbs.AttrAddKind(b, fbs.AttrKind(a.Kind))
	switch a.Kind {
	case AttrInt:
		fbs.AttrAddI(b, a.Int)
	case AttrFloat:
		w.addFloat64(slotAttrF, a.Float)
	case AttrInts:
		fbs.AttrAddInts(b, vec)
	case AttrFloats:
		fbs.AttrAddFloats(b, vec)
	case AttrString:
		fbs.AttrAddS(b, s)
	}
	return fbs.AttrEnd(b)
}

// ParseBinary reads slc's FlatBuffers form. It never trusts the file: it checks
// the identifier, the size prefix, the version, and every table and vector
// against the size of data, and it rejects an unknown op, dtype, role, init or
// attribute kind with a message naming the graph, node and field, the way
// ParseText does. Call Verify for the graph rules. The module shares no memory
// with data.
func ParseBinary(data []byte) (m *Module, err error) {
	if err := fbs.CheckHeader(data, fbs.FileIdentifier, "a binary slc IR file", "corrupt IR file"); err != nil {
		return nil, err
	}
	d := &decoder{buf: data, budget: len(data), strs: map[int]string{}, graph: -1}
	defer func() {
		if r := recover(); r != nil {
			var c corruptError
			switch e := r.(type) {
			case corruptError:
				c = e
			case runtime.Error:
				// A generated accessor followed an offset out of the buffer.
				c = corruptError(fmt.Sprintf("%s: offset out of range (%v)", d.where(), e))
			default:
				panic(r)
			}
			m, err = nil, fmt.Errorf("corrupt IR file: %s", string(c))
		}
	}()
	m = d.module()
	if err := m.checkFields(); err != nil {
		return nil, err
	}
	return m, nil
}

// corruptError is what the decoder panics with on malformed data; ParseBinary
// recovers it (and the runtime's index errors) into an ordinary error.
type corruptError string

// decoder reads a buffer whose every byte may be hostile. Besides the bounds
// checks, it caps the work: a vector or string costs its size in bytes from a
// budget of len(buf) (the parts of a file MarshalBinary writes never overlap, and
// shared strings are decoded once), so tables or vectors referenced many times
// cannot make a small file decode into a huge module.
type decoder struct {
	buf    []byte
	budget int
	strs   map[int]string // decoded strings by their offset in buf

	// Where the decoder is, for messages.
	graph   int
	section string
	index   int
}

func (d *decoder) fail(format string, args ...any) {
	panic(corruptError(d.where() + ": " + fmt.Sprintf(format, args...)))
}

func (d *decoder) where() string {
	if d.graph < 0 {
		if d.section == "" {
			return "module"
		}
		return fmt.Sprintf("module: %s %d", d.section, d.index)
	}
	if d.section == "" {
		return fmt.Sprintf("graph %d", d.graph)
	}
	return fmt.Sprintf("graph %d: %s %d", d.graph, d.section, d.index)
}

func (d *decoder) at(section string, index int) {
	d.section, d.index = section, index
}

// spend charges n bytes of decoded data against the budget.
func (d *decoder) spend(n int, what string) {
	if n < 0 || n > d.budget {
		d.fail("%s would hold more data than the file (overlapping or repeated references)", what)
	}
	d.budget -= n
}

// count checks a vector length read from the file before anything is allocated
// for it.
func (d *decoder) count(n, elemSize int, what string) int {
	if err := fbs.CheckCount(d.buf, n, elemSize); err != nil {
		d.fail("%s %v", what, err)
	}
	d.spend(n*elemSize, what)
	return n
}

// table checks that a table and its vtable lie inside the buffer.
func (d *decoder) table(t flatbuffers.Table, what string) {
	if err := fbs.CheckTable(d.buf, t); err != nil {
		d.fail("%s %v", what, err)
	}
}

// str copies a string out of the buffer, once per distinct offset. b is a
// subslice of d.buf, so its offset follows from the capacities.
func (d *decoder) str(b []byte) string {
	if b == nil {
		return ""
	}
	off := cap(d.buf) - cap(b)
	if s, ok := d.strs[off]; ok {
		return s
	}
	d.spend(len(b)+4, "a string")
	s := string(b)
	d.strs[off] = s
	return s
}

func (d *decoder) module() *Module {
	root := fbs.GetSizePrefixedRootAsModule(d.buf, 0)
	d.table(root.Table(), "root")
	if v := root.Version(); v != BinaryVersion {
		d.fail("binary IR version %d is not supported (this slc reads version %d)", v, BinaryVersion)
	}
	m := &Module{}
	n := d.count(root.MetaLength(), 4, "meta")
	var e fbs.MetaEntry
	for i := 0; i < n; i++ {
		d.at("meta entry", i)
		root.Meta(&e, i)
		d.table(e.Table(), "meta entry")
		k := d.str(e.Key())
		if m.Meta == nil {
			m.Meta = make(map[string]string, n)
		}
		if _, dup := m.Meta[k]; dup {
			d.fail("meta key %q appears twice", k)
		}
		m.Meta[k] = d.str(e.Value())
	}
	d.at("", 0)
	n = d.count(root.GraphsLength(), 4, "graphs")
	if n > 0 {
		m.Graphs = make([]*Graph, n)
	}
	var g fbs.Graph
	for i := range m.Graphs {
		d.graph = i
		root.Graphs(&g, i)
		d.table(g.Table(), "graph")
		m.Graphs[i] = d.graphBody(&g)
		d.at("", 0)
	}
	return m
}

func (d *decoder) graphBody(fg *fbs.Graph) *Graph {
	g := &Graph{Name: d.str(fg.Name())}
	if n := d.count(fg.InputsLength(), 4, "inputs"); n > 0 {
		g.Inputs = make([]*Input, n)
		var in fbs.Input
		for i := range g.Inputs {
			d.at("input", i)
			fg.Inputs(&in, i)
			g.Inputs[i] = d.input(&in)
		}
	}
	if n := d.count(fg.NodesLength(), 4, "nodes"); n > 0 {
		g.Nodes = make([]*Node, n)
		var fn fbs.Node
		for i := range g.Nodes {
			d.at("node", i)
			fg.Nodes(&fn, i)
			g.Nodes[i] = d.node(&fn)
		}
	}
	if n := d.count(fg.OutputsLength(), 4, "outputs"); n > 0 {
		g.Outputs = make([]*Output, n)
		var o fbs.Output
		for i := range g.Outputs {
			d.at("output", i)
			fg.Outputs(&o, i)
			d.table(o.Table(), "output")
			g.Outputs[i] = &Output{Name: d.str(o.Name()), Value: d.str(o.Value()), Updates: d.str(o.Updates())}
		}
	}
	return g
}

func (d *decoder) value(v *fbs.Value) Value {
	d.table(v.Table(), "value")
	out := Value{Name: d.str(v.Name()), Type: Type{DType: DType(v.Dtype())}}
	if n := d.count(v.ShapeLength(), 8, "shape"); n > 0 {
		out.Type.Shape = make([]int, n)
		for i := range out.Type.Shape {
			dim := v.Shape(i)
			if dim < 0 || int64(int(dim)) != dim {
				d.fail("value %q: dimension %d is out of range", out.Name, dim)
			}
			out.Type.Shape[i] = int(dim)
		}
	}
	return out
}

func (d *decoder) input(fi *fbs.Input) *Input {
	d.table(fi.Table(), "input")
	var fv fbs.Value
	if fi.Value(&fv) == nil {
		d.fail("input has no value (name and type)")
	}
	in := &Input{Value: d.value(&fv), Role: Role(fi.Role()), Of: d.str(fi.Of())}
	var fini fbs.Init
	if fi.Initializer(&fini) != nil {
		d.table(fini.Table(), "init")
		in.Init = &Init{
			Kind: InitKind(fini.Kind()),
			Mean: fini.Mean(), Std: fini.Std(), Low: fini.Low(), High: fini.High(),
			Seed: fini.Seed(), Total: fini.Total(),
		}
		if n := d.count(fini.DataLength(), 8, "init data"); n > 0 || in.Init.Kind == InitExplicit {
			// ParseText gives explicit inits a non-nil Data; match it.
			in.Init.Data = make([]float64, n)
			for i := range in.Init.Data {
				in.Init.Data[i] = fini.Data(i)
			}
		}
	}
	return in
}

func (d *decoder) node(fn *fbs.Node) *Node {
	d.table(fn.Table(), "node")
	n := &Node{Op: d.str(fn.Op()), Name: d.str(fn.Name())}
	if k := d.count(fn.InputsLength(), 4, "node inputs"); k > 0 {
		n.Inputs = make([]string, k)
		for i := range n.Inputs {
			n.Inputs[i] = d.str(fn.Inputs(i))
		}
	}
	if k := d.count(fn.OutputsLength(), 4, "node outputs"); k > 0 {
		n.Outputs = make([]Value, k)
		var fv fbs.Value
		for i := range n.Outputs {
			fn.Outputs(&fv, i)
			n.Outputs[i] = d.value(&fv)
		}
	}
	k := d.count(fn.AttrsLength(), 4, "attrs")
	var fa fbs.Attr
	for i := 0; i < k; i++ {
		fn.Attrs(&fa, i)
		d.table(fa.Table(), "attr")
		name := d.str(fa.Name())
		if n.Attrs == nil {
			n.Attrs = make(Attrs, k)
		}
		if _, dup := n.Attrs[name]; dup {
			d.fail("%s: attribute %q appears twice", n.Op, name)
		}
		a := Attr{Kind: AttrKind(fa.Kind())}
		switch a.Kind {
		case AttrInt:
			a.Int = fa.I()
		case AttrFloat:
			a.Float = fa.F()
		case AttrInts:
			if c := d.count(fa.IntsLength(), 8, "ints attribute"); c > 0 {
				a.Ints = make([]int64, c)
				for j := range a.Ints {
					a.Ints[j] = fa.Ints(j)
				}
			}
		case AttrFloats:
			if c := d.count(fa.FloatsLength(), 8, "floats attribute"); c > 0 {
				a.Floats = make([]float64, c)
				for j := range a.Floats {
					a.Floats[j] = fa.Floats(j)
				}
			}
		case AttrString:
			a.Str = d.str(fa.S())
		}
		n.Attrs[name] = a
	}
	return n
}

// checkFields checks what each field of a module may hold in a serialized form:
// known enum values, known ops with the attributes they declare, non-negative
// dimensions and UTF-8 strings. These are the rules ParseText applies while it
// reads; MarshalBinary and ParseBinary share them, so the binary form accepts
// exactly what it can write. Errors name the place as ParseText's do.
func (m *Module) checkFields() error {
	for _, k := range m.MetaKeys() {
		if !utf8.ValidString(k) || !utf8.ValidString(m.Meta[k]) {
			return fmt.Errorf("meta %q: not valid UTF-8", k)
		}
	}
	for gi, g := range m.Graphs {
		if err := g.checkFields(); err != nil {
			return fmt.Errorf("graph %d (%q): %w", gi, g.Name, err)
		}
	}
	return nil
}

func (g *Graph) checkFields() error {
	if !utf8.ValidString(g.Name) {
		return errors.New(`field "name": not valid UTF-8`)
	}
	for i, in := range g.Inputs {
		if err := in.checkFields(); err != nil {
			return fmt.Errorf("input %d (%q): %w", i, in.Name, err)
		}
	}
	for i, n := range g.Nodes {
		if err := n.checkFields(); err != nil {
			return fmt.Errorf("node %d (%s): %w", i, n.Op, err)
		}
	}
	for i, o := range g.Outputs {
		for _, f := range [...]struct{ name, s string }{{"name", o.Name}, {"value", o.Value}, {"updates", o.Updates}} {
			if !utf8.ValidString(f.s) {
				return fmt.Errorf("output %d (%q): field %q: not valid UTF-8", i, o.Name, f.name)
			}
		}
	}
	return nil
}

func (in *Input) checkFields() error {
	if err := checkValue(in.Value); err != nil {
		return err
	}
	if in.Role == InvalidRole || int(in.Role) >= len(roleNames) {
		return fmt.Errorf(`field "role": unknown role %d`, in.Role)
	}
	if !utf8.ValidString(in.Of) {
		return errors.New(`field "of": not valid UTF-8`)
	}
	if in.Init != nil {
		if in.Init.Kind == InvalidInit || int(in.Init.Kind) >= len(initNames) {
			return fmt.Errorf(`field "init": unknown init kind %d`, in.Init.Kind)
		}
		if in.Init.Total < 0 {
			return fmt.Errorf(`field "init": total: want a non-negative integer, got %d`, in.Init.Total)
		}
	}
	return nil
}

// checkValue checks a value's name and type.
func checkValue(v Value) error {
	if !utf8.ValidString(v.Name) {
		return errors.New(`field "name": not valid UTF-8`)
	}
	if v.Type.DType == InvalidDType || int(v.Type.DType) >= len(dtypeNames) {
		return fmt.Errorf(`field "type": unknown dtype %d`, v.Type.DType)
	}
	for _, d := range v.Type.Shape {
		if d < 0 {
			return fmt.Errorf(`field "type": negative dimension in %v`, v.Type)
		}
	}
	return nil
}

func (n *Node) checkFields() error {
	def := Lookup(n.Op)
	if def == nil {
		if !utf8.ValidString(n.Op) {
			return errors.New(`field "op": not valid UTF-8`)
		}
		return fmt.Errorf(`field "op": unknown op %q`, n.Op)
	}
	if !utf8.ValidString(n.Name) {
		return errors.New(`field "name": not valid UTF-8`)
	}
	for j, v := range n.Inputs {
		if !utf8.ValidString(v) {
			return fmt.Errorf(`field "in": input %d: not valid UTF-8`, j)
		}
	}
	for j, o := range n.Outputs {
		if err := checkValue(o); err != nil {
			return fmt.Errorf(`field "out": output %d (%q): %w`, j, o.Name, err)
		}
	}
	for _, k := range n.Attrs.Keys() {
		a := n.Attrs[k]
		spec := def.Attr(k)
		if spec == nil {
			if !utf8.ValidString(k) {
				return errors.New("attribute name: not valid UTF-8")
			}
			return fmt.Errorf("attribute %q: %s has no such attribute", k, n.Op)
		}
		if a.Kind != spec.Kind {
			if a.Kind == 0 || int(a.Kind) >= len(attrKindNames) {
				return fmt.Errorf("attribute %q: unknown attribute kind %d", k, a.Kind)
			}
			return fmt.Errorf("attribute %q: %s wants %v, got %v", k, n.Op, spec.Kind, a.Kind)
		}
		if a.Kind == AttrString && !utf8.ValidString(a.Str) {
			return fmt.Errorf("attribute %q: not valid UTF-8", k)
		}
	}
	return nil
}
