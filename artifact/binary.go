package artifact

import (
	"fmt"
	irfbs "gitee.com/gidean/conv-linn/ir/fbs"
	"runtime"
	"unicode/utf8"

	"gitee.com/gidean/conv-linn/artifact/fbs"
	"gitee.com/gidean/conv-linn/ir"
	flatbuffers "github.com/google/flatbuffers/go"
)

// FormatVersion is the format field Marshal writes. Unmarshal reads only this
// version, so a file from a newer slc fails with a clear message instead of
// being misread.
const FormatVersion = 1

// A .slc file is a size-prefixed FlatBuffer (schema artifact/fbs/slca.fbs): the
// length of the FlatBuffer's rest, the root table's offset, then the file
// identifier; the checksum trailer (digest.go) follows it.

// Marshal writes the artifact in its FlatBuffers form. It validates the
// artifact first (see Validate) and writes nothing for an invalid one, so every
// file Marshal produces is one Unmarshal accepts. The output is deterministic.
func (a *Artifact) Marshal() (data []byte, err error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("cannot write artifact: %w", err)
	}
	defer func() {
		// The builder panics when the buffer would pass FlatBuffers' 2 GiB limit.
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("cannot write artifact: %v", r)
		}
	}()
	b := flatbuffers.NewBuilder(1024 + len(a.Code) + len(a.Module))
	str := func(s string) flatbuffers.UOffsetT {
		if s == "" {
			return 0
		}
		return b.CreateString(s)
	}
	bytesVec := func(v []byte) flatbuffers.UOffsetT {
		if len(v) == 0 {
			return 0
		}
		return b.CreateByteVector(v)
	}
	offsets := func(offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
		if len(offs) == 0 {
			return 0
		}
		b.StartVector(4, len(offs), 4)
		for i := len(offs) - 1; i >= 0; i-- {
			b.PrependUOffsetT(offs[i])
		}
		return b.EndVector(len(offs))
	}

	progs := make([]flatbuffers.UOffsetT, len(a.Programs))
	for i, p := range a.Programs {
		progs[i] = marshalProgram(b, p, str, offsets)
	}
	progVec := offsets(progs)
	code, module := bytesVec(a.Code), bytesVec(a.Module)
	kind, triple, cpu, feats := str(a.Target.Kind), str(a.Target.Triple), str(a.Target.CPU), str(a.Target.Features)
	fbs.TargetStart(b)
	fbs.TargetAddKind(b, kind)
	fbs.TargetAddTriple(b, triple)
	fbs.TargetAddCpu(b, cpu)
	fbs.TargetAddFeatures(b, feats)
	target := fbs.TargetEnd(b)
	cv := str(a.CompilerVersion)

	fbs.ArtifactStart(b)
	fbs.ArtifactAddFormat(b, FormatVersion)
	fbs.ArtifactAddCompilerVersion(b, cv)
	fbs.ArtifactAddTarget(b, target)
	fbs.ArtifactAddModule(b, module)
	fbs.ArtifactAddPrograms(b, progVec)
	fbs.ArtifactAddCode(b, code)
	b.FinishSizePrefixedWithFileIdentifier(fbs.ArtifactEnd(b), []byte(fbs.FileIdentifier))
	return seal(b.FinishedBytes(), a.Code), nil
}

