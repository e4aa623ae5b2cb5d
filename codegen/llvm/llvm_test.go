package llvm

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/native"
)

// buildSaxpy defines
//
//	void saxpy(float* noalias y, const float* noalias x, float a, i64 n)
//
// as a counted loop computing y[i] = a*x[i] + y[i], with contractable
// floating-point ops so the back end may fuse them into FMAs.
func buildSaxpy(t *testing.T, ctx Context, m Module) Function {
	t.Helper()
	f32, i64, ptr := ctx.FloatType(), ctx.Int64Type(), ctx.PointerType(0)
	fn := m.AddFunction("saxpy", FunctionType(ctx.VoidType(), []Type{ptr, ptr, f32, i64}, false))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		must(fn.AddAttribute(ParamIndex(i), "noalias", 0))
		must(fn.AddAttribute(ParamIndex(i), "nocapture", 0))
		must(fn.AddAttribute(ParamIndex(i), "align", 4))
	}
	must(fn.AddAttribute(ParamIndex(1), "readonly", 0))
	must(fn.AddAttribute(FunctionIndex, "nounwind", 0))
	y, x, a, n := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3)
	y.SetName("y")
	x.SetName("x")
	a.SetName("a")
	n.SetName("n")

	entry := fn.AppendBasicBlock("entry")
	loop := fn.AppendBasicBlock("loop")
	exit := fn.AppendBasicBlock("exit")
	b := ctx.NewBuilder()
	defer b.Dispose()
	b.SetFastMath(FastMathAllowContract)

	b.SetInsertPointAtEnd(entry)
	b.CondBr(b.ICmp(IntSGT, n, ConstInt(i64, 0), "nonempty"), loop, exit)

	b.SetInsertPointAtEnd(loop)
	i := b.Phi(i64, "i")
	px := b.InBoundsGEP(f32, x, []Value{i}, "px")
	py := b.InBoundsGEP(f32, y, []Value{i}, "py")
	xv := b.Load(f32, px, "xv")
	xv.SetAlignment(4)
	yv := b.Load(f32, py, "yv")
	yv.SetAlignment(4)
	sum := b.FAdd(b.FMul(a, xv, "ax"), yv, "sum")
	b.Store(sum, py).SetAlignment(4)
	next := b.NSWAdd(i, ConstInt(i64, 1), "next")
	i.AddIncoming([]Value{ConstInt(i64, 0), next}, []BasicBlock{entry, loop})
	b.CondBr(b.ICmp(IntEQ, next, n, "done"), exit, loop)

	b.SetInsertPointAtEnd(exit)
	b.RetVoid()
	return fn
}

// hostMachine returns an -O3 PIC machine for the host, disposed at the end
// of the test.
func hostMachine(t *testing.T) TargetMachine {
	t.Helper()
	tm, err := NewHostTargetMachine(CodeGenAggressive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tm.Dispose)
	return tm
}

// optimizedSaxpy builds saxpy in a new module for tm and runs default<O3>.
func optimizedSaxpy(t *testing.T, tm TargetMachine) (Context, Module) {
	t.Helper()
	ctx := NewContext()
	t.Cleanup(ctx.Dispose)
	m := ctx.NewModule("saxpy")
	t.Cleanup(m.Dispose)
	m.ConfigureFor(tm)
	fn := buildSaxpy(t, ctx, m)
	fn.AddStringAttribute(FunctionIndex, "target-cpu", tm.CPU())
	fn.AddStringAttribute(FunctionIndex, "target-features", tm.Features())
	if err := m.Verify(); err != nil {
		t.Fatalf("verify: %v\n%s", err, m)
	}
	if err := m.RunPasses("default<O3>", tm, DefaultPassOptions()); err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(); err != nil {
		t.Fatalf("verify after O3: %v", err)
	}
	return ctx, m
}

