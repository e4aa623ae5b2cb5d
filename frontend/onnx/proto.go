package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The subset of onnx.proto that the importer reads, decoded field by field.
// Field numbers are those of onnx.proto (IR version 8).

type modelProto struct {
	irVersion int64
	opsets    []opsetID
	graph     *graphProto
}

type opsetID struct {
	domain  string
	version int64
}

type graphProto struct {
	name        string
	nodes       []*nodeProto
	initializer []*tensorProto
	inputs      []*valueInfo
	outputs     []*valueInfo
	sparseInit  int // count of sparse initializers (unsupported)
}

type nodeProto struct {
	inputs, outputs []string
	name, opType    string
	domain          string
	attrs           []*attrProto
}

type attrProto struct {
	name    string
	typ     int64
	f       float32
	i       int64
	s       []byte
	t       *tensorProto
	floats  []float32
	ints    []int64
	refName string
	other   bool // a graph, graphs, tensors, strings or sparse tensor value
}

// ONNX AttributeProto.AttributeType values.
const (
	attrFloat  = 1
	attrInt    = 2
	attrString = 3
	attrTensor = 4
	attrFloats = 6
	attrInts   = 7
)

type tensorProto struct {
	name       string
	dims       []int64
	dataType   int64
	floatData  []float32
	int32Data  []int64
	int64Data  []int64
	doubleData []float64
	uint64Data []uint64
	rawData    []byte
	hasRaw     bool
	external   bool
	segment    bool
}

type valueInfo struct {
	name     string
	hasType  bool
	tensor   bool // the type is a tensor type
	elemType int64
	hasShape bool
	dims     []dimProto
}

type dimProto struct {
	value int64
	param string
	known bool
}

// ONNX TensorProto.DataType values.
const (
	dtFloat   = 1
	dtUint8   = 2
	dtInt8    = 3
	dtUint16  = 4
	dtInt16   = 5
	dtInt32   = 6
	dtInt64   = 7
	dtString  = 8
	dtBool    = 9
	dtFloat16 = 10
	dtDouble  = 11
	dtUint32  = 12
	dtUint64  = 13
	dtBF16    = 16
)

var dtNames = map[int64]string{
	dtFloat: "float", dtUint8: "uint8", dtInt8: "int8", dtUint16: "uint16", dtInt16: "int16",
	dtInt32: "int32", dtInt64: "int64", dtString: "string", dtBool: "bool", dtFloat16: "float16",
	dtDouble: "double", dtUint32: "uint32", dtUint64: "uint64", 14: "complex64", 15: "complex128", dtBF16: "bfloat16",
}

func dtName(t int64) string {
	if n, ok := dtNames[t]; ok {
		return n
	}
	return fmt.Sprintf("data type %d", t)
}

var errTruncated = errors.New("truncated protobuf")

// fields calls f for every field of a message. f returns the number of bytes it
// consumed from b (after the tag) or a negative protowire error code.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		m, err := f(num, typ, b)
		if err != nil {
			return err
		}
		if m < 0 {
			m = protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return protowire.ParseError(m)
			}
		}
		b = b[m:]
	}
	return nil
}

// skip tells fields to skip the value.
const skip = -1

func bytesField(typ protowire.Type, b []byte) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, fmt.Errorf("wire type %d where bytes are expected", typ)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, protowire.ParseError(n)
	}
	return v, n, nil
}

func varintField(typ protowire.Type, b []byte) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, fmt.Errorf("wire type %d where a varint is expected", typ)
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, protowire.ParseError(n)
	}
	return v, n, nil
}

// repeatedVarint appends one field of a repeated varint, packed or not.
func repeatedVarint(typ protowire.Type, b []byte, dst *[]int64) (int, error) {
	if typ == protowire.VarintType {
		v, n, err := varintField(typ, b)
		*dst = append(*dst, int64(v))
		return n, err
	}
	p, n, err := bytesField(typ, b)
	if err != nil {
		return 0, err
	}
	for len(p) > 0 {
		v, m := protowire.ConsumeVarint(p)
		if m < 0 {
			return 0, protowire.ParseError(m)
		}
		*dst = append(*dst, int64(v))
		p = p[m:]
	}
	return n, nil
}

// repeatedFixed32 appends one field of a repeated float, packed or not.
func repeatedFixed32(typ protowire.Type, b []byte, dst *[]float32) (int, error) {
	if typ == protowire.Fixed32Type {
		v, n := protowire.ConsumeFixed32(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		*dst = append(*dst, math.Float32frombits(v))
		return n, nil
	}
	p, n, err := bytesField(typ, b)
	if err != nil {
		return 0, err
	}
	if len(p)%4 != 0 {
		return 0, errTruncated
	}
	for i := 0; i < len(p); i += 4 {
		*dst = append(*dst, math.Float32frombits(binary.LittleEndian.Uint32(p[i:])))
	}
	return n, nil
}

// repeatedFixed64 appends one field of a repeated double or fixed64, packed or not.
func repeatedFixed64(typ protowire.Type, b []byte, dst *[]uint64) (int, error) {
	if typ == protowire.Fixed64Type {
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		*dst = append(*dst, v)
		return n, nil
	}
	p, n, err := bytesField(typ, b)
	if err != nil {
		return 0, err
	}
	if len(p)%8 != 0 {
		return 0, errTruncated
	}
	for i := 0; i < len(p); i += 8 {
		*dst = append(*dst, binary.LittleEndian.Uint64(p[i:]))
	}
	return n, nil
}

func decodeModel(b []byte) (*modelProto, error) {
	m := &modelProto{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			v, n, err := varintField(typ, b)
			m.irVersion = int64(v)
			return n, err
		case 8:
			p, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			var o opsetID
			err = fields(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				switch num {
				case 1:
					s, n, err := bytesField(typ, b)
					o.domain = string(s)
					return n, err
				case 2:
					v, n, err := varintField(typ, b)
					o.version = int64(v)
					return n, err
				}
				return skip, nil
			})
			m.opsets = append(m.opsets, o)
			return n, err
		case 7:
			p, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			m.graph, err = decodeGraph(p)
			return n, err
		}
		return skip, nil
	})
	return m, err
}

