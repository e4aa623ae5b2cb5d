package artifact

import (
	"fmt"
	"math"
	"strconv"
)

// Alignment is the byte alignment of every buffer the runtime hands a kernel:
// arena offsets are multiples of it, and state, data and scalar buffers are
// allocated on it.
const Alignment = 64

// maxTensorBytes bounds one slot's size so that sizes and offsets computed from
// a (possibly hostile) artifact never overflow int64.
const maxTensorBytes = 1 << 50

// Target kinds.
const (
	TargetCPU  = "cpu"
	TargetCUDA = "cuda"
)

func (k SlotKind) String() string {
	switch k {
	case SlotState:
		return "state"
	case SlotData:
		return "data"
	case SlotScalar:
		return "scalar"
	case SlotArena:
		return "arena"
	}
	return "slotkind(" + strconv.Itoa(int(k)) + ")"
}

// Validate checks that the artifact is self-consistent, so that a runtime
// executing it never indexes out of a slot list or writes past a buffer it
// allocated from the artifact's own sizes: known target kind, dtypes and slot
// kinds; non-negative sizes; arena slots inside the arena at aligned offsets;
// one-element scalar slots; step arguments and outputs that name existing
// slots; state, data and scalar names unique within a program; a state tensor
// with one type across all programs; and every Updates naming a state tensor of
// the output's type. Errors name the program and the slot, step or output.
func (a *Artifact) Validate() error {
	if a == nil {
		return fmt.Errorf("nil artifact")
	}
	switch a.Target.Kind {
	case TargetCPU, TargetCUDA:
	default:
		return fmt.Errorf("unknown target kind %q (want %q or %q)", a.Target.Kind, TargetCPU, TargetCUDA)
	}
	states := map[string]Slot{} // first slot of each state tensor
	stateOf := map[string]string{}
	names := map[string]bool{}
	for pi, p := range a.Programs {
		if p == nil {
			return fmt.Errorf("program %d is nil", pi)
		}
		where := fmt.Sprintf("program %d (%q)", pi, p.Name)
		if p.Name == "" {
			return fmt.Errorf("%s: empty name", where)
		}
		if names[p.Name] {
			return fmt.Errorf("%s: two programs have this name", where)
		}
		names[p.Name] = true
		if p.ArenaBytes < 0 || p.ArenaBytes > maxTensorBytes {
			return fmt.Errorf("%s: arena size %d is out of range", where, p.ArenaBytes)
		}
		if p.ScratchBytes < 0 || p.ScratchBytes > maxTensorBytes {
			return fmt.Errorf("%s: scratch size %d is out of range", where, p.ScratchBytes)
		}
		bound := map[string]bool{}
		for si, s := range p.Slots {
			if err := s.check(p.ArenaBytes); err != nil {
				return fmt.Errorf("%s: slot %d (%q): %w", where, si, s.Name, err)
			}
			if s.Kind == SlotArena {
				continue
			}
			if bound[s.Name] {
				return fmt.Errorf("%s: slot %d: %s %q: another state, data or scalar slot has this name", where, si, s.Kind, s.Name)
			}
			bound[s.Name] = true
			if s.Kind != SlotState {
				continue
			}
			if prev, ok := states[s.Name]; ok && !prev.Type.Equal(s.Type) {
				return fmt.Errorf("%s: slot %d: state %q is %v here but %v in program %q", where, si, s.Name, s.Type, prev.Type, stateOf[s.Name])
			} else if !ok {
				states[s.Name], stateOf[s.Name] = s, p.Name
			}
		}
		for ti, st := range p.Steps {
			if st.Kernel == "" {
				return fmt.Errorf("%s: step %d: empty kernel name", where, ti)
			}
			if err := st.checkLaunch(); err != nil {
				return fmt.Errorf("%s: step %d (%s): %w", where, ti, st.Kernel, err)
			}
			for ai, arg := range st.Args {
				if arg < 0 || int(arg) >= len(p.Slots) {
					return fmt.Errorf("%s: step %d (%s): argument %d names slot %d of %d", where, ti, st.Kernel, ai, arg, len(p.Slots))
				}
			}
		}
		outs := map[string]bool{}
		for oi, o := range p.Outputs {
			if o.Name == "" {
				return fmt.Errorf("%s: output %d: empty name", where, oi)
			}
			if outs[o.Name] {
				return fmt.Errorf("%s: output %d: %q appears twice", where, oi, o.Name)
			}
			outs[o.Name] = true
			if o.Slot < 0 || int(o.Slot) >= len(p.Slots) {
				return fmt.Errorf("%s: output %d (%q) names slot %d of %d", where, oi, o.Name, o.Slot, len(p.Slots))
			}
		}
	}
	// Updates may name a state tensor another program declares, so they are
	// checked once every state is known.
	for _, p := range a.Programs {
		updated := map[string]bool{}
		for oi, o := range p.Outputs {
			if o.Updates == "" {
				continue
			}
			where := fmt.Sprintf("program %q: output %d (%q)", p.Name, oi, o.Name)
			st, ok := states[o.Updates]
			if !ok {
				return fmt.Errorf("%s updates %q, which is no state slot of any program", where, o.Updates)
			}
			if t := p.Slots[o.Slot].Type; !t.Equal(st.Type) {
				return fmt.Errorf("%s: a %v value cannot update state %q of type %v", where, t, o.Updates, st.Type)
			}
			if updated[o.Updates] {
				return fmt.Errorf("%s: state %q is updated twice", where, o.Updates)
			}
			updated[o.Updates] = true
		}
	}
	return nil
}