func TestSaxpyVectorizes(t *testing.T) {
	tm := hostMachine(t)
	_, m := optimizedSaxpy(t, tm)
	ir := m.String()
	if !regexp.MustCompile(`<(4|8|16) x float>`).MatchString(ir) {
		t.Fatalf("optimized IR has no float vectors:\n%s", ir)
	}
	asm, err := tm.Emit(m, AssemblyFile)
	if err != nil {
		t.Fatal(err)
	}
	feats := tm.Features()
	if !HasFeature(feats, "avx2") || !HasFeature(feats, "fma") {
		t.Logf("host %s lacks AVX2+FMA; skipping the ymm/vfmadd check", tm.CPU())
		return
	}
	s := string(asm)
	if !strings.Contains(s, "ymm") && !strings.Contains(s, "zmm") {
		t.Errorf("assembly for %s uses no ymm/zmm registers:\n%s", tm.CPU(), s)
	}
	if !strings.Contains(s, "vfmadd") {
		t.Errorf("assembly for %s has no vfmadd:\n%s", tm.CPU(), s)
	}
}

func TestSaxpyRunsFromSharedObject(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no system C compiler to link a shared object")
	}
	tm := hostMachine(t)
	_, m := optimizedSaxpy(t, tm)
	dir := t.TempDir()
	obj, so := filepath.Join(dir, "saxpy.o"), filepath.Join(dir, "saxpy.so")
	code, err := tm.Emit(m, ObjectFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, code, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-shared", "-o", so, obj).CombinedOutput(); err != nil {
		t.Fatalf("cc -shared: %v\n%s", err, out)
	}
	lib, err := native.Open(so)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	fn, err := lib.Sym("saxpy")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1003 // not a multiple of any vector width: exercises the tail
	x, y, want := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range x {
		x[i] = float32(i%17) - 8.25
		y[i] = float32(i%5) * 0.5
	}
	const a = 1.75
	for i := range want {
		want[i] = a*x[i] + y[i]
	}
	native.CallSaxpy(fn, y, x, a)
	for i := range y {
		if d := math.Abs(float64(y[i] - want[i])); d > 1e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("y[%d] = %v, want %v", i, y[i], want[i])
		}
	}
}

func TestEmitToFile(t *testing.T) {
	tm := hostMachine(t)
	_, m := optimizedSaxpy(t, tm)
	path := filepath.Join(t.TempDir(), "saxpy.o")
	if err := tm.EmitToFile(m, path, ObjectFile); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 4 || string(b[:4]) != "\x7fELF" {
		t.Fatalf("%s is not an ELF object", path)
	}
}

