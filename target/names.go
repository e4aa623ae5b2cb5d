package target

import (
	"slices"
	"strings"
)

// DefaultSM is the default GPU (--gpu): sm_90 (H100/H200).
const DefaultSM = "sm_90"

// CUDATriple is the LLVM triple of CUDA targets.
const CUDATriple = "nvptx64-nvidia-cuda"

// gpus are the SMs a CUDA target may name, with the PTX ISA version each is
// emitted for: the lowest that LLVM 19 supports for it, so that current
// drivers load it.
var gpus = map[string]string{"sm_80": "+ptx70", "sm_86": "+ptx71", "sm_89": "+ptx78", "sm_90": "+ptx78"}

// GPUNames lists the SMs a CUDA target may name, sorted.
func GPUNames() []string {
	names := make([]string, 0, len(gpus))
	for n := range gpus {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// PTX returns the LLVM feature that selects the PTX ISA version of a CUDA
// target's GPU ("+ptx78"), "" for an unknown GPU.
func (t Target) PTX() string { return gpus[t.GPU()] }

// x86CPUs are the CPU names LLVM 19 accepts for 64-bit x86 code (from
// `llc -mtriple=x86_64 -mcpu=help`, minus the 32-bit-only processors).
// LLVM aborts the process on any other name, so Check refuses them first.
var x86CPUs = strings.Fields(`
alderlake amdfam10 arrowlake arrowlake-s arrowlake_s athlon-fx athlon64 athlon64-sse3 atom
atom_sse4_2 atom_sse4_2_movbe barcelona bdver1 bdver2 bdver3 bdver4 bonnell broadwell btver1
btver2 cannonlake cascadelake clearwaterforest cooperlake core-avx-i core-avx2 core2
core_2_duo_sse4_1 core_2_duo_ssse3 core_2nd_gen_avx core_3rd_gen_avx core_4th_gen_avx
core_4th_gen_avx_tsx core_5th_gen_avx core_5th_gen_avx_tsx core_aes_pclmulqdq core_i7_sse4_2
corei7 corei7-avx emeraldrapids generic goldmont goldmont-plus goldmont_plus gracemont
grandridge graniterapids graniterapids-d graniterapids_d haswell icelake-client icelake-server
icelake_client icelake_server ivybridge k8 k8-sse3 knl knm lunarlake meteorlake mic_avx512
nehalem nocona opteron opteron-sse3 pantherlake penryn raptorlake rocketlake sandybridge
sapphirerapids sierraforest silvermont skx skylake skylake-avx512 skylake_avx512 slm tigerlake
tremont westmere x86-64 x86-64-v2 x86-64-v3 x86-64-v4 znver1 znver2 znver3 znver4 znver5`)

// X86CPUs returns the CPU names a CPU target may name (--cpu).
func X86CPUs() []string { return slices.Clone(x86CPUs) }
