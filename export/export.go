// Package export turns a training checkpoint into weights other tools load:
//
//   - HF: a Hugging Face LLaMA directory (config.json + model.safetensors)
//     whose every SLTrain layer is merged back into its dense weight
//     W = B·(A·scale) + S, under HF's names (model.layers.{i}.self_attn.q_proj.weight, …):
//     the state dict of transformers' LlamaForCausalLM, less the rotary
//     inv_freq buffers, which transformers recomputes, with the config.json
//     today's transformers reads (see HFConfig);
//   - SLTrain: the factored tensors as trained (lora_A, lora_B, sparse_value,
//     sparse_index and the rest) with config.json and sltrain_config.json, the
//     layout of the seed's SLTrain checkpoints: its config.json is the
//     checkpoint's, byte for byte (the seed's transformers-4.28 config, which
//     the seed's code and slc read; transformers could not load the factored
//     tensors into LlamaForCausalLM anyway).
//
// Both write the directory atomically (a temporary directory renamed into
// place), and replace an existing one only when it holds nothing but export
// files.
package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
)

// File names of an export directory.
const (
	ConfigFile  = "config.json"
	ModelFile   = "model.safetensors"
	SLTrainFile = "sltrain_config.json"
)

// replaceable are the entries an existing export directory may hold.
var replaceable = []string{ConfigFile, ModelFile, SLTrainFile}

// The suffixes of an SLTrain layer's tensors (passes/sltrain_fuse.go).
const (
	suffixA     = ".lora_A"       // [r, in]
	suffixB     = ".lora_B"       // [out, r]
	suffixValue = ".sparse_value" // [nnz]
	suffixIndex = ".sparse_index" // [nnz] int, flat row-major index into [out, in]
	// suffixScaling is the seed's trainable scale (--train_scaling): [1],
	// the layer's scale is tanh of it.
	suffixScaling = ".scaling" // passes.ScalingSuffix
)

var suffixes = []string{suffixA, suffixB, suffixValue, suffixIndex, suffixScaling}

// layer is one SLTrain-factored linear layer of a checkpoint.
type layer struct {
	module       string
	a, b, v, idx *safetensors.Tensor
	scaling      *safetensors.Tensor // nil: the scale is lora_alpha/r
	out, in, r   int
}

// item is one tensor of an export: a checkpoint tensor converted to the
// export dtype, or a merged layer.
type item struct {
	src   *safetensors.Tensor
	layer *layer
}

// plan lists the tensors an export writes, in order, with their header
// records (Data nil); every check happens here, before anything is written.
type plan struct {
	header *safetensors.File
	items  []item
	scale  float64
	dt     ir.DType
}

// splitName returns a fused tensor's module and suffix, or "" when the name
// is no SLTrain tensor.
func splitName(name string) (module, suffix string) {
	for _, s := range suffixes {
		if strings.HasSuffix(name, s) && len(name) > len(s) {
			return strings.TrimSuffix(name, s), s
		}
	}
	return "", ""
}

// layers finds and checks every SLTrain layer of the checkpoint's model.
func layers(c *checkpoint.Checkpoint) (map[string]*layer, error) {
	byModule := map[string]*layer{}
	for i := range c.Model.Tensors {
		t := &c.Model.Tensors[i]
		module, suffix := splitName(t.Name)
		if module == "" {
			continue
		}
		l := byModule[module]
		if l == nil {
			l = &layer{module: module}
			byModule[module] = l
		}
		switch suffix {
		case suffixA:
			l.a = t
		case suffixB:
			l.b = t
		case suffixValue:
			l.v = t
		case suffixIndex:
			l.idx = t
		case suffixScaling:
			l.scaling = t
		}
	}
	if len(byModule) == 0 {
		return byModule, nil
	}
	if c.SLTrain == nil {
		return nil, errors.New("the checkpoint has SLTrain layers but no SLTrain config (sltrain_config.json), so their scale is unknown")
	}
	r, err := checkpoint.Rank(c.SLTrain)
	if err != nil {
		return nil, err
	}
	if _, err := c.Scale(); err != nil {
		return nil, err
	}
	trained := c.SLTrain["trainable_scaling"] == true
	names := make([]string, 0, len(byModule))
	for m := range byModule {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		if err := byModule[m].check(r); err != nil {
			return nil, fmt.Errorf("layer %s: %w", m, err)
		}
		if l := byModule[m]; trained != (l.scaling != nil) || (l.scaling != nil && (l.scaling.NumElements() != 1 || !l.scaling.DType.IsFloat())) {
			return nil, fmt.Errorf("layer %s: the SLTrain config says trainable_scaling %v, but the layer's %s is %s", m, trained, suffixScaling, map[bool]string{false: "missing", true: "present (it must be one float)"}[l.scaling != nil])
		}
	}
	return byModule, nil
}

