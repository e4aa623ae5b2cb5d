package codegen

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// Every step of the tiny LLaMA's programs is labelled by its layer,
// direction and op: each SLTrain layer's forward and its dx, dW, dB and dA
// products, by layer name, and the update of each parameter.
func TestStepLabels(t *testing.T) {
	s := pipeline(t, "llama_tiny.json", 2, 8, 4)
	art, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, SLTrainLowering: "merged"})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]bool{}
	for _, p := range art.Programs {
		for i, st := range p.Steps {
			if st.Label == "" {
				t.Errorf("program %s: step %d (%s) has no label", p.Name, i, st.Kernel)
			}
			labels[p.Name+": "+st.Label] = true
		}
	}
	for _, want := range []string{
		"train_step: layers.1.mlp.up_proj forward LowRankSparseAdd (W = B·A)",
		"train_step: layers.1.mlp.up_proj forward LowRankSparseAdd (sparse)",
		"train_step: layers.1.mlp.up_proj forward LowRankSparseAdd (GEMM)",
		"train_step: layers.1.mlp.up_proj dx",
		"train_step: layers.1.mlp.up_proj dW",
		"train_step: layers.1.mlp.up_proj dB",
		"train_step: layers.1.mlp.up_proj dA",
		"train_step: layers.0.self_attn.q_proj W",
		"train_step: layers.0.self_attn.q_proj backward ScatterAdd",
		"train_step: lm_head dx+dW (chunked with the loss)",
		"train_step: lm_head + loss forward (logits chunk)",
		"train_step: lm_head + loss (softmax, loss, dlogits; chunked)",
		"eval: lm_head + loss forward (logits chunk)",
		"eval: layers.0.self_attn.k_proj forward LowRankSparseAdd (GEMM)",
		"update: layers.0.self_attn.q_proj.lora_A.grad update Fill",
	} {
		if !labels[want] {
			t.Errorf("no step labelled %q", want)
		}
	}
	var update, backward int
	for l := range labels {
		if strings.HasPrefix(l, "update: layers.0.mlp.gate_proj.lora_A update") {
			update++
		}
		if strings.HasPrefix(l, "train_step: layers.0.mlp backward") {
			backward++
		}
	}
	if update == 0 || backward == 0 {
		t.Errorf("%d update labels of layers.0.mlp.gate_proj.lora_A, %d backward labels of layers.0.mlp; labels:\n%s", update, backward, strings.Join(keys(labels), "\n"))
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLabelHelpers(t *testing.T) {
	n := func(name, op string) *ir.Node { return &ir.Node{Name: name, Op: op} }
	if got := commonScope([]*ir.Node{n("model.layers.0.mlp.up_proj", "Mul"), n("model.layers.0.mlp", "Sigmoid"), n("", "Const")}); got != "layers.0.mlp" {
		t.Errorf("commonScope = %q", got)
	}
	if got := opKinds([]*ir.Node{n("", "Const"), n("a", "Mul"), n("a", "Sigmoid"), n("a", "Mul"), n("a", "Add"), n("a", "Sub"), n("a", "Reshape")}); got != "Mul+Sigmoid+Add+…" {
		t.Errorf("opKinds = %q", got)
	}
	for _, c := range []struct {
		kernels []string
		i       int
		want    string
	}{
		{[]string{"slc_lrsa_ab12"}, 0, ""},
		{[]string{"slc_lrsa_ab12_w", "slc_lrsa_ab12_s", "slc_lrsa_ab12_y"}, 1, "(sparse)"},
		{[]string{"slc_x_ab_s", "slc_x_ab_sum"}, 1, "(sum)"},
		{[]string{"slc_x_ab_t", "slc_x_ab_y", "slc_x_ab_zz"}, 2, "zz"},
	} {
		if got := callPart(c.kernels, c.i); got != c.want {
			t.Errorf("callPart(%q, %d) = %q, want %q", c.kernels, c.i, got, c.want)
		}
	}
}
