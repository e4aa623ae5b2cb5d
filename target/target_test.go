package target

import (
	"strings"
	"testing"
)

// flags are the command line's defaults with the given changes.
func flags(f func(*Flags)) Flags {
	fl := Flags{Device: "cpu", GPU: DefaultSM, GPUKernels: "portable"}
	if f != nil {
		f(&fl)
	}
	return fl
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		f    Flags
		want Target
	}{
		{flags(nil), Host()},
		{flags(func(f *Flags) { f.Device = "" }), Host()},
		{flags(func(f *Flags) { f.CPU = "znver4" }), NewCPU("znver4", "")},
		{flags(func(f *Flags) { f.CPU, f.Features = "x86-64-v3", "+avx512f,-fma" }), NewCPU("x86-64-v3", "+avx512f,-fma")},
		{flags(func(f *Flags) { f.Device = "CUDA" }), NewCUDA("sm_90", Portable)},
		{flags(func(f *Flags) { f.Device, f.GPU, f.GPUKernels = "cuda", "sm_80", "TensorCore" }), NewCUDA("sm_80", TensorCore)},
	} {
		got, err := Parse(c.f)
		if err != nil {
			t.Fatalf("%+v: %v", c.f, err)
		}
		if got != c.want || !got.Equal(c.want) {
			t.Errorf("Parse(%+v) = %v, want %v", c.f, got, c.want)
		}
		if err := got.Check(); err != nil {
			t.Errorf("%v: %v", got, err)
		}
	}
}

// TestParseErrors: every bad flag is one line naming the flag and value.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		f    Flags
		want string
	}{
		{flags(func(f *Flags) { f.CPU = "pentium" }), `flag --cpu: "pentium" is not an x86-64 CPU`},
		{flags(func(f *Flags) { f.Features = "avx2" }), `flag --features: bad CPU feature "avx2"`},
		{flags(func(f *Flags) { f.Features = "-sse2" }), `flag --features: CPU feature sse2 cannot be disabled`},
		{flags(func(f *Flags) { f.GPU = "sm_70" }), `flag --gpu: "sm_70" is not one of sm_80, sm_86, sm_89, sm_90`},
		{flags(func(f *Flags) { f.GPUKernels = "simt" }), `flag --gpu-kernels: "simt" is not portable or tensorcore`},
		{flags(func(f *Flags) { f.Device = "tpu" }), `flag --device: "tpu" is not cpu or cuda`},
		{flags(func(f *Flags) { f.Device, f.CPU = "cuda", "znver4" }), `flag --cpu: names an x86-64 CPU; --device cuda takes --gpu`},
		{flags(func(f *Flags) { f.Device, f.Features = "cuda", "+avx2" }), `flag --features: names x86-64 features`},
	} {
		_, err := Parse(c.f)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%+v) = %v, want %q…", c.f, err, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		t    Target
		want string
	}{
		{NewCPU("no-such-cpu", ""), "unknown x86-64 CPU"},
		{NewCPU("i686", ""), "unknown x86-64 CPU"},
		{NewCPU("x86-64", "avx2"), "bad CPU feature"},
		{NewCPU("", "+avx,-sse2"), "cannot be disabled"},
		{Target{CPU: "znver4", SM: "sm_90"}, "do not apply to the cpu device"},
		{Target{Device: CUDA, CPU: "znver4"}, "do not apply to the cuda device"},
		{NewCUDA("sm_75", ""), `unknown GPU "sm_75"`},
		{NewCUDA("", "fast"), `GPU kernels "fast"`},
		{Target{Device: 7}, "unknown device"},
	} {
		if err := c.t.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v.Check() = %v, want …%s…", c.t, err, c.want)
		}
	}
	for _, ok := range []Target{Host(), NewCPU("znver4", "+avx2"), NewCUDA("", ""), NewCUDA("sm_86", SIMT), NewCUDA("sm_89", TensorCoreEmulated)} {
		if err := ok.Check(); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

func TestStringAndEqual(t *testing.T) {
	for _, c := range []struct {
		t    Target
		want string
	}{
		{Host(), "cpu (this machine's)"},
		{NewCPU("znver4", ""), "cpu znver4"},
		{NewCPU("x86-64-v3", "+avx512f"), "cpu x86-64-v3 +avx512f"},
		{NewCUDA("", ""), "cuda sm_90 portable"},
		{NewCUDA("sm_80", TensorCore), "cuda sm_80 tensorcore"},
	} {
		if s := c.t.String(); s != c.want {
			t.Errorf("String() = %q, want %q", s, c.want)
		}
	}
	if !NewCUDA("", "").Equal(NewCUDA(DefaultSM, Portable)) {
		t.Error("the defaults differ from the values they stand for")
	}
	for _, pair := range [][2]Target{
		{Host(), NewCUDA("", "")},
		{NewCPU("znver4", ""), NewCPU("znver3", "")},
		{NewCPU("", "+avx2"), Host()},
		{NewCUDA("sm_80", ""), NewCUDA("sm_90", "")},
		{NewCUDA("", TensorCore), NewCUDA("", "")},
	} {
		if pair[0].Equal(pair[1]) || pair[0] == pair[1] {
			t.Errorf("%v equals %v", pair[0], pair[1])
		}
	}
	if NewCUDA("", "").PTX() != "+ptx78" || NewCUDA("sm_80", "").PTX() != "+ptx70" {
		t.Error("PTX ISA of the GPUs")
	}
}
