package artifact

import (
	"testing"

	"gitee.com/gidean/conv-linn/target"
)

// TestTargetRecord: a target recorded and parsed back is the same target
// (a CUDA one up to its kernel kind, which is not recorded), and the kinds
// are the devices' names.
func TestTargetRecord(t *testing.T) {
	if TargetCPU != target.CPU.String() || TargetCUDA != target.CUDA.String() {
		t.Fatalf("kinds %q, %q; devices %v, %v", TargetCPU, TargetCUDA, target.CPU, target.CUDA)
	}
	for _, c := range []struct {
		t    target.Target
		want Target
	}{
		{target.NewCPU("znver4", "+avx2,+fma"), Target{Kind: "cpu", Triple: "x86_64-pc-linux-gnu", CPU: "znver4", Features: "+avx2,+fma"}},
		{target.NewCUDA("sm_80", target.Portable), Target{Kind: "cuda", Triple: target.CUDATriple, CPU: "sm_80", Features: "+ptx70"}},
		{target.NewCUDA("", ""), Target{Kind: "cuda", Triple: target.CUDATriple, CPU: "sm_90", Features: "+ptx78"}},
	} {
		triple := c.want.Triple
		rec := RecordTarget(c.t, triple)
		if rec != c.want {
			t.Errorf("RecordTarget(%v) = %+v, want %+v", c.t, rec, c.want)
		}
		back, err := rec.Parse()
		if err != nil {
			t.Fatal(err)
		}
		if !back.Equal(c.t) {
			t.Errorf("%v recorded and parsed is %v", c.t, back)
		}
	}
	if _, err := (Target{Kind: "tpu"}).Parse(); err == nil {
		t.Error("kind tpu parsed")
	}
}