// check validates one slot on its own.
func (s Slot) check(arena int64) error {
	if s.Name == "" && s.Kind != SlotArena {
		return fmt.Errorf("empty name")
	}
	if s.Type.DType.Size() == 0 {
		return fmt.Errorf("unknown dtype %v", s.Type.DType)
	}
	n := int64(1)
	for _, d := range s.Type.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in %v", s.Type)
		}
		if d > 0 && n > maxTensorBytes/int64(d) {
			return fmt.Errorf("type %v is too large", s.Type)
		}
		n *= int64(d)
	}
	if n > maxTensorBytes/int64(s.Type.DType.Size()) {
		return fmt.Errorf("type %v is too large", s.Type)
	}
	switch s.Kind {
	case SlotState, SlotData:
	case SlotScalar:
		if n != 1 {
			return fmt.Errorf("scalar slot has type %v, not one element", s.Type)
		}
	case SlotArena:
		if s.Offset < 0 || s.Offset%Alignment != 0 {
			return fmt.Errorf("arena offset %d is not a non-negative multiple of %d", s.Offset, Alignment)
		}
		if s.Offset > math.MaxInt64-s.Type.Bytes() || s.Offset+s.Type.Bytes() > arena {
			return fmt.Errorf("%v at arena offset %d ends past the %d-byte arena", s.Type, s.Offset, arena)
		}
	default:
		return fmt.Errorf("unknown slot kind %v", s.Kind)
	}
	return nil
}

// checkLaunch checks a step's launch geometry: none at all (Grid and Block
// 0, SharedBytes and ScratchBytes too), or a launch CUDA accepts whose
// scratch areas fit MaxScratchBytes.
func (st Step) checkLaunch() error {
	if st.Flops < 0 || st.Bytes < 0 {
		return fmt.Errorf("work of %d flops and %d bytes", st.Flops, st.Bytes)
	}
	if st.Grid == 0 && st.Block == 0 && st.SharedBytes == 0 && st.ScratchBytes == 0 {
		return nil
	}
	switch {
	case st.Grid < 1:
		return fmt.Errorf("launch of %d blocks", st.Grid)
	case st.Block < 1 || st.Block > MaxBlock:
		return fmt.Errorf("launch of %d threads per block (want 1 to %d)", st.Block, MaxBlock)
	case st.SharedBytes < 0 || st.SharedBytes > MaxSharedBytes:
		return fmt.Errorf("dynamic shared memory %d bytes is out of range", st.SharedBytes)
	case st.ScratchBytes < 0 || st.ScratchBytes > MaxScratchBytes || st.ScratchBytes*int64(st.Grid)*int64(st.Block) > MaxScratchBytes:
		return fmt.Errorf("scratch of %d bytes per thread for %d×%d threads is out of range", st.ScratchBytes, st.Grid, st.Block)
	}
	return nil
}