// check validates a layer's shapes, dtypes and sparse support against the
// config's rank r.
func (l *layer) check(r int) error {
	var err error
	l.in, l.out, err = CheckFactors(l.module, l.a, l.b, l.v, l.idx, r)
	l.r = r
	return err
}

// CheckFactors validates the four tensors of the SLTrain layer module (any
// of them nil is an error naming it): float lora_A [r, in], lora_B [out, r]
// and sparse_value [nnz], an integer sparse_index [nnz] of distinct flat
// indices inside [out, in], and the rank equal to the config's r and at most
// min(out, in). It returns in and out. Export and slc analyze read
// checkpoints and exports through it, so both refuse the same layers with
// the same words.
func CheckFactors(module string, a, b, v, idx *safetensors.Tensor, r int) (in, out int, err error) {
	for _, p := range []struct {
		t      *safetensors.Tensor
		suffix string
	}{{a, suffixA}, {b, suffixB}, {v, suffixValue}, {idx, suffixIndex}} {
		if p.t == nil {
			return 0, 0, fmt.Errorf("has no %s (an SLTrain layer needs lora_A, lora_B, sparse_value and sparse_index)", module+p.suffix)
		}
	}
	for _, t := range []*safetensors.Tensor{a, b, v} {
		if !t.DType.IsFloat() {
			return 0, 0, fmt.Errorf("%s is %v, not a float tensor", t.Name, t.Type())
		}
	}
	if !idx.DType.IsInt() {
		return 0, 0, fmt.Errorf("%s is %v, not an integer tensor", idx.Name, idx.Type())
	}
	if len(a.Shape) != 2 || len(b.Shape) != 2 || len(v.Shape) != 1 || len(idx.Shape) != 1 {
		return 0, 0, fmt.Errorf("shapes lora_A %v, lora_B %v, sparse_value %v, sparse_index %v; want [r, in], [out, r], [nnz], [nnz]", a.Shape, b.Shape, v.Shape, idx.Shape)
	}
	rank, in, out := a.Shape[0], a.Shape[1], b.Shape[0]
	switch {
	case rank < 1 || in < 1 || out < 1:
		return 0, 0, fmt.Errorf("lora_A %v, lora_B %v: empty", a.Shape, b.Shape)
	case b.Shape[1] != rank:
		return 0, 0, fmt.Errorf("lora_B %v and lora_A %v disagree on the rank", b.Shape, a.Shape)
	case rank != r:
		return 0, 0, fmt.Errorf("rank %d, but the SLTrain config says r = %d (the scale lora_alpha/r would be wrong)", rank, r)
	case rank > out || rank > in:
		return 0, 0, fmt.Errorf("rank %d exceeds the layer's [%d, %d]", rank, out, in)
	case v.Shape[0] != idx.Shape[0]:
		return 0, 0, fmt.Errorf("sparse_value %v and sparse_index %v differ in length", v.Shape, idx.Shape)
	}
	total := int64(out) * int64(in)
	if int64(v.Shape[0]) > total {
		return 0, 0, fmt.Errorf("%d sparse values for a [%d, %d] weight", v.Shape[0], out, in)
	}
	ids, err := idx.Int64s()
	if err != nil {
		return 0, 0, err
	}
	seen := make([]bool, total)
	for k, j := range ids {
		if j < 0 || j >= total {
			return 0, 0, fmt.Errorf("sparse_index[%d] = %d is outside the [%d, %d] weight", k, j, out, in)
		}
		if seen[j] {
			return 0, 0, fmt.Errorf("sparse_index[%d] = %d repeats an index", k, j)
		}
		seen[j] = true
	}
	return in, out, nil
}

// merge returns the dense weight W = B·(A·scale) + S of a layer, [out, in]
// row-major, in float64: A·scale first, then each row of B·(A·scale) summed
// over the rank in order, then the sparse values added at their indices.
// Rows are computed in parallel; the result does not depend on the number
// of threads.
func (l *layer) merge(scale float64) ([]float64, error) {
	a, err := l.a.Float64s()
	if err != nil {
		return nil, err
	}
	b, err := l.b.Float64s()
	if err != nil {
		return nil, err
	}
	v, err := l.v.Float64s()
	if err != nil {
		return nil, err
	}
	idx, err := l.idx.Int64s()
	if err != nil {
		return nil, err
	}
	if l.scaling != nil { // the seed's trained scale, as the graph rounds it: tanh in the layer's dtype
		s, err := l.scaling.Float64s()
		if err != nil {
			return nil, err
		}
		scale = roundTo(l.scaling.DType, math.Tanh(s[0]))
	}
	return mergeDense(l.out, l.in, l.r, b, a, v, idx, scale), nil
}