func marshalProgram(b *flatbuffers.Builder, p *Program, str func(string) flatbuffers.UOffsetT, offsets func([]flatbuffers.UOffsetT) flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	slots := make([]flatbuffers.UOffsetT, len(p.Slots))
	for i, s := range p.Slots {
		name := str(s.Name)
		var shape flatbuffers.UOffsetT
		if len(s.Type.Shape) > 0 {
			b.StartVector(8, len(s.Type.Shape), 8)
			for j := len(s.Type.Shape) - 1; j >= 0; j-- {
				b.PrependInt64(int64(s.Type.Shape[j]))
			}
			shape = b.EndVector(len(s.Type.Shape))
		}
		fbs.SlotStart(b)
		fbs.SlotAddName(b, name)
		fbs.SlotAddDtype(b, fbs.DType(s.Type.DType))
		fbs.SlotAddShape(b, shape)
		fbs.SlotAddKind(b, fbs.SlotKind(s.Kind))
		fbs.SlotAddOffset(b, s.Offset)
		slots[i] = fbs.SlotEnd(b)
	}
	steps := make([]flatbuffers.UOffsetT, len(p.Steps))
	for i, st := range p.Steps {
		kernel, label := str(st.Kernel), str(st.Label)
		var args flatbuffers.UOffsetT
		if len(st.Args) > 0 {
			b.StartVector(4, len(st.Args), 4)
			for j := len(st.Args) - 1; j >= 0; j-- {
				b.PrependInt32(st.Args[j])
			}
			args = b.EndVector(len(st.Args))
		}
		fbs.StepStart(b)
		fbs.StepAddKernel(b, kernel)
		fbs.StepAddArgs(b, args)
		fbs.StepAddGrid(b, st.Grid)
		fbs.StepAddBlock(b, st.Block)
		fbs.StepAddSharedBytes(b, st.SharedBytes)
		fbs.StepAddScratchBytes(b, st.ScratchBytes)
		fbs.StepAddFlops(b, st.Flops)
		fbs.StepAddBytes(b, st.Bytes)
		fbs.StepAddTensorCore(b, st.TensorCore)
		if label != 0 {
			fbs.StepAddLabel(b, label)
		}
		steps[i] = fbs.StepEnd(b)
	}
	outs := make([]flatbuffers.UOffsetT, len(p.Outputs))
	for i, o := range p.Outputs {
		name, upd := str(o.Name), str(o.Updates)
		fbs.OutputStart(b)
		fbs.OutputAddName(b, name)
		fbs.OutputAddSlot(b, o.Slot)
		fbs.OutputAddUpdates(b, upd)
		outs[i] = fbs.OutputEnd(b)
	}
	slotVec, stepVec, outVec := offsets(slots), offsets(steps), offsets(outs)
	name := str(p.Name)
	fbs.ProgramStart(b)
	fbs.ProgramAddName(b, name)
	fbs.ProgramAddArenaBytes(b, p.ArenaBytes)
	fbs.ProgramAddScratchBytes(b, p.ScratchBytes)
	fbs.ProgramAddSlots(b, slotVec)
	fbs.ProgramAddSteps(b, stepVec)
	fbs.ProgramAddOutputs(b, outVec)
	return fbs.ProgramEnd(b)
}

// Unmarshal reads an artifact written by Marshal. It never trusts data: it
// checks the identifier, the size, the checksum of every byte (see seal), the
// format version, bounds every
// table, vector and string by the size of data, and then validates the result
// (see Validate). Malformed input gives an error starting "corrupt artifact",
// never a panic. The artifact shares no memory with data.
func Unmarshal(data []byte) (*Artifact, error) {
	body, codeSum, err := unseal(data)
	if err != nil {
		return nil, err
	}
	a, err := unmarshalBody(body)
	if err != nil {
		return nil, err
	}
	a.CodeSHA256 = codeSum
	if err := a.CheckCode(); err != nil {
		return nil, err
	}
	return a, nil
}

// unmarshalBody decodes the FlatBuffer of a .slc file, whose checksum
// Unmarshal checked; it still trusts nothing in it.
func unmarshalBody(data []byte) (a *Artifact, err error) {
	if err := irfbs.CheckHeader(data, fbs.FileIdentifier, "a .slc artifact", "corrupt artifact"); err != nil {
		return nil, err
	}
	d := &decoder{buf: data, budget: len(data)}
	defer func() {
		if r := recover(); r != nil {
			var msg string
			switch e := r.(type) {
			case corruptError:
				msg = string(e)
			case runtime.Error:
				// A generated accessor followed an offset out of the buffer.
				msg = fmt.Sprintf("%s: offset out of range (%v)", d.where, e)
			default:
				panic(r)
			}
			a, err = nil, fmt.Errorf("corrupt artifact: %s", msg)
		}
	}()
	a = d.artifact()
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("corrupt artifact: %w", err)
	}
	return a, nil
}

// corruptError is what the decoder panics with on malformed data; Unmarshal
// recovers it (and the runtime's index errors) into an ordinary error.
type corruptError string

// decoder reads a buffer whose every byte may be hostile. Besides the bounds
// checks, it caps the work: every vector or string costs its size in bytes from
// a budget of len(buf) (the parts of a file Marshal writes never overlap), so
// vectors referenced many times cannot make a small file decode into a huge
// artifact.
type decoder struct {
	buf    []byte
	budget int
	where  string // the part being decoded, for messages
}

func (d *decoder) fail(format string, args ...any) {
	panic(corruptError(d.where + ": " + fmt.Sprintf(format, args...)))
}

// count checks a vector length read from the file before anything is
// allocated for it, and charges it to the budget.
func (d *decoder) count(n, elemSize int, what string) int {
	if err := irfbs.CheckCount(d.buf, n, elemSize); err != nil || n*elemSize > d.budget {
		d.fail("%s has %d elements, more than the file can hold", what, n)
	}
	d.budget -= n * elemSize
	return n
}

// table checks that a table and its vtable lie inside the buffer.
func (d *decoder) table(t flatbuffers.Table, what string) {
	if err := irfbs.CheckTable(d.buf, t); err != nil {
		d.fail("%s %v", what, err)
	}
}

