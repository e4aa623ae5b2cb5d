package llvm_test

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Build float @axpb(float %a, float %x, float %b) = fma(a, x, b) with the
// llvm.fma intrinsic and print the module.
func Example() {
	ctx := llvm.NewContext()
	defer ctx.Dispose()
	m := ctx.NewModule("example")
	defer m.Dispose()

	f32 := ctx.FloatType()
	fn := m.AddFunction("axpb", llvm.FunctionType(f32, []llvm.Type{f32, f32, f32}, false))
	if err := fn.AddAttribute(llvm.FunctionIndex, "nounwind", 0); err != nil {
		panic(err)
	}
	for i, name := range []string{"a", "x", "b"} {
		fn.Param(i).SetName(name)
	}
	fma, err := m.Intrinsic("llvm.fma", f32)
	if err != nil {
		panic(err)
	}
	b := ctx.NewBuilder()
	defer b.Dispose()
	b.SetInsertPointAtEnd(fn.AppendBasicBlock("entry"))
	b.Ret(b.Call(fma, fn.Params(), "r"))
	if err := m.Verify(); err != nil {
		panic(err)
	}
	fmt.Print(m)
	// Output:
	// ; ModuleID = 'example'
	// source_filename = "example"
	//
	// ; Function Attrs: nounwind
	// define float @axpb(float %a, float %x, float %b) #0 {
	// entry:
	//   %r = call float @llvm.fma.f32(float %a, float %x, float %b)
	//   ret float %r
	// }
	//
	// ; Function Attrs: nocallback nofree nosync nounwind speculatable willreturn memory(none)
	// declare float @llvm.fma.f32(float, float, float) #1
	//
	// attributes #0 = { nounwind }
	// attributes #1 = { nocallback nofree nosync nounwind speculatable willreturn memory(none) }
}