func decodeGraph(b []byte) (*graphProto, error) {
	g := &graphProto{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 2, 5, 11, 12, 15:
		default:
			return skip, nil
		}
		p, n, err := bytesField(typ, b)
		if err != nil {
			return 0, err
		}
		switch num {
		case 1:
			nd, err := decodeNode(p)
			g.nodes = append(g.nodes, nd)
			return n, err
		case 2:
			g.name = string(p)
		case 5:
			t, err := decodeTensor(p)
			g.initializer = append(g.initializer, t)
			return n, err
		case 11, 12:
			v, err := decodeValueInfo(p)
			if num == 11 {
				g.inputs = append(g.inputs, v)
			} else {
				g.outputs = append(g.outputs, v)
			}
			return n, err
		case 15:
			g.sparseInit++
		}
		return n, nil
	})
	return g, err
}

func decodeNode(b []byte) (*nodeProto, error) {
	nd := &nodeProto{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 2, 3, 4, 5, 7:
		default:
			return skip, nil
		}
		p, n, err := bytesField(typ, b)
		if err != nil {
			return 0, err
		}
		switch num {
		case 1:
			nd.inputs = append(nd.inputs, string(p))
		case 2:
			nd.outputs = append(nd.outputs, string(p))
		case 3:
			nd.name = string(p)
		case 4:
			nd.opType = string(p)
		case 5:
			a, err := decodeAttr(p)
			nd.attrs = append(nd.attrs, a)
			return n, err
		case 7:
			nd.domain = string(p)
		}
		return n, nil
	})
	return nd, err
}

func decodeAttr(b []byte) (*attrProto, error) {
	a := &attrProto{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1, 4, 21:
			p, n, err := bytesField(typ, b)
			switch num {
			case 1:
				a.name = string(p)
			case 4:
				a.s = p
			case 21:
				a.refName = string(p)
			}
			return n, err
		case 2:
			if typ != protowire.Fixed32Type {
				return 0, fmt.Errorf("attribute f: wire type %d", typ)
			}
			v, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			a.f = math.Float32frombits(v)
			return n, nil
		case 3:
			v, n, err := varintField(typ, b)
			a.i = int64(v)
			return n, err
		case 5:
			p, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			a.t, err = decodeTensor(p)
			return n, err
		case 7:
			return repeatedFixed32(typ, b, &a.floats)
		case 8:
			return repeatedVarint(typ, b, &a.ints)
		case 20:
			v, n, err := varintField(typ, b)
			a.typ = int64(v)
			return n, err
		case 6, 9, 10, 11, 22, 23:
			a.other = true
		}
		return skip, nil
	})
	return a, err
}

func decodeTensor(b []byte) (*tensorProto, error) {
	t := &tensorProto{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return repeatedVarint(typ, b, &t.dims)
		case 2:
			v, n, err := varintField(typ, b)
			t.dataType = int64(v)
			return n, err
		case 3:
			t.segment = true
		case 4:
			return repeatedFixed32(typ, b, &t.floatData)
		case 5:
			return repeatedVarint(typ, b, &t.int32Data)
		case 7:
			return repeatedVarint(typ, b, &t.int64Data)
		case 8, 9:
			p, n, err := bytesField(typ, b)
			if num == 8 {
				t.name = string(p)
			} else {
				t.rawData, t.hasRaw = p, true
			}
			return n, err
		case 10:
			var u []uint64
			n, err := repeatedFixed64(typ, b, &u)
			for _, x := range u {
				t.doubleData = append(t.doubleData, math.Float64frombits(x))
			}
			return n, err
		case 11:
			var u []int64
			n, err := repeatedVarint(typ, b, &u)
			for _, x := range u {
				t.uint64Data = append(t.uint64Data, uint64(x))
			}
			return n, err
		case 13:
			t.external = true
		case 14:
			v, n, err := varintField(typ, b)
			if v == 1 {
				t.external = true
			}
			return n, err
		}
		return skip, nil
	})
	return t, err
}

func decodeValueInfo(b []byte) (*valueInfo, error) {
	v := &valueInfo{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			p, n, err := bytesField(typ, b)
			v.name = string(p)
			return n, err
		case 2:
			p, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			v.hasType = true
			return n, decodeTypeProto(p, v)
		}
		return skip, nil
	})
	return v, err
}

func decodeTypeProto(b []byte, v *valueInfo) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != 1 {
			return skip, nil
		}
		p, n, err := bytesField(typ, b)
		if err != nil {
			return 0, err
		}
		v.tensor = true
		return n, fields(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
			switch num {
			case 1:
				e, n, err := varintField(typ, b)
				v.elemType = int64(e)
				return n, err
			case 2:
				p, n, err := bytesField(typ, b)
				if err != nil {
					return 0, err
				}
				v.hasShape = true
				return n, fields(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
					if num != 1 {
						return skip, nil
					}
					p, n, err := bytesField(typ, b)
					if err != nil {
						return 0, err
					}
					var d dimProto
					err = fields(p, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
						switch num {
						case 1:
							x, n, err := varintField(typ, b)
							d.value, d.known = int64(x), true
							return n, err
						case 2:
							s, n, err := bytesField(typ, b)
							d.param = string(s)
							return n, err
						}
						return skip, nil
					})
					v.dims = append(v.dims, d)
					return n, err
				})
			}
			return skip, nil
		})
	})
}
