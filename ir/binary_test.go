package ir

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir/fbs"
	flatbuffers "github.com/google/flatbuffers/go"
)

// richModule adds to tinyGraph a second graph that uses every role and init kind,
// Of and Updates, non-ASCII names and the float values that are easy to lose in a
// serializer: -0, ±Inf, a NaN with a payload and a subnormal.
func richModule(t testing.TB) *Module {
	t.Helper()
	nanPayload := math.Float64frombits(0x7ff0_0000_dead_beef)
	m := tinyGraph(t.(*testing.T))
	b := NewBuilder("update — ü")
	w := b.AddInput("w", T(F32, 2, 4), Param, &Init{Kind: InitUniform, Low: math.Copysign(0, -1), High: 0.25, Seed: 1<<64 - 1})
	mom := b.AddInput("w.m", T(F32, 2, 4), OptState, &Init{Kind: InitZeros})
	acc := b.AddInput("w.grad", T(F32, 2, 4), GradAccum, &Init{Kind: InitExplicit, Data: []float64{
		0, math.Copysign(0, -1), 1, -1, math.Inf(1), math.Inf(-1), nanPayload, 5e-324}})
	b.G.Inputs[1].Of, b.G.Inputs[2].Of = w, w
	b.AddInput("ones", T(BF16, 3), Buffer, &Init{Kind: InitOnes})
	b.AddInput("idx", T(I32, 4), Buffer, &Init{Kind: InitSupport, Total: 8, Seed: 3})
	b.AddInput("step", T(I64), Scalar, nil)
	b.Scope = "model.layers.0.mlp"
	c := b.Const(nanPayload, T(F32, 2, 4))
	z := b.Const(math.Copysign(0, -1), T(F32))
	i := b.Const(math.Inf(1), T(F32))
	x := b.Add(b.Add(b.Mul(acc, c), b.Mul(mom, z)), i)
	r := b.Op("RoPE", Attrs{"base": Float(5e-324), "inverse": Int(-1 << 63), "seq_axis": Int(0)}, b.Reshape(x, 2, 2, 2))
	b.Output("new_w", b.Reshape(r, 2, 4))
	b.G.Outputs[0].Updates = w
	b.Output("m", mom)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	m.Graphs = append(m.Graphs, b.G)
	m.Meta["config"] = `{"dim": 512, "name": "llama_60m"}`
	m.Meta[""] = "empty key"
	return m
}