// roundTo rounds x to the nearest value of the float dtype dt (to nearest
// even), as a cast to it does.
func roundTo(dt ir.DType, x float64) float64 {
	t := safetensors.FromFloat64s("", dt, []int{1}, []float64{x})
	f, err := t.Float64s()
	if err != nil || len(f) != 1 {
		return x
	}
	return f[0]
}

// mergeDense is W = B·(A·scale) + S of an [out, in] layer of rank r, as
// layer.merge describes (a is scaled in place).
func mergeDense(out, in, r int, b, a, v []float64, idx []int64, scale float64) []float64 {
	for i := range a {
		a[i] *= scale
	}
	w := make([]float64, out*in)
	workers := min(goruntime.GOMAXPROCS(0), out)
	var wg sync.WaitGroup
	for t := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := t; o < out; o += workers {
				row := w[o*in : (o+1)*in]
				for k := range r {
					bk := b[o*r+k]
					ak := a[k*in : (k+1)*in]
					for i := range row {
						// The conversion forbids a fused multiply-add, so
						// every architecture rounds the same way.
						row[i] += float64(bk * ak[i])
					}
				}
			}
		}()
	}
	wg.Wait()
	for k, j := range idx {
		w[j] += v[k]
	}
	return w
}

// checkDType accepts the float dtypes an export may be written in.
func checkDType(dt ir.DType) error {
	if !dt.IsFloat() {
		return fmt.Errorf("export dtype must be f32, bf16, f16 or f64, got %v", dt)
	}
	return nil
}

// checkCheckpoint validates what both exports need.
func checkCheckpoint(c *checkpoint.Checkpoint) error {
	if c == nil || c.Model == nil {
		return errors.New("no checkpoint to export")
	}
	if !json.Valid(c.Config) {
		return errors.New("the checkpoint's model config is missing or not valid JSON")
	}
	return nil
}

// converted returns the header record of a copied tensor: floats in dt,
// an SLTrain sparse_index in the seed's int64 (slc trains with i32 where
// the layer fits), other integers as they are.
func converted(t *safetensors.Tensor, dt ir.DType) safetensors.Tensor {
	h := safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape}
	switch {
	case t.DType.IsFloat():
		h.DType = dt
	case t.DType == ir.I32 && strings.HasSuffix(t.Name, suffixIndex):
		h.DType = ir.I64
	}
	return h
}

