package lower

import (
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Constant tables (RoPE's cos/sin) are computed at compile time in Go and
// linked into the shared object as C arrays of exact hexadecimal float64
// literals: the kernel calls a tiny accessor returning the table's address.
// (The LLVM binding builds functions, not initialised globals, and a C file
// compiled by the same cc that links the object is the simplest exact way in.)

// table is one constant array.
type table struct {
	symbol string
	values []float64
}

// table returns the declaration of `const double *symbol(void)`, the
// accessor of a table named name with the given values, recording the table
// for CSource. Tables are deduplicated by name.
func (e *Emitter) table(name string, values []float64) llvm.Function {
	sym := "slc_tab_" + sanitize(name)
	if f, ok := e.decls[sym]; ok {
		return f
	}
	f := e.Mod.AddFunction(sym, llvm.FunctionType(e.Ptr, nil, false))
	e.decls[sym] = f
	if e.be.tableAccessor(e, f, sym, values) {
		return f
	}
	e.tables[sym] = &table{symbol: sym, values: values}
	e.order = append(e.order, sym)
	return f
}

// sanitize keeps the characters allowed in a C identifier.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// CSource returns the C translation unit defining every table used by the
// emitted kernels, or nil when there are none. Link it with the object.
func (e *Emitter) CSource() []byte {
	if len(e.order) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("/* Constant tables of slc's kernels (generated; values are exact float64). */\n")
	for _, sym := range e.order {
		t := e.tables[sym]
		b.WriteString("static const double " + sym + "_data[" + strconv.Itoa(max(len(t.values), 1)) + "] __attribute__((aligned(64))) = {")
		for i, v := range t.values {
			if i%4 == 0 {
				b.WriteString("\n\t")
			} else {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(v, 'x', -1, 64))
			b.WriteByte(',')
		}
		b.WriteString("\n};\n")
		b.WriteString("__attribute__((visibility(\"hidden\"))) const double *" + sym + "(void) { return " + sym + "_data; }\n")
	}
	return []byte(b.String())
}