// nilPattern lists, in walk order, whether each slice, map and pointer inside v is
// nil and its length: with Equal it amounts to reflect.DeepEqual, which cannot
// be used because NaN != NaN.
func nilPattern(v any) string {
	var sb strings.Builder
	var walk func(r reflect.Value)
	walk = func(r reflect.Value) {
		switch r.Kind() {
		case reflect.Pointer:
			if r.IsNil() {
				sb.WriteString("nil* ")
				return
			}
			walk(r.Elem())
		case reflect.Slice, reflect.Map:
			if r.IsNil() {
				sb.WriteString("nil ")
				return
			}
			fmt.Fprintf(&sb, "[%d] ", r.Len())
			if r.Kind() == reflect.Slice {
				for i := 0; i < r.Len(); i++ {
					walk(r.Index(i))
				}
				return
			}
			keys := r.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				walk(r.MapIndex(k))
			}
		case reflect.Struct:
			for i := 0; i < r.NumField(); i++ {
				walk(r.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
	return sb.String()
}

// marshalUnchecked writes m without the field checks, to make files that only
// a broken or foreign writer would produce.
func marshalUnchecked(m *Module) []byte {
	return (&writer{b: flatbuffers.NewBuilder(0)}).module(m)
}

func TestBinaryRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name string
		m    *Module
	}{
		{"tiny", tinyGraph(t)},
		{"rich", richModule(t)},
		{"empty module", &Module{}},
		{"empty graph", &Module{Graphs: []*Graph{{Name: "g"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.m.Verify(); err != nil {
				t.Fatal(err)
			}
			bin, err := c.m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseBinary(bin)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Equal(c.m) {
				t.Fatalf("round trip changed the module:\n%s\nvs\n%s", c.m.MarshalText(), back.MarshalText())
			}
			// The builder leaves nil where ParseText does; ParseBinary must too.
			if a, b := nilPattern(back), nilPattern(c.m); a != b {
				t.Errorf("nil and empty differ after the round trip:\n%s\nvs\n%s", a, b)
			}
			again, err := back.MarshalBinary()
			if err != nil || !bytes.Equal(again, bin) {
				t.Errorf("writing the parsed module gave different bytes (err %v)", err)
			}
		})
	}
}

func TestBinaryMatchesParseTextConventions(t *testing.T) {
	for _, m := range []*Module{tinyGraph(t), richModule(t)} {
		fromText, err := ParseText(m.MarshalText())
		if err != nil {
			t.Fatal(err)
		}
		bin, err := fromText.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		fromBin, err := ParseBinary(bin)
		if err != nil {
			t.Fatal(err)
		}
		if !fromBin.Equal(fromText) {
			t.Errorf("ParseBinary and ParseText give different modules for\n%s", m.MarshalText())
		}
		if a, b := nilPattern(fromBin), nilPattern(fromText); a != b {
			t.Errorf("ParseBinary and ParseText differ in nil and empty:\n%s\nvs\n%s", a, b)
		}
	}
}

func TestBinaryFloatsAreBitExact(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1.5, math.Inf(1), math.Inf(-1), math.NaN(),
		math.Float64frombits(0x7ff0_0000_0000_0001), math.Float64frombits(0xfff8_0000_1234_5678), 5e-324, math.MaxFloat64}
	bits := func(f float64) uint64 { return math.Float64bits(f) }
	for _, v := range vals {
		in := &Init{Kind: InitNormal, Mean: v, Std: v, Low: v, High: v, Data: []float64{v, v}}
		m := &Module{Graphs: []*Graph{{Name: "g",
			Inputs: []*Input{{Value: Value{"p", T(F32, 2)}, Role: Param, Init: in}},
			// No op declares a floats attribute yet: marshalUnchecked carries one anyway.
			Nodes: []*Node{{Op: "Const", Outputs: []Value{{"c", T(F32)}},
				Attrs: Attrs{"value": Float(v), "dtype": String("f32"), "fs": Floats(v, -v)}}},
		}}}
		d := &decoder{buf: marshalUnchecked(m), strs: map[int]string{}, graph: -1}
		d.budget = len(d.buf)
		back := d.module()
		bi, ba := back.Graphs[0].Inputs[0].Init, back.Graphs[0].Nodes[0].Attrs
		for _, got := range []float64{bi.Mean, bi.Std, bi.Low, bi.High, bi.Data[0], bi.Data[1], ba["value"].Float, ba["fs"].Floats[0]} {
			if bits(got) != bits(v) {
				t.Errorf("%v (%#x) came back as %#x", v, bits(v), bits(got))
			}
		}
		if bits(ba["fs"].Floats[1]) != bits(-v) {
			t.Errorf("-(%v) came back as %#x", v, bits(ba["fs"].Floats[1]))
		}
	}
}

func TestBinaryAndTextAgree(t *testing.T) {
	for _, m := range []*Module{tinyGraph(t), richModule(t)} {
		text := m.MarshalText()
		m1, err := ParseText(text)
		if err != nil {
			t.Fatal(err)
		}
		bin, err := m1.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseBinary(bin)
		if err != nil {
			t.Fatal(err)
		}
		if got := m2.MarshalText(); !bytes.Equal(got, text) {
			t.Errorf("text → binary → text changed the text:\n%s\nvs\n%s", text, got)
		}
	}
}

// The schema's enums must carry the numbers of package ir's constants, since the
// reader and writer convert between them by value.
func TestSchemaEnumsMatchIR(t *testing.T) {
	check := func(what string, n int, names func(i int) (string, bool)) {
		for i := 0; i < n; i++ {
			if _, ok := names(i); !ok {
				t.Errorf("%s %d has no schema name", what, i)
			}
		}
		if _, ok := names(n); ok {
			t.Errorf("the schema has more %s values than package ir (%d)", what, n)
		}
	}
	check("dtype", len(dtypeNames), func(i int) (string, bool) { s, ok := fbs.EnumNamesDType[fbs.DType(i)]; return s, ok })
	check("role", len(roleNames), func(i int) (string, bool) { s, ok := fbs.EnumNamesRole[fbs.Role(i)]; return s, ok })
	check("init kind", len(initNames), func(i int) (string, bool) { s, ok := fbs.EnumNamesInitKind[fbs.InitKind(i)]; return s, ok })
	check("attr kind", len(attrKindNames), func(i int) (string, bool) { s, ok := fbs.EnumNamesAttrKind[fbs.AttrKind(i)]; return s, ok })
	for _, c := range []struct {
		ir  uint8
		fbs uint8
	}{
		{uint8(F32), uint8(fbs.DTypeF32)}, {uint8(F64), uint8(fbs.DTypeF64)}, {uint8(BF16), uint8(fbs.DTypeBF16)},
		{uint8(F16), uint8(fbs.DTypeF16)}, {uint8(I32), uint8(fbs.DTypeI32)}, {uint8(I64), uint8(fbs.DTypeI64)},
		{uint8(Param), uint8(fbs.RoleParam)}, {uint8(Buffer), uint8(fbs.RoleBuffer)}, {uint8(OptState), uint8(fbs.RoleOptState)},
		{uint8(GradAccum), uint8(fbs.RoleGradAccum)}, {uint8(Data), uint8(fbs.RoleData)}, {uint8(Scalar), uint8(fbs.RoleScalar)},
		{uint8(InitZeros), uint8(fbs.InitKindZeros)}, {uint8(InitOnes), uint8(fbs.InitKindOnes)}, {uint8(InitNormal), uint8(fbs.InitKindNormal)},
		{uint8(InitUniform), uint8(fbs.InitKindUniform)}, {uint8(InitExplicit), uint8(fbs.InitKindExplicit)}, {uint8(InitSupport), uint8(fbs.InitKindSupport)},
		{uint8(AttrInt), uint8(fbs.AttrKindInt)}, {uint8(AttrFloat), uint8(fbs.AttrKindFloat)}, {uint8(AttrInts), uint8(fbs.AttrKindInts)},
		{uint8(AttrFloats), uint8(fbs.AttrKindFloats)}, {uint8(AttrString), uint8(fbs.AttrKindString)},
	} {
		if c.ir != c.fbs {
			t.Errorf("ir value %d is %d in the schema", c.ir, c.fbs)
		}
	}
}

func TestParseBinaryCorruptNeverPanics(t *testing.T) {
	bin, err := tinyGraph(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(bin); n++ {
		if _, err := ParseBinary(bin[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(bin))
		}
	}
	if _, err := ParseBinary(append(bin[:len(bin):len(bin)], 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("trailing byte: got %v", err)
	}
	// Flipped bytes may still decode (a changed letter in a name), but must never
	// panic, and whatever decodes must be writable again.
	for i := range bin {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(bin)
			c[i] ^= mask
			m, err := ParseBinary(c)
			if err == nil {
				if _, err := m.MarshalBinary(); err != nil {
					t.Errorf("byte %d ^ %#x: parsed but cannot be written: %v", i, mask, err)
				}
			}
		}
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"nil", nil, "too short"},
		{"empty", []byte{}, "too short"},
		{"text form", tinyGraph(t).MarshalText(), "not a binary slc IR file"},
		{"wrong identifier", append(bytes.Clone(bin[:8]), append([]byte("ONNX"), bin[12:]...)...), `identifier "ONNX"`},
		{"huge size prefix", append([]byte{0xff, 0xff, 0xff, 0x7f}, bin[4:]...), "truncated"},
		{"root outside", append(bytes.Clone(bin[:4]), append([]byte{0xf0, 0xff, 0xff, 0xff}, bin[8:]...)...), "outside"},
	} {
		_, err := ParseBinary(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// TestParseBinaryRejects writes files with fields a correct writer never
// produces and checks the messages name the place, as ParseText's do.
func TestParseBinaryRejects(t *testing.T) {
	for _, c := range []struct {
		name   string
		modify func(m *Module)
		want   string
	}{
		{"unknown op", func(m *Module) { m.Graphs[0].Nodes[1].Op = "Frobnicate" }, `graph 0 ("forward"): node 1 (Frobnicate): field "op": unknown op "Frobnicate"`},
		{"unknown dtype", func(m *Module) { m.Graphs[0].Inputs[1].Type.DType = 42 }, `input 1 ("w"): field "type": unknown dtype 42`},
		{"invalid dtype", func(m *Module) { m.Graphs[0].Nodes[0].Outputs[0].Type.DType = InvalidDType }, `node 0 (Linear): field "out": output 0 ("v0"): field "type": unknown dtype 0`},
		{"negative dim", func(m *Module) { m.Graphs[0].Inputs[0].Type.Shape[1] = -3 }, "dimension -3 is out of range"},
		{"unknown role", func(m *Module) { m.Graphs[0].Inputs[2].Role = 9 }, `input 2 ("idx"): field "role": unknown role 9`},
		{"no role", func(m *Module) { m.Graphs[0].Inputs[2].Role = InvalidRole }, `field "role": unknown role 0`},
		{"unknown init", func(m *Module) { m.Graphs[0].Inputs[1].Init.Kind = 77 }, `input 1 ("w"): field "init": unknown init kind 77`},
		{"negative total", func(m *Module) { m.Graphs[0].Inputs[2].Init.Total = -1 }, "total: want a non-negative integer"},
		{"unknown attr kind", func(m *Module) { m.Graphs[0].Nodes[2].Attrs["axis"] = Attr{Kind: 12} }, `node 2 (Slice): attribute "axis": unknown attribute kind 12`},
		{"wrong attr kind", func(m *Module) { m.Graphs[0].Nodes[2].Attrs["axis"] = Float(2) }, `attribute "axis": Slice wants int, got float`},
		{"undeclared attr", func(m *Module) { m.Graphs[0].Nodes[2].Attrs["colour"] = Int(1) }, `attribute "colour": Slice has no such attribute`},
		{"bad utf-8", func(m *Module) { m.Graphs[0].Nodes[4].Name = "\xff" }, `node 4 (CausalMask): field "name": not valid UTF-8`},
		{"bad utf-8 meta", func(m *Module) { m.Meta["k"] = "\xc3" }, `meta "k": not valid UTF-8`},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := tinyGraph(t)
			c.modify(m)
			if _, err := m.MarshalBinary(); err == nil {
				t.Errorf("MarshalBinary wrote it")
			}
			_, err := ParseBinary(marshalUnchecked(m))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// handBuilt finishes a file from raw schema calls, for shapes the writer cannot make.
func handBuilt(b *flatbuffers.Builder, version uint32, meta, graphs flatbuffers.UOffsetT) []byte {
	fbs.ModuleStart(b)
	fbs.ModuleAddVersion(b, version)
	fbs.ModuleAddMeta(b, meta)
	fbs.ModuleAddGraphs(b, graphs)
	b.FinishSizePrefixedWithFileIdentifier(fbs.ModuleEnd(b), []byte(fbs.FileIdentifier))
	return b.FinishedBytes()
}

func TestParseBinaryRejectsStructure(t *testing.T) {
	// A future version.
	_, err := ParseBinary(handBuilt(flatbuffers.NewBuilder(0), 2, 0, 0))
	if err == nil || !strings.Contains(err.Error(), "version 2 is not supported") {
		t.Errorf("version 2: got %v", err)
	}

	// The same key twice.
	b := flatbuffers.NewBuilder(0)
	w := &writer{b: b}
	var entries []flatbuffers.UOffsetT
	for range 2 {
		k, v := w.str("model"), w.str("tiny")
		fbs.MetaEntryStart(b)
		fbs.MetaEntryAddKey(b, k)
		fbs.MetaEntryAddValue(b, v)
		entries = append(entries, fbs.MetaEntryEnd(b))
	}
	_, err = ParseBinary(handBuilt(b, BinaryVersion, w.offsets(entries), 0))
	if err == nil || !strings.Contains(err.Error(), `meta key "model" appears twice`) {
		t.Errorf("duplicate meta key: got %v", err)
	}

	// The same attribute twice.
	b = flatbuffers.NewBuilder(0)
	w = &writer{b: b}
	attrs := w.offsets([]flatbuffers.UOffsetT{w.attr("axis", Int(0)), w.attr("axis", Int(1))})
	op := w.str("Softmax")
	fbs.NodeStart(b)
	fbs.NodeAddOp(b, op)
	fbs.NodeAddAttrs(b, attrs)
	nodes := w.offsets([]flatbuffers.UOffsetT{fbs.NodeEnd(b)})
	fbs.GraphStart(b)
	fbs.GraphAddNodes(b, nodes)
	graphs := w.offsets([]flatbuffers.UOffsetT{fbs.GraphEnd(b)})
	_, err = ParseBinary(handBuilt(b, BinaryVersion, 0, graphs))
	if err == nil || !strings.Contains(err.Error(), `graph 0: node 0: Softmax: attribute "axis" appears twice`) {
		t.Errorf("duplicate attribute: got %v", err)
	}

	// An input without its value table.
	b = flatbuffers.NewBuilder(0)
	w = &writer{b: b}
	fbs.InputStart(b)
	fbs.InputAddRole(b, fbs.RoleData)
	inputs := w.offsets([]flatbuffers.UOffsetT{fbs.InputEnd(b)})
	fbs.GraphStart(b)
	fbs.GraphAddInputs(b, inputs)
	graphs = w.offsets([]flatbuffers.UOffsetT{fbs.GraphEnd(b)})
	_, err = ParseBinary(handBuilt(b, BinaryVersion, 0, graphs))
	if err == nil || !strings.Contains(err.Error(), "graph 0: input 0: input has no value") {
		t.Errorf("input without value: got %v", err)
	}
}

// A small file whose vectors all point at one big graph must not decode into a
// huge module: the decoder's budget stops it.
func TestParseBinaryRepeatedReferences(t *testing.T) {
	b := flatbuffers.NewBuilder(0)
	w := &writer{b: b}
	g := w.graph(tinyGraph(t).Graphs[0])
	refs := make([]flatbuffers.UOffsetT, 1<<16)
	for i := range refs {
		refs[i] = g
	}
	data := handBuilt(b, BinaryVersion, 0, w.offsets(refs))
	_, err := ParseBinary(data)
	if err == nil || !strings.Contains(err.Error(), "more data than the file") {
		t.Fatalf("%d bytes, 65536 references to one graph: got %v", len(data), err)
	}
}

func TestMarshalBinaryHeader(t *testing.T) {
	bin, err := tinyGraph(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(bin); int(got) != len(bin)-4 {
		t.Errorf("size prefix %d, file %d bytes", got, len(bin))
	}
	if id := string(bin[8:12]); id != fbs.FileIdentifier {
		t.Errorf("identifier %q", id)
	}
}