// str copies a string out of the buffer.
func (d *decoder) str(b []byte, what string) string {
	if b == nil {
		return ""
	}
	d.count(len(b), 1, what)
	if !utf8.Valid(b) {
		d.fail("%s is not valid UTF-8", what)
	}
	return string(b)
}

// bytes copies a byte vector out of the buffer (nil when empty).
func (d *decoder) bytes(b []byte, what string) []byte {
	if len(b) == 0 {
		return nil
	}
	d.count(len(b), 1, what)
	return append([]byte(nil), b...)
}

func (d *decoder) artifact() *Artifact {
	d.where = "header"
	root := fbs.GetSizePrefixedRootAsArtifact(d.buf, 0)
	d.table(root.Table(), "root")
	if v := root.Format(); v != FormatVersion {
		d.fail("artifact format %d is not supported (this slc reads format %d); recompile the model", v, FormatVersion)
	}
	a := &Artifact{CompilerVersion: d.str(root.CompilerVersion(), "compiler version")}
	d.where = "target"
	var t fbs.Target
	if root.Target(&t) != nil {
		d.table(t.Table(), "target")
		a.Target = Target{
			Kind:     d.str(t.Kind(), "target kind"),
			Triple:   d.str(t.Triple(), "target triple"),
			CPU:      d.str(t.Cpu(), "target cpu"),
			Features: d.str(t.Features(), "target features"),
		}
	}
	d.where = "module"
	a.Module = d.bytes(root.ModuleBytes(), "module")
	d.where = "code"
	a.Code = d.bytes(root.CodeBytes(), "code")
	d.where = "programs"
	if n := d.count(root.ProgramsLength(), 4, "programs"); n > 0 {
		a.Programs = make([]*Program, n)
		var p fbs.Program
		for i := range a.Programs {
			d.where = fmt.Sprintf("program %d", i)
			root.Programs(&p, i)
			a.Programs[i] = d.program(&p)
		}
	}
	return a
}

func (d *decoder) program(fp *fbs.Program) *Program {
	d.table(fp.Table(), "program")
	p := &Program{
		Name:         d.str(fp.Name(), "name"),
		ArenaBytes:   fp.ArenaBytes(),
		ScratchBytes: fp.ScratchBytes(),
	}
	base := d.where
	if n := d.count(fp.SlotsLength(), 4, "slots"); n > 0 {
		p.Slots = make([]Slot, n)
		var s fbs.Slot
		for i := range p.Slots {
			d.where = fmt.Sprintf("%s: slot %d", base, i)
			fp.Slots(&s, i)
			d.table(s.Table(), "slot")
			slot := Slot{
				Name:   d.str(s.Name(), "name"),
				Type:   ir.Type{DType: ir.DType(s.Dtype())},
				Kind:   SlotKind(s.Kind()),
				Offset: s.Offset(),
			}
			if k := d.count(s.ShapeLength(), 8, "shape"); k > 0 {
				slot.Type.Shape = make([]int, k)
				for j := range slot.Type.Shape {
					dim := s.Shape(j)
					if dim < 0 || int64(int(dim)) != dim {
						d.fail("dimension %d is out of range", dim)
					}
					slot.Type.Shape[j] = int(dim)
				}
			}
			p.Slots[i] = slot
		}
	}
	if n := d.count(fp.StepsLength(), 4, "steps"); n > 0 {
		p.Steps = make([]Step, n)
		var s fbs.Step
		for i := range p.Steps {
			d.where = fmt.Sprintf("%s: step %d", base, i)
			fp.Steps(&s, i)
			d.table(s.Table(), "step")
			st := Step{Kernel: d.str(s.Kernel(), "kernel"), Label: d.str(s.Label(), "label"), Grid: s.Grid(), Block: s.Block(), SharedBytes: s.SharedBytes(), ScratchBytes: s.ScratchBytes(),
				Flops: s.Flops(), Bytes: s.Bytes(), TensorCore: s.TensorCore()}
			if k := d.count(s.ArgsLength(), 4, "args"); k > 0 {
				st.Args = make([]int32, k)
				for j := range st.Args {
					st.Args[j] = s.Args(j)
				}
			}
			p.Steps[i] = st
		}
	}
	if n := d.count(fp.OutputsLength(), 4, "outputs"); n > 0 {
		p.Outputs = make([]Output, n)
		var o fbs.Output
		for i := range p.Outputs {
			d.where = fmt.Sprintf("%s: output %d", base, i)
			fp.Outputs(&o, i)
			d.table(o.Table(), "output")
			p.Outputs[i] = Output{Name: d.str(o.Name(), "name"), Slot: o.Slot(), Updates: d.str(o.Updates(), "updates")}
		}
	}
	d.where = base
	return p
}