// hfPlan lists the HF export: each SLTrain layer's tensors become one dense
// weight "<module>.weight" at the place of the layer's first tensor, its
// sparse_index dropped; every other tensor is copied.
func hfPlan(c *checkpoint.Checkpoint, dt ir.DType) (*plan, error) {
	ls, err := layers(c)
	if err != nil {
		return nil, err
	}
	p := &plan{header: &safetensors.File{Metadata: map[string]string{"format": "pt"}}, dt: dt}
	if len(ls) > 0 {
		if p.scale, err = c.Scale(); err != nil {
			return nil, err
		}
	}
	names := map[string]bool{}
	add := func(h safetensors.Tensor, it item) error {
		if names[h.Name] {
			return fmt.Errorf("tensor %s would appear twice in the export (the checkpoint holds both a dense and a factored form)", h.Name)
		}
		names[h.Name] = true
		p.header.Tensors = append(p.header.Tensors, h)
		p.items = append(p.items, it)
		return nil
	}
	done := map[string]bool{}
	for i := range c.Model.Tensors {
		t := &c.Model.Tensors[i]
		module, _ := splitName(t.Name)
		if l := ls[module]; l != nil {
			if done[module] {
				continue
			}
			done[module] = true
			h := safetensors.Tensor{Name: module + ".weight", DType: dt, Shape: []int{l.out, l.in}}
			if err := add(h, item{layer: l}); err != nil {
				return nil, err
			}
			continue
		}
		if err := add(converted(t, dt), item{src: t}); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// sltrainPlan lists the SLTrain export: every tensor as it is, floats in dt.
func sltrainPlan(c *checkpoint.Checkpoint, dt ir.DType) (*plan, error) {
	if c.SLTrain == nil {
		return nil, errors.New("not an SLTrain checkpoint (no SLTrain config); export it as HF")
	}
	if _, err := layers(c); err != nil {
		return nil, err
	}
	p := &plan{header: &safetensors.File{Metadata: map[string]string{"format": "pt", "peft": "sltrain"}}, dt: dt}
	for i := range c.Model.Tensors {
		t := &c.Model.Tensors[i]
		p.header.Tensors = append(p.header.Tensors, converted(t, dt))
		p.items = append(p.items, item{src: t})
	}
	return p, nil
}

// data produces item i's bytes.
func (p *plan) data(i int) ([]byte, error) {
	it := p.items[i]
	if it.layer != nil {
		w, err := it.layer.merge(p.scale)
		if err != nil {
			return nil, err
		}
		t := safetensors.FromFloat64s("", p.dt, []int{it.layer.out, it.layer.in}, w)
		return t.Data, nil
	}
	if !it.src.DType.IsFloat() {
		if h := p.header.Tensors[i].DType; h != it.src.DType {
			t, err := it.src.ConvertInt(h)
			return t.Data, err
		}
		return it.src.Data, nil
	}
	t, err := it.src.Convert(p.dt)
	if err != nil {
		return nil, err
	}
	return t.Data, nil
}

// file returns the planned tensors with their data, in memory.
func (p *plan) file() (*safetensors.File, error) {
	f := &safetensors.File{Metadata: p.header.Metadata, Tensors: make([]safetensors.Tensor, len(p.items))}
	for i := range p.items {
		b, err := p.data(i)
		if err != nil {
			return nil, err
		}
		f.Tensors[i] = p.header.Tensors[i]
		f.Tensors[i].Data = b
	}
	return f, nil
}

// write writes the plan as model.safetensors with the other files into dir.
func (p *plan) write(dir string, files []checkpoint.DirFile) error {
	files = append(files, checkpoint.DirFile{Name: ModelFile, Write: func(w io.Writer) error {
		return safetensors.EncodeFunc(w, p.header, p.data)
	}})
	return checkpoint.ReplaceDir(dir, files, replaceable)
}

// HFTensors returns the dense HF tensors HF would write (see HF), in memory.
func HFTensors(c *checkpoint.Checkpoint, dt ir.DType) (*safetensors.File, error) {
	if err := checkCheckpoint(c); err != nil {
		return nil, err
	}
	if err := checkDType(dt); err != nil {
		return nil, err
	}
	p, err := hfPlan(c, dt)
	if err != nil {
		return nil, err
	}
	return p.file()
}

// HF writes dir as a Hugging Face LLaMA model: config.json (HFConfig of the
// checkpoint's model config: transformers' LlamaConfig fields, torch_dtype
// dt) and model.safetensors with dense weights under HF's names. Every
// SLTrain layer is merged as W = B·(A·scale) + S (S: the sparse values
// scattered at sparse_index into [out, in]), accumulated in float64 and
// rounded once to dt; every other tensor is copied (floats converted to dt);
// sparse_index is not exported. The tensors must be exactly the state dict
// of LlamaForCausalLM for the config. dt is f32 or bf16 (f16 and f64 work
// too). The safetensors metadata has "format": "pt", which transformers
// requires. slc reads the config.json back (frontend reads
// max_position_embeddings where max_sequence_length is absent).
func HF(c *checkpoint.Checkpoint, dir string, dt ir.DType) error {
	if err := checkCheckpoint(c); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	if err := checkDType(dt); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	cfg, err := HFConfig(c.Config, dt)
	if err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	p, err := hfPlan(c, dt)
	if err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	if err := checkHFTensors(c.Config, p.header); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	if err := p.write(dir, []checkpoint.DirFile{{Name: ConfigFile, Write: checkpoint.WriteBytes(cfg)}}); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	return nil
}

// SLTrain writes dir as an SLTrain model: config.json, sltrain_config.json
// and model.safetensors with the factored tensors as trained (lora_A, lora_B,
// sparse_value in dt, sparse_index in the seed's int64 whatever its dtype in
// the checkpoint, and every other tensor, floats in dt).
func SLTrain(c *checkpoint.Checkpoint, dir string, dt ir.DType) error {
	if err := checkCheckpoint(c); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	if err := checkDType(dt); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	p, err := sltrainPlan(c, dt)
	if err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	sl, err := json.MarshalIndent(c.SLTrain, "", "  ")
	if err != nil {
		return fmt.Errorf("exporting %s: %s: %w", dir, SLTrainFile, err)
	}
	files := []checkpoint.DirFile{
		{Name: ConfigFile, Write: checkpoint.WriteBytes(c.Config)},
		{Name: SLTrainFile, Write: checkpoint.WriteBytes(append(sl, '\n'))},
	}
	if err := p.write(dir, files); err != nil {
		return fmt.Errorf("exporting %s: %w", dir, err)
	}
	return nil
}
