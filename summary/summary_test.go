package summary

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// tinyModule builds a two-layer LLaMA-shaped module whose second layer has an
// SLTrain attention projection (lora_A, lora_B, sparse_value, sparse_index).
// The "forward" graph is not the first one, so Of must look it up by name.
func tinyModule(t *testing.T) *ir.Module {
	t.Helper()
	norm := &ir.Init{Kind: ir.InitOnes}
	w := func(seed uint64) *ir.Init { return &ir.Init{Kind: ir.InitNormal, Std: 0.02, Seed: seed} }
	b := ir.NewBuilder("forward")
	ids := b.AddInput("input_ids", ir.T(ir.I64, 2, 3), ir.Data, nil)
	lr := b.AddInput("lr", ir.T(ir.F32), ir.Scalar, nil)
	emb := b.AddInput("model.embed_tokens.weight", ir.T(ir.F32, 10, 4), ir.Param, w(1))
	q0 := b.AddInput("model.layers.0.self_attn.q_proj.weight", ir.T(ir.F32, 4, 4), ir.Param, w(2))
	b.AddInput("model.layers.0.mlp.gate_proj.weight", ir.T(ir.F32, 6, 4), ir.Param, w(3))
	b.AddInput("model.layers.0.input_layernorm.weight", ir.T(ir.F32, 4), ir.Param, norm)
	b.AddInput("model.layers.0.post_attention_layernorm.weight", ir.T(ir.F32, 4), ir.Param, norm)
	la := b.AddInput("model.layers.1.self_attn.q_proj.lora_A", ir.T(ir.F32, 2, 4), ir.Param, &ir.Init{Kind: ir.InitUniform, Low: -0.5, High: 0.5, Seed: 4})
	lb := b.AddInput("model.layers.1.self_attn.q_proj.lora_B", ir.T(ir.F32, 4, 2), ir.Param, &ir.Init{Kind: ir.InitZeros})
	sv := b.AddInput("model.layers.1.self_attn.q_proj.sparse_value", ir.T(ir.F32, 3), ir.Param, &ir.Init{Kind: ir.InitUniform, Low: -0.5, High: 0.5, Seed: 5})
	si := b.AddInput("model.layers.1.self_attn.q_proj.sparse_index", ir.T(ir.I64, 3), ir.Buffer, &ir.Init{Kind: ir.InitSupport, Total: 16, Seed: 6})
	b.AddInput("model.layers.1.mlp.gate_proj.weight", ir.T(ir.F32, 6, 4), ir.Param, w(7))
	b.AddInput("model.layers.1.input_layernorm.weight", ir.T(ir.F32, 4), ir.Param, norm)
	b.AddInput("model.layers.1.post_attention_layernorm.weight", ir.T(ir.F32, 4), ir.Param, norm)
	b.AddInput("model.norm.weight", ir.T(ir.F32, 4), ir.Param, norm)
	head := b.AddInput("lm_head.weight", ir.T(ir.F32, 10, 4), ir.Param, w(8))
	b.AddInput("score_bias", ir.T(ir.F32, 2), ir.Param, &ir.Init{Kind: ir.InitZeros})

	x := b.Op("Gather", nil, emb, ids)
	x = b.Op("Linear", nil, x, q0)
	x = b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(16)}, x, lb, la, sv, si)
	x = b.Mul(x, lr)
	logits := b.Op("Linear", nil, x, head)
	ce := b.Op("SoftmaxCrossEntropy", nil, b.Reshape(logits, 6, 10), b.Reshape(ids, 6))
	b.Output("loss", b.Reduce("ReduceMean", ce, false, 0))
	b.Output("logits", logits)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}

	init := ir.NewBuilder("init")
	z := init.AddInput("z", ir.T(ir.F32, 3), ir.Data, nil)
	init.Output("z2", init.Add(z, z))
	if err := init.Err(); err != nil {
		t.Fatal(err)
	}
	m := &ir.Module{Meta: map[string]string{"model_type": "llama", "config": strings.Repeat("x", 100)}, Graphs: []*ir.Graph{init.G, b.G}}
	if err := m.Verify(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCountsAreExact(t *testing.T) {
	s := Of(tinyModule(t))
	if s.Graph != "forward" {
		t.Fatalf("counted graph %q, want forward", s.Graph)
	}
	if s.Params.Elems != 185 || s.Params.Tensors != 14 {
		t.Errorf("params: %+v, want 185 elements in 14 tensors", s.Params)
	}
	wantGroups := []Count{
		{GroupEmbeddings, 1, 40},
		{GroupAttention, 4, 16 + 8 + 8 + 3},
		{GroupMLP, 2, 48},
		{GroupNorms, 5, 20},
		{GroupLMHead, 1, 40},
		{GroupOther, 1, 2},
	}
	if len(s.Groups) != len(wantGroups) {
		t.Fatalf("groups %+v", s.Groups)
	}
	for i, w := range wantGroups {
		if s.Groups[i] != w {
			t.Errorf("group %d: got %+v, want %+v", i, s.Groups[i], w)
		}
	}
	wantKinds := []Count{{KindDense, 11, 166}, {KindLowRank, 2, 16}, {KindSparse, 1, 3}}
	for i, w := range wantKinds {
		if s.Kinds[i] != w {
			t.Errorf("kind %d: got %+v, want %+v", i, s.Kinds[i], w)
		}
	}
	if len(s.Buffers) != 1 || s.BufferElems != 3 || s.Buffers[0].Name != "model.layers.1.self_attn.q_proj.sparse_index" {
		t.Errorf("buffers %+v (%d elements)", s.Buffers, s.BufferElems)
	}
	if s.Layers != 2 || s.LayerParams != 48 || len(s.LayerState) != 4 {
		t.Errorf("layers %d, layer params %d, layer state %+v", s.Layers, s.LayerParams, s.LayerState)
	}
	if got := s.LayerState[0]; got.Name != "model.layers.*.self_attn.q_proj.weight" || got.Type.String() != "f32[4,4]" {
		t.Errorf("layer state[0] = %+v", got)
	}
	var global []string
	for _, g := range s.GlobalState {
		global = append(global, g.Name)
	}
	if strings.Join(global, " ") != "model.embed_tokens.weight model.norm.weight lm_head.weight score_bias" {
		t.Errorf("global state %v", global)
	}
	if len(s.Inputs) != 2 || s.Inputs[0].Name != "input_ids" || s.Inputs[0].Type.String() != "i64[2,3]" || s.Inputs[1].Role != ir.Scalar {
		t.Errorf("inputs %+v", s.Inputs)
	}
	if len(s.Outputs) != 2 || s.Outputs[0].Type.String() != "f32[]" || s.Outputs[1].Type.String() != "f32[2,3,10]" {
		t.Errorf("outputs %+v", s.Outputs)
	}
	if len(s.GraphDetails) != 2 || s.GraphDetails[0].Nodes != 1 || s.GraphDetails[1].Nodes != 9 {
		t.Fatalf("graphs %+v", s.GraphDetails)
	}
	if ops := s.GraphDetails[1].Ops; ops[0] != (OpCount{"Linear", 2}) || ops[1] != (OpCount{"Reshape", 2}) || len(ops) != 7 {
		t.Errorf("op histogram %+v", ops)
	}
}

func TestFirstGraphWithoutForward(t *testing.T) {
	m := tinyModule(t)
	m.Graphs[1].Name = "train_step"
	s := Of(m)
	if s.Graph != "init" || s.Params.Tensors != 0 || len(s.Inputs) != 1 {
		t.Fatalf("got graph %q with %d params and inputs %+v", s.Graph, s.Params.Tensors, s.Inputs)
	}
}

func TestEmptyModule(t *testing.T) {
	var b strings.Builder
	Of(&ir.Module{}).Write(&b)
	if b.String() != "Empty module: no graphs.\n" {
		t.Fatalf("got %q", b.String())
	}
}

func TestWrite(t *testing.T) {
	var b strings.Builder
	Of(tinyModule(t)).Write(&b)
	want := `Total params: 0.00M (185 in 14 tensors)
Metadata:
  config      (100 bytes)
  model_type  llama
Parameters of graph "forward":
  group       params  count  tensors
  embeddings   0.00M     40        1
  attention    0.00M     35        4
  MLP          0.00M     48        2
  norms        0.00M     20        5
  lm_head      0.00M     40        1
  other        0.00M      2        1
  kind
  dense        0.00M    166       11
  low-rank     0.00M     16        2
  sparse       0.00M      3        1
Buffers: 0.00M (3 in 1 tensor)
Inputs:
  input_ids  i64[2,3]  data
  lr         f32[]     scalar
Outputs:
  loss    f32[]
  logits  f32[2,3,10]
Layers: 2 (0.00M params each)
  model.layers.*.self_attn.q_proj.weight          f32[4,4]
  model.layers.*.mlp.gate_proj.weight             f32[6,4]
  model.layers.*.input_layernorm.weight           f32[4]
  model.layers.*.post_attention_layernorm.weight  f32[4]
Outside the layers:
  model.embed_tokens.weight  f32[10,4]
  model.norm.weight          f32[4]
  lm_head.weight             f32[10,4]
  score_bias                 f32[2]
Graphs:
  init      1 node
  forward  9 nodes
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	Of(tinyModule(t)).WriteOps(&b)
	if !strings.Contains(b.String(), "Ops of graph \"forward\" (9 nodes):\n  Linear               2\n") {
		t.Errorf("ops:\n%s", b.String())
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ name, group, kind string }{
		{"model.embed_tokens.weight", GroupEmbeddings, KindDense},
		{"model.layers.3.self_attn.o_proj.weight", GroupAttention, KindDense},
		{"encoder.attention.k.weight", GroupAttention, KindDense},
		{"h.0.attn.c_attn.weight", GroupAttention, KindDense},
		{"model.layers.0.mlp.down_proj.lora_B", GroupMLP, KindLowRank},
		{"model.layers.0.mlp.down_proj.lora_A.weight", GroupMLP, KindLowRank},
		{"model.layers.0.mlp.up_proj.sparse_value", GroupMLP, KindSparse},
		{"model.layers.0.post_attention_layernorm.weight", GroupNorms, KindDense},
		{"model.norm.weight", GroupNorms, KindDense},
		{"lm_head.weight", GroupLMHead, KindDense},
		{"rotary.inv_freq", GroupOther, KindDense},
	} {
		if g, k := GroupOf(c.name), KindOf(c.name); g != c.group || k != c.kind {
			t.Errorf("%s: got %s/%s, want %s/%s", c.name, g, k, c.group, c.kind)
		}
	}
}

func TestLayerIndex(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int
		ok   bool
	}{
		{"model.layers.0.mlp.up_proj.weight", 0, true},
		{"model.layers.31.self_attn.q_proj.weight", 31, true},
		{"model.layers.x.mlp", 0, false},
		{"model.layers.07.mlp", 0, false},
		{"model.layers.12", 0, false},
		{"decoder.model.layers.1.mlp", 0, false},
		{"model.norm.weight", 0, false},
	} {
		n, ok := layerIndex(c.name)
		if n != c.n || ok != c.ok {
			t.Errorf("%s: got %d %v, want %d %v", c.name, n, ok, c.n, c.ok)
		}
	}
}

func TestNumbers(t *testing.T) {
	for _, c := range []struct {
		n             int64
		millions, grp string
	}{
		{0, "0.00M", "0"},
		{999, "0.00M", "999"},
		{1000, "0.00M", "1,000"},
		{8704, "0.01M", "8,704"},
		{58073600, "58.07M", "58,073,600"},
		{43529832, "43.53M", "43,529,832"},
		{6738415616, "6738.42M", "6,738,415,616"},
		{-1234567, "-1.23M", "-1,234,567"},
	} {
		if m, g := Millions(c.n), Grouped(c.n); m != c.millions || g != c.grp {
			t.Errorf("%d: got %s %s, want %s %s", c.n, m, g, c.millions, c.grp)
		}
	}
}

func TestFLOPs(t *testing.T) {
	b := ir.NewBuilder("g")
	x := b.AddInput("x", ir.T(ir.F32, 2, 3, 8), ir.Data, nil)
	w := b.AddInput("w", ir.T(ir.F32, 5, 8), ir.Param, &ir.Init{Kind: ir.InitZeros})
	bb := b.AddInput("B", ir.T(ir.F32, 5, 2), ir.Param, &ir.Init{Kind: ir.InitZeros})
	a := b.AddInput("A", ir.T(ir.F32, 2, 8), ir.Param, &ir.Init{Kind: ir.InitZeros})
	v := b.AddInput("v", ir.T(ir.F32, 4), ir.Param, &ir.Init{Kind: ir.InitZeros})
	idx := b.AddInput("i", ir.T(ir.I64, 4), ir.Buffer, &ir.Init{Kind: ir.InitSupport, Total: 40})
	y := b.Op("Linear", nil, x, w)                                                  // 2·6·5·8 = 480
	z := b.Op("LowRankSparseAdd", ir.Attrs{"scale": ir.Float(1)}, x, bb, a, v, idx) // 2·6·(16+10+4) = 360
	m := b.MatMul(y, z, true, false)                                                // [2,5,5]: 2·50·3 = 300
	b.Output("m", m)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if got := FLOPs(b.G); got != 480+360+300 {
		t.Fatalf("FLOPs = %d, want 1140", got)
	}
}
