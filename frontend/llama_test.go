package frontend

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

const configDir = "../testdata/configs"

func readConfig(t testing.TB, name string) *LlamaConfig {
	t.Helper()
	c, err := ReadLlamaConfig(filepath.Join(configDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The parameter counts of the bundled configs, worked out by hand from
// V·d·2 + L·(4d² + 3·d·ff + 2d) + d with V = 32000 (tiny: 32):
//
//	9m   d 128,  ff 352,   L 4:  8,192,000 + 4·200,960        + 128  =     8,995,968
//	20m  d 256,  ff 688,   L 4:  16,384,000 + 4·791,040       + 256  =    19,548,416
//	35m  d 384,  ff 1024,  L 6:  24,576,000 + 6·1,770,240     + 384  =    35,197,824
//	60m  d 512,  ff 1376,  L 8:  32,768,000 + 8·3,163,136     + 512  =    58,073,600 (DESIGN.md)
//	130m d 768,  ff 2048,  L 12: 49,152,000 + 12·7,079,424    + 768  =   134,105,856
//	350m d 1024, ff 2736,  L 24: 65,536,000 + 24·12,601,344   + 1024 =   367,969,280
//	1b   d 2048, ff 5461,  L 24: 131,072,000 + 24·50,333,696  + 2048 = 1,339,082,752
//	7b   d 4096, ff 11008, L 32: 262,144,000 + 32·202,383,360 + 4096 = 6,738,415,616 (LLaMA-7B)
//	tiny d 16,   ff 24,    L 2:  1,024 + 2·2,208              + 16   =         5,456
var paramCounts = []struct {
	file   string
	params int64
}{
	{"llama_9m.json", 8_995_968},
	{"llama_20m.json", 19_548_416},
	{"llama_35m.json", 35_197_824},
	{"llama_60m.json", 58_073_600},
	{"llama_130m.json", 134_105_856},
	{"llama_350m.json", 367_969_280},
	{"llama_1b.json", 1_339_082_752},
	{"llama_7b.json", 6_738_415_616},
	{"llama_tiny.json", 5_456},
}

func TestParamCounts(t *testing.T) {
	for _, c := range paramCounts {
		t.Run(c.file, func(t *testing.T) {
			cfg := readConfig(t, c.file)
			m, err := BuildLlama(cfg, Options{BatchSize: 1, SeqLen: 2})
			if err != nil {
				t.Fatal(err)
			}
			g := m.Graphs[0]
			if got := g.NumElements(ir.Param); got != c.params {
				t.Errorf("built %d parameters, want %d", got, c.params)
			}
			if got := cfg.NumParams(); got != c.params {
				t.Errorf("NumParams() = %d, want %d", got, c.params)
			}
			// 2 + 9 per layer: embed, the layers, model.norm, lm_head.
			if got, want := len(g.InputsWithRole(ir.Param)), 3+9*cfg.NumHiddenLayers; got != want {
				t.Errorf("%d parameter tensors, want %d", got, want)
			}
		})
	}
}

func TestAllConfigsVerify(t *testing.T) {
	for _, c := range paramCounts {
		t.Run(c.file, func(t *testing.T) {
			m, err := BuildLlama(readConfig(t, c.file), Options{BatchSize: 2, SeqLen: 16})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGraphInterface(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	for _, dt := range []ir.DType{0, ir.F32, ir.F64} {
		m, err := BuildLlama(cfg, Options{BatchSize: 3, SeqLen: 5, Seed: 42, DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		want := dt
		if want == 0 {
			want = ir.F32
		}
		if len(m.Graphs) != 1 || m.Graph("forward") == nil {
			t.Fatalf("want one graph named forward, got %d graphs", len(m.Graphs))
		}
		g := m.Graph("forward")
		types := g.Types()
		for _, c := range []struct{ what, value, typ string }{
			{"input input_ids", "input_ids", "i64[3,5]"},
			{"output loss", g.Output("loss").Value, want.String() + "[]"},
			{"output logits", g.Output("logits").Value, want.String() + "[3,5,32]"},
			{"param embed", "model.embed_tokens.weight", want.String() + "[32,16]"},
			{"param q", "model.layers.1.self_attn.q_proj.weight", want.String() + "[16,16]"},
			{"param gate", "model.layers.1.mlp.gate_proj.weight", want.String() + "[24,16]"},
			{"param down", "model.layers.1.mlp.down_proj.weight", want.String() + "[16,24]"},
			{"param norm", "model.layers.0.post_attention_layernorm.weight", want.String() + "[16]"},
			{"param lm_head", "lm_head.weight", want.String() + "[32,16]"},
		} {
			if got := types[c.value].String(); got != c.typ {
				t.Errorf("dtype %v: %s is %s, want %s", dt, c.what, got, c.typ)
			}
		}
		if in := g.Input("input_ids"); in.Role != ir.Data || in.Init != nil {
			t.Errorf("input_ids: role %v init %v", in.Role, in.Init)
		}
		if len(g.Outputs) != 2 || g.Outputs[0].Name != "loss" || g.Outputs[1].Name != "logits" {
			t.Errorf("outputs %v", g.Outputs)
		}
		for k, v := range map[string]string{"batch_size": "3", "max_length": "5", "seed": "42", "dtype": want.String(), "model_config": string(cfg.Raw)} {
			if m.Meta[k] != v {
				t.Errorf("meta %q = %q, want %q", k, m.Meta[k], v)
			}
		}
	}
}

// TestParamOrderAndInit checks names, roles, initialisers and the order of the
// seed's state_dict() (modules in registration order; LlamaMLP registers
// gate_proj, down_proj, up_proj).
func TestParamOrderAndInit(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	m, err := BuildLlama(cfg, Options{BatchSize: 1, SeqLen: 4, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range m.Graphs[0].InputsWithRole(ir.Param) {
		names = append(names, in.Name)
		switch {
		case strings.HasSuffix(in.Name, "norm.weight"):
			if in.Init.Kind != ir.InitOnes {
				t.Errorf("%s: init %v, want ones", in.Name, in.Init.Kind)
			}
		default:
			want := ir.Init{Kind: ir.InitNormal, Std: 0.02, Seed: ir.SeedFor(7, in.Name)}
			if !in.Init.Equal(&want) {
				t.Errorf("%s: init %+v, want %+v", in.Name, *in.Init, want)
			}
		}
	}
	layer := func(i string) []string {
		p := "model.layers." + i + "."
		return []string{p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight",
			p + "mlp.gate_proj.weight", p + "mlp.down_proj.weight", p + "mlp.up_proj.weight",
			p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
	}
	want := append(append(append([]string{"model.embed_tokens.weight"}, layer("0")...), layer("1")...), "model.norm.weight", "lm_head.weight")
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("parameters\n got %v\nwant %v", names, want)
	}
	if got := m.Graphs[0].Inputs[0].Name; got != "input_ids" {
		t.Errorf("first input %q, want input_ids", got)
	}
}

// TestNodeNames checks what the SLTrain fusion pass relies on: every projection
// is a Linear named after its module and reading the weight of that name, and
// nothing else in the layers is a Linear.
func TestNodeNames(t *testing.T) {
	m, err := BuildLlama(readConfig(t, "llama_tiny.json"), Options{BatchSize: 1, SeqLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graphs[0]
	var linears []string
	ops := map[string]map[string]int{} // scope → op → count
	for _, n := range g.Nodes {
		if n.Op == "Linear" {
			linears = append(linears, n.Name)
			if n.Inputs[1] != n.Name+".weight" && !(n.Name == "lm_head" && n.Inputs[1] == "lm_head.weight") {
				t.Errorf("%v reads weight %q", n, n.Inputs[1])
			}
		}
		if n.Name == "" {
			t.Errorf("%v has no name", n)
		}
		if ops[n.Name] == nil {
			ops[n.Name] = map[string]int{}
		}
		ops[n.Name][n.Op]++
	}
	// 7 per layer, lm_head for the logits and lm_head again for the loss's
	// L−1 positions.
	if len(linears) != 2*7+2 {
		t.Errorf("%d Linear nodes, want 16: %v", len(linears), linears)
	}
	for scope, want := range map[string]map[string]int{
		"model.embed_tokens":                      {"Gather": 1},
		"model.layers.0.input_layernorm":          {"Mul": 3, "ReduceMean": 1, "Add": 1, "Const": 1, "Rsqrt": 1},
		"model.layers.0.self_attn":                {"Reshape": 4, "Transpose": 4, "RoPE": 2, "MatMul": 2, "Mul": 1, "Const": 1, "CausalMask": 1, "Softmax": 1},
		"model.layers.0.self_attn.q_proj":         {"Linear": 1},
		"model.layers.0":                          {"Add": 2},
		"model.layers.1.mlp":                      {"Silu": 1, "Mul": 1},
		"model.layers.1.post_attention_layernorm": {"Mul": 3, "ReduceMean": 1, "Add": 1, "Const": 1, "Rsqrt": 1},
		"model.norm":                              {"Mul": 3, "ReduceMean": 1, "Add": 1, "Const": 1, "Rsqrt": 1},
		"lm_head":                                 {"Linear": 2},
		"loss":                                    {"Slice": 2, "Reshape": 2, "SoftmaxCrossEntropy": 1, "ReduceMean": 1},
	} {
		if !sameCounts(ops[scope], want) {
			t.Errorf("scope %q has ops %v, want %v", scope, ops[scope], want)
		}
	}
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestAttributes pins the constants of the computation: ε, the attention scale,
// the rotary base and axis, the softmax axis and the loss slices.
func TestAttributes(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	m, err := BuildLlama(cfg, Options{BatchSize: 2, SeqLen: 6})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graphs[0]
	prod := g.Producers()
	for _, n := range g.Nodes {
		switch n.Op {
		case "Const":
			v := n.Attrs.GetFloat("value", math.NaN())
			if strings.HasSuffix(n.Name, "layernorm") || n.Name == "model.norm" {
				if v != 1e-6 {
					t.Errorf("%v: eps %v", n, v)
				}
			} else if v != 1/math.Sqrt(8) {
				t.Errorf("%v: scale %v, want 1/√8", n, v)
			}
		case "RoPE":
			if n.Attrs.GetFloat("base", 0) != 10000 || n.Attrs.GetInt("seq_axis", 0) != -2 || n.Attrs.GetInt("inverse", 0) != 0 {
				t.Errorf("%v: attrs %v", n, n.Attrs)
			}
		case "Softmax":
			if n.Attrs.GetInt("axis", 0) != -1 || prod[n.Inputs[0]].Op != "CausalMask" {
				t.Errorf("%v: attrs %v", n, n.Attrs)
			}
		case "Slice":
			want := [3]int64{1, 0, 5} // logits[:, :L-1]
			if n.Inputs[0] == "input_ids" {
				want = [3]int64{1, 1, 6} // input_ids[:, 1:]
			}
			if got := [3]int64{n.Attrs.GetInt("axis", -1), n.Attrs.GetInt("start", -1), n.Attrs.GetInt("end", -1)}; got != want {
				t.Errorf("%v: axis/start/end %v, want %v", n, got, want)
			}
		case "MatMul":
			q := prod[n.Inputs[0]]
			if q.Op == "RoPE" && n.Attrs.GetInt("transpose_b", 0) != 1 {
				t.Errorf("%v: q·kᵀ without transpose_b", n)
			}
		}
	}
	sm := prod[g.Output("loss").Value]
	if sm.Op != "ReduceMean" || prod[sm.Inputs[0]].Op != "SoftmaxCrossEntropy" {
		t.Errorf("loss is %v", sm)
	}
}

func TestTiedEmbeddings(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	cfg.TieWordEmbeddings = true
	m, err := BuildLlama(cfg, Options{BatchSize: 2, SeqLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graphs[0]
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	if g.Input("lm_head.weight") != nil {
		t.Error("tied model has an lm_head.weight parameter")
	}
	if got, want := g.NumElements(ir.Param), int64(5456-32*16); got != want || cfg.NumParams() != want {
		t.Errorf("tied: %d parameters (NumParams %d), want %d", got, cfg.NumParams(), want)
	}
	for _, n := range g.Nodes {
		if n.Name == "lm_head" && n.Inputs[1] != "model.embed_tokens.weight" {
			t.Errorf("lm_head reads %q", n.Inputs[1])
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	a, _ := BuildLlama(cfg, Options{BatchSize: 2, SeqLen: 4, Seed: 1})
	b, _ := BuildLlama(cfg, Options{BatchSize: 2, SeqLen: 4, Seed: 1})
	c, _ := BuildLlama(cfg, Options{BatchSize: 2, SeqLen: 4, Seed: 2})
	if string(a.MarshalText()) != string(b.MarshalText()) {
		t.Error("same inputs built different modules")
	}
	if a.Equal(c) {
		t.Error("different seeds built the same module")
	}
}

// TestConfigWithoutRaw builds from a config made in code: the metadata still
// carries a JSON config that parses back to the same fields.
func TestConfigWithoutRaw(t *testing.T) {
	cfg := *readConfig(t, "llama_tiny.json")
	cfg.Raw = nil
	m, err := BuildLlama(&cfg, Options{BatchSize: 1, SeqLen: 2})
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseLlamaConfig([]byte(m.Meta["model_config"]))
	if err != nil {
		t.Fatal(err)
	}
	back.Raw = nil
	if !reflect.DeepEqual(*back, cfg) {
		t.Errorf("round trip: %+v, want %+v", *back, cfg)
	}
}

func TestBuildErrors(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	bad := *cfg
	bad.HiddenAct = "gelu"
	for _, c := range []struct {
		name string
		cfg  *LlamaConfig
		opt  Options
		want []string
	}{
		{"nil config", nil, Options{BatchSize: 1, SeqLen: 2}, []string{"no model config"}},
		{"invalid config", &bad, Options{BatchSize: 1, SeqLen: 2}, []string{`"hidden_act"`, "gelu"}},
		{"batch 0", cfg, Options{BatchSize: 0, SeqLen: 8}, []string{"batch_size", ">= 1", "got 0"}},
		{"batch -3", cfg, Options{BatchSize: -3, SeqLen: 8}, []string{"batch_size", "got -3"}},
		{"seq 1", cfg, Options{BatchSize: 1, SeqLen: 1}, []string{"max_length", ">= 2"}},
		{"seq too long", cfg, Options{BatchSize: 1, SeqLen: 65}, []string{"max_length 65", `"max_sequence_length" (64)`}},
		{"f16", cfg, Options{BatchSize: 1, SeqLen: 8, DType: ir.F16}, []string{"dtype f16", "want f32, bf16 or f64"}},
		{"int dtype", cfg, Options{BatchSize: 1, SeqLen: 8, DType: ir.I64}, []string{"dtype i64"}},
		{"huge batch", cfg, Options{BatchSize: math.MaxInt / 2, SeqLen: 64}, []string{"batch_size", "too large"}},
	} {
		m, err := BuildLlama(c.cfg, c.opt)
		if err == nil {
			t.Errorf("%s: no error (module %v)", c.name, m != nil)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, w)
			}
		}
	}
	// Seq = max is allowed.
	if _, err := BuildLlama(cfg, Options{BatchSize: 1, SeqLen: 64}); err != nil {
		t.Errorf("seq len = max_sequence_length: %v", err)
	}
}

func BenchmarkBuildLlama7B(b *testing.B) {
	cfg := readConfig(b, "llama_7b.json")
	for b.Loop() {
		if _, err := BuildLlama(cfg, Options{BatchSize: 1, SeqLen: 2048}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBF16 builds the seed's bf16 model: bf16 parameters, RMSNorm's
// variance (HF 4.28) and the attention softmax (SDPA's math path) in f32;
// its loss through the interpreter is the f32 model's within bf16 precision.
func TestBF16(t *testing.T) {
	cfg, err := ReadLlamaConfig("../testdata/configs/llama_tiny.json")
	if err != nil {
		t.Fatal(err)
	}
	loss := map[ir.DType]float64{}
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		m, err := BuildLlama(cfg, Options{BatchSize: 2, SeqLen: 8, Seed: 3, DType: dt})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(); err != nil {
			t.Fatal(err)
		}
		g := m.Graph("forward")
		casts := map[string]int{}
		for _, n := range g.Nodes {
			if n.Op == "Cast" {
				casts[n.Attrs.GetString("to", "")]++
			}
			if n.Op == "Softmax" && n.Outputs[0].Type.DType != ir.F32 {
				t.Errorf("%v: the attention softmax runs in %v, want f32", dt, n.Outputs[0].Type.DType)
			}
		}
		for _, in := range g.InputsWithRole(ir.Param) {
			if in.Type.DType != dt {
				t.Errorf("%v: parameter %s is %v", dt, in.Name, in.Type.DType)
			}
		}
		// Per layer: two norms, the scaling of q and of k and the softmax,
		// each to f32 and back; the final norm.
		if want := 5*cfg.NumHiddenLayers + 1; dt == ir.BF16 && (casts["f32"] != want || casts["bf16"] != want) {
			t.Errorf("bf16: casts %v", casts)
		} else if dt == ir.F32 && len(casts) != 0 {
			t.Errorf("f32: casts %v, want none", casts)
		}
		vals, err := interp.InitState(g)
		if err != nil {
			t.Fatal(err)
		}
		ids := interp.NewTensor(g.Input("input_ids").Type)
		for i := range ids.I {
			ids.I[i] = int64(i*7) % int64(cfg.VocabSize)
		}
		vals["input_ids"] = ids
		out, err := interp.Run(g, vals)
		if err != nil {
			t.Fatal(err)
		}
		if out["loss"].Type.DType != dt {
			t.Errorf("loss is %v, want %v", out["loss"].Type.DType, dt)
		}
		loss[dt] = out["loss"].F[0]
	}
	if d := math.Abs(loss[ir.BF16] - loss[ir.F32]); !(d < 0.02*loss[ir.F32]) || loss[ir.BF16] == loss[ir.F32] {
		t.Errorf("bf16 loss %v vs f32 %v", loss[ir.BF16], loss[ir.F32])
	}
}

// TestLossMask checks Options.LossMask against the logits: the loss is the
// mean cross-entropy, computed here in float64 from the "logits" output, over
// exactly the positions whose loss_mask is 1 (HF's loss with the other labels
// set to −100), and it adds only the loss_mask input.
func TestLossMask(t *testing.T) {
	cfg := readConfig(t, "llama_tiny.json")
	const bs, seq = 3, 6
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		m, err := BuildLlama(cfg, Options{BatchSize: bs, SeqLen: seq, Seed: 2, DType: dt, LossMask: true})
		if err != nil {
			t.Fatal(err)
		}
		g := m.Graph("forward")
		if in := g.Input("loss_mask"); in == nil || !in.Type.Equal(ir.T(ir.F32, bs, seq-1)) || in.Role != ir.Data {
			t.Fatalf("%v: loss_mask input %v", dt, in)
		}
		if m.Meta["rows"] != "documents" {
			t.Errorf("%v: meta rows %q", dt, m.Meta["rows"])
		}
		vals, err := interp.InitState(g)
		if err != nil {
			t.Fatal(err)
		}
		rng := ir.NewRNG(4)
		ids := interp.NewTensor(g.Input("input_ids").Type)
		for i := range ids.I {
			ids.I[i] = int64(rng.Uint64n(uint64(cfg.VocabSize)))
		}
		// Rows of different lengths: row r keeps its first r+2 predictions.
		mask := interp.NewTensor(g.Input("loss_mask").Type)
		for r := 0; r < bs; r++ {
			for p := 0; p < seq-1; p++ {
				if p < r+2 {
					mask.F[r*(seq-1)+p] = 1
				}
			}
		}
		vals["input_ids"], vals["loss_mask"] = ids, mask
		out, err := interp.Run(g, vals)
		if err != nil {
			t.Fatal(err)
		}
		V := cfg.VocabSize
		var sum, count float64
		for r := 0; r < bs; r++ {
			for p := 0; p < seq-1; p++ {
				if mask.F[r*(seq-1)+p] == 0 {
					continue
				}
				z := out["logits"].F[(r*seq+p)*V : (r*seq+p+1)*V]
				mx := math.Inf(-1)
				for _, v := range z {
					mx = math.Max(mx, v)
				}
				var s float64
				for _, v := range z {
					s += math.Exp(v - mx)
				}
				sum += mx + math.Log(s) - z[ids.I[r*seq+p+1]]
				count++
			}
		}
		want, got := sum/count, out["loss"].F[0]
		tol := 1e-5
		if dt == ir.BF16 {
			tol = 2e-2 // the bf16 logits and per-position CE round; the mean is f32
		}
		if math.Abs(got-want) > tol*want {
			t.Errorf("%v: masked loss %v, want %v (from the logits)", dt, got, want)
		}
	}
}