func TestNVPTXKernel(t *testing.T) {
	const triple = "nvptx64-nvidia-cuda"
	tm, err := NewTargetMachine(triple, MachineOptions{CPU: "sm_90", OptLevel: CodeGenAggressive})
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Dispose()
	ctx := NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("kern")
	defer m.Dispose()
	m.ConfigureFor(tm)

	f32, i64, global := ctx.FloatType(), ctx.Int64Type(), ctx.PointerType(1)
	fn := m.AddFunction("add_one", FunctionType(ctx.VoidType(), []Type{global, global}, false))
	fn.SetCallConv(PTXKernelCallConv)
	tid, err := m.Intrinsic("llvm.nvvm.read.ptx.sreg.tid.x")
	if err != nil {
		t.Fatal(err)
	}
	b := ctx.NewBuilder()
	defer b.Dispose()
	b.SetInsertPointAtEnd(fn.AppendBasicBlock("entry"))
	i := b.ZExt(b.Call(tid, nil, "tid"), i64, "i")
	in := b.Load(f32, b.InBoundsGEP(f32, fn.Param(1), []Value{i}, ""), "v")
	b.Store(b.FAdd(in, ConstFloat(f32, 1), "w"), b.InBoundsGEP(f32, fn.Param(0), []Value{i}, ""))
	b.RetVoid()
	if err := m.Verify(); err != nil {
		t.Fatalf("verify: %v\n%s", err, m)
	}
	if err := m.RunPasses("default<O3>", tm, DefaultPassOptions()); err != nil {
		t.Fatal(err)
	}
	ptx, err := tm.Emit(m, AssemblyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(ptx)
	for _, want := range []string{".target sm_90", ".entry add_one", "%tid.x", "add.rn.f32"} {
		if !strings.Contains(s, want) {
			t.Errorf("PTX lacks %q:\n%s", want, s)
		}
	}
	if testing.Verbose() {
		t.Log(s)
	}
}

func TestVerifyReportsBrokenModule(t *testing.T) {
	ctx := NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("broken")
	defer m.Dispose()
	fn := m.AddFunction("f", FunctionType(ctx.VoidType(), nil, false))
	fn.AppendBasicBlock("entry") // no terminator
	err := m.Verify()
	if err == nil {
		t.Fatal("Verify accepted a block without a terminator")
	}
	if !strings.Contains(err.Error(), "terminator") {
		t.Errorf("error %q does not carry LLVM's message", err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := TargetFromTriple("nosuch-unknown-triple"); err == nil {
		t.Error("TargetFromTriple accepted an unknown triple")
	} else if !strings.Contains(err.Error(), "nosuch-unknown-triple") {
		t.Errorf("error %q does not name the triple", err)
	}
	if _, err := NewTargetMachine("nosuch-unknown-triple", MachineOptions{}); err == nil {
		t.Error("NewTargetMachine accepted an unknown triple")
	}

	ctx := NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("errs")
	defer m.Dispose()
	f32 := ctx.FloatType()
	fn := m.AddFunction("f", FunctionType(ctx.VoidType(), []Type{f32}, false))
	if err := fn.AddAttribute(ParamIndex(0), "no-such-attribute", 0); err == nil {
		t.Error("AddAttribute accepted an unknown name")
	}
	for _, c := range []struct {
		name string
		tys  []Type
	}{
		{"llvm.no.such.intrinsic", nil},
		{"llvm.fma", nil},                              // overloaded, no types
		{"llvm.fma.f32", []Type{f32}},                  // mangled name
		{"llvm.nvvm.read.ptx.sreg.tid.x", []Type{f32}}, // not overloaded
		{"notllvm.sqrt", []Type{f32}},                  // not an intrinsic
	} {
		if _, err := m.Intrinsic(c.name, c.tys...); err == nil {
			t.Errorf("Intrinsic(%q, %v) succeeded", c.name, c.tys)
		}
	}
	if err := m.RunPasses("no-such-pass", TargetMachine{}, PassOptions{}); err == nil {
		t.Error("RunPasses accepted an unknown pipeline")
	}
}

func TestIntrinsics(t *testing.T) {
	ctx := NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("intr")
	defer m.Dispose()
	f32 := ctx.FloatType()
	v8 := VectorType(f32, 8)
	fn := m.AddFunction("k", FunctionType(f32, []Type{v8, f32}, false))
	b := ctx.NewBuilder()
	defer b.Dispose()
	b.SetFastMath(FastMathAll)
	b.SetInsertPointAtEnd(fn.AppendBasicBlock("entry"))
	v, s := fn.Param(0), fn.Param(1)

	get := func(name string, tys ...Type) Function {
		t.Helper()
		f, err := m.Intrinsic(name, tys...)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	v = b.Call(get("llvm.fma", v8), []Value{v, v, b.VectorSplat(8, s, "splat")}, "fma")
	v = b.Call(get("llvm.maxnum", v8), []Value{v, ConstSplat(8, ConstFloat(f32, 0))}, "relu")
	v = b.Call(get("llvm.minnum", v8), []Value{v, ConstSplat(8, ConstFloat(f32, 6))}, "relu6")
	v = b.Call(get("llvm.exp", v8), []Value{v}, "exp")
	r := b.Call(get("llvm.vector.reduce.fadd", v8), []Value{ConstFloat(f32, 0), v}, "sum")
	r = b.Call(get("llvm.sqrt", f32), []Value{r}, "sqrt")
	r = b.Call(get("llvm.log", f32), []Value{r}, "log")
	b.Ret(r)
	if err := m.Verify(); err != nil {
		t.Fatalf("verify: %v\n%s", err, m)
	}
	if got := r.FastMathFlags(); got != FastMathAll {
		t.Errorf("call fast-math flags = %#x, want %#x", got, FastMathAll)
	}
	ir := m.String()
	for _, want := range []string{
		"declare <8 x float> @llvm.fma.v8f32(",
		"@llvm.maxnum.v8f32(", "@llvm.minnum.v8f32(", "@llvm.exp.v8f32(",
		"declare float @llvm.vector.reduce.fadd.v8f32(float, <8 x float>)",
		"@llvm.sqrt.f32(", "@llvm.log.f32(",
		"call fast float @llvm.log.f32",
		"shufflevector",
	} {
		if !strings.Contains(ir, want) {
			t.Errorf("IR lacks %q:\n%s", want, ir)
		}
	}
	// Asking again returns the same declaration.
	if a, b := get("llvm.fma", v8), get("llvm.fma", v8); a != b {
		t.Error("Intrinsic returned two declarations for llvm.fma.v8f32")
	}
}

func TestTypes(t *testing.T) {
	ctx := NewContext()
	defer ctx.Dispose()
	i32, f32 := ctx.Int32Type(), ctx.FloatType()
	for _, c := range []struct {
		ty   Type
		want string
		kind TypeKind
	}{
		{ctx.VoidType(), "void", VoidTypeKind},
		{ctx.Int1Type(), "i1", IntegerTypeKind},
		{ctx.Int8Type(), "i8", IntegerTypeKind},
		{ctx.Int16Type(), "i16", IntegerTypeKind},
		{i32, "i32", IntegerTypeKind},
		{ctx.Int64Type(), "i64", IntegerTypeKind},
		{ctx.IntType(128), "i128", IntegerTypeKind},
		{ctx.HalfType(), "half", HalfTypeKind},
		{ctx.BFloatType(), "bfloat", BFloatTypeKind},
		{f32, "float", FloatTypeKind},
		{ctx.DoubleType(), "double", DoubleTypeKind},
		{ctx.PointerType(0), "ptr", PointerTypeKind},
		{ctx.PointerType(3), "ptr addrspace(3)", PointerTypeKind},
		{VectorType(f32, 16), "<16 x float>", VectorTypeKind},
		{ArrayType(i32, 4), "[4 x i32]", ArrayTypeKind},
		{ctx.StructType([]Type{i32, f32}, false), "{ i32, float }", StructTypeKind},
		{ctx.StructType([]Type{i32, f32}, true), "<{ i32, float }>", StructTypeKind},
		{FunctionType(f32, []Type{ctx.PointerType(0), i32}, false), "float (ptr, i32)", FunctionTypeKind},
	} {
		if got := c.ty.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
		if got := c.ty.Kind(); got != c.kind {
			t.Errorf("%s: Kind() = %d, want %d", c.want, got, c.kind)
		}
	}
	if w := ctx.Int16Type().IntWidth(); w != 16 {
		t.Errorf("i16 width = %d", w)
	}
	v := VectorType(ctx.HalfType(), 8)
	if v.VectorSize() != 8 || v.ElementType() != ctx.HalfType() || !v.ElementType().IsFloat() {
		t.Errorf("vector queries wrong for %s", v)
	}
	if a := ArrayType(i32, 7); a.ArrayLength() != 7 || a.ElementType() != i32 {
		t.Errorf("array queries wrong for %s", a)
	}
	if p := ctx.PointerType(1); p.PointerAddressSpace() != 1 {
		t.Errorf("address space of %s = %d", p, p.PointerAddressSpace())
	}
	if fs := ctx.StructType([]Type{i32, f32}, false).StructFields(); len(fs) != 2 || fs[1] != f32 {
		t.Errorf("struct fields = %v", fs)
	}
	ft := FunctionType(f32, []Type{i32, f32}, false)
	if ft.ReturnType() != f32 || len(ft.ParamTypes()) != 2 || ft.ParamTypes()[0] != i32 {
		t.Errorf("function type queries wrong for %s", ft)
	}
}

func TestConstantsAndCasts(t *testing.T) {
	ctx := NewContext()
	defer ctx.Dispose()
	i32, i64, f32, f64 := ctx.Int32Type(), ctx.Int64Type(), ctx.FloatType(), ctx.DoubleType()
	ptr := ctx.PointerType(0)
	for _, c := range []struct {
		v    Value
		want string
	}{
		{ConstInt(i32, -3), "i32 -3"},
		{ConstFloat(f64, 0.5), "double 5.000000e-01"},
		{ConstSplat(4, ConstFloat(f32, 2)), "<4 x float> <float 2.000000e+00, float 2.000000e+00, float 2.000000e+00, float 2.000000e+00>"},
		{ConstVector([]Value{ConstInt(i32, 0), ConstInt(i32, 1)}), "<2 x i32> <i32 0, i32 1>"},
		{Poison(f32), "float poison"},
		{ConstNull(VectorType(f32, 2)), "<2 x float> zeroinitializer"},
	} {
		if got := c.v.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
		if !c.v.IsConstant() {
			t.Errorf("%s is not constant", c.want)
		}
	}

	m := ctx.NewModule("casts")
	defer m.Dispose()
	fn := m.AddFunction("casts", FunctionType(f64, []Type{i32, f32, ptr}, false))
	fn.SetLinkage(InternalLinkage)
	if fn.Linkage() != InternalLinkage {
		t.Error("linkage not set")
	}
	b := ctx.NewBuilder()
	defer b.Dispose()
	b.SetInsertPointAtEnd(fn.AppendBasicBlock("entry"))
	n, x, p := fn.Param(0), fn.Param(1), fn.Param(2)
	n.SetName("n")
	if n.Name() != "n" {
		t.Errorf("Name() = %q", n.Name())
	}
	slot := b.Alloca(f32, "slot")
	slot.SetAlignment(16)
	if slot.Alignment() != 16 {
		t.Errorf("alignment = %d", slot.Alignment())
	}
	b.Store(x, slot)
	x = b.Load(f32, slot, "x")
	wide := b.SExt(n, i64, "wide")
	back := b.Trunc(b.ZExt(n, i64, "z"), i32, "t")
	fi := b.SIToFP(back, f32, "fi")
	fu := b.UIToFP(wide, f32, "fu")
	h := b.FPTrunc(b.FAdd(fi, fu, ""), ctx.HalfType(), "h")
	bits := b.BitCast(h, ctx.Int16Type(), "bits")
	hx := b.FPExt(b.BitCast(bits, ctx.HalfType(), ""), f32, "hx")
	q := b.FDiv(b.FSub(hx, b.FNeg(x, ""), ""), b.FRem(x, ConstFloat(f32, 3), ""), "q")
	addr := b.IntToPtr(b.PtrToInt(p, i64, "pi"), ptr, "pp")
	el := b.Load(f32, b.GEP(f32, addr, []Value{ConstInt(i64, 2)}, "e"), "el")
	vec := b.InsertElement(Poison(VectorType(f32, 2)), el, ConstInt(i32, 1), "vec")
	el = b.ExtractElement(vec, ConstInt(i32, 1), "el1")
	back2 := b.FPToSI(el, i32, "si")
	cmp := b.FCmp(FloatOLT, q, el, "lt")
	sel := b.Select(cmp, q, b.SIToFP(b.Mul(back2, b.NSWSub(n, ConstInt(i32, 1), ""), ""), f32, ""), "sel")
	b.Ret(b.FPExt(sel, f64, "r"))
	if err := m.Verify(); err != nil {
		t.Fatalf("verify: %v\n%s", err, m)
	}
	ir := m.String()
	for _, want := range []string{"define internal double @casts(", "alloca float, align 16", "sub nsw i32", "fcmp olt float", "bitcast half"} {
		if !strings.Contains(ir, want) {
			t.Errorf("IR lacks %q:\n%s", want, ir)
		}
	}

	// Arithmetic on constants folds; fast-math flags then have nowhere to go.
	b.SetFastMath(FastMathAll)
	if folded := b.FAdd(ConstFloat(f32, 1), ConstFloat(f32, 2), ""); folded.SetFastMathFlags(FastMathAll) || folded.IsInstruction() {
		t.Errorf("folded constant %s took fast-math flags", folded)
	}
}
