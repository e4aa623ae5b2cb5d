package spectrum

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/checkpoint"
	"gitee.com/gidean/conv-linn/export"
	"gitee.com/gidean/conv-linn/safetensors"
)

// Types are the seven projections of a LLaMA block, in the order the panels
// show them.
var Types = []string{"q", "k", "v", "o", "gate", "up", "down"}

// Model is the linear layers of one checkpoint or export, ready to analyze.
type Model struct {
	// Path is the directory read.
	Path string
	// Kind says what it is: "an slc checkpoint", "an SLTrain export" or "an
	// HF export".
	Kind string
	// Rank and Scale are the SLTrain config's r and lora_alpha / r; 0 for a
	// model without SLTrain layers.
	Rank  int
	Scale float64
	// Layers are sorted by block, then in the order of Types.
	Layers []Layer
}

// SLTrain reports whether any layer is factored.
func (m *Model) SLTrain() bool {
	for _, l := range m.Layers {
		if l.Factored() {
			return true
		}
	}
	return false
}

// Blocks returns the distinct block numbers of the layers, ascending.
func (m *Model) Blocks() []int {
	var bs []int
	for _, l := range m.Layers {
		if l.Block >= 0 && !slices.Contains(bs, l.Block) {
			bs = append(bs, l.Block)
		}
	}
	sort.Ints(bs)
	return bs
}

// Layer is one linear layer: SLTrain's factors W = B·A·scale + S (A, B, Value
// and Index set) or a dense weight W (Dense set).
type Layer struct {
	// Name is the module's name, "model.layers.1.self_attn.q_proj".
	Name string
	// Block is N of "layers.N." in the name, -1 without one.
	Block int
	// Type is the projection ("q", …, "down": the last part of the name
	// without "_proj").
	Type    string
	Out, In int
	// R is the rank of the factors, 0 for a dense layer.
	R                  int
	A, B, Value, Index *safetensors.Tensor
	Dense              *safetensors.Tensor
}

// Factored reports whether the layer is SLTrain's W = B·A·scale + S.
func (l *Layer) Factored() bool { return l.Dense == nil }

// Open reads a checkpoint directory of slc train, or an export of one
// (`slc export --format sltrain` or `--format hf`: config.json and
// model.safetensors, sltrain_config.json for SLTrain), and finds its linear
// layers: every SLTrain layer (lora_A, lora_B, sparse_value, sparse_index)
// and every dense 2-D "<module>.weight" whose module name contains "attn",
// "mlp" or "attention" (SLTrain's targets). Errors name the file.
func Open(dir string) (*Model, error) {
	st, err := os.Stat(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory (give a checkpoint or export directory)", dir)
	}
	m := &Model{Path: dir}
	var tensors *safetensors.File
	var sl map[string]any
	if _, err := os.Stat(filepath.Join(dir, checkpoint.StateFile)); err == nil {
		ck, err := checkpoint.Load(dir)
		if err != nil {
			return nil, err
		}
		m.Kind, tensors, sl = "an slc checkpoint", ck.Model, ck.SLTrain
	} else {
		model := filepath.Join(dir, checkpoint.ModelFile)
		if _, err := os.Stat(model); err != nil {
			return nil, fmt.Errorf("%s: neither an slc checkpoint (no %s) nor an export (no %s)", dir, checkpoint.StateFile, checkpoint.ModelFile)
		}
		if tensors, err = safetensors.Read(model); err != nil {
			return nil, fmt.Errorf("corrupt model file: %w", err)
		}
		m.Kind = "an HF export"
		slPath := filepath.Join(dir, checkpoint.SLTrainFile)
		if data, err := os.ReadFile(slPath); err == nil {
			if err := json.Unmarshal(data, &sl); err != nil || sl == nil {
				return nil, fmt.Errorf("%s: not a JSON object", slPath)
			}
			if _, err := checkpoint.Scale(sl); err != nil {
				return nil, fmt.Errorf("%s: %w", slPath, err)
			}
			m.Kind = "an SLTrain export"
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if err := m.findLayers(tensors, sl); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return m, nil
}

// The suffixes of an SLTrain layer's tensors (passes/sltrain_fuse.go).
const (
	suffixA     = ".lora_A"       // [r, in]
	suffixB     = ".lora_B"       // [out, r]
	suffixValue = ".sparse_value" // [nnz]
	suffixIndex = ".sparse_index" // [nnz] int, flat row-major index into [out, in]
	suffixDense = ".weight"
)

var blockNumber = regexp.MustCompile(`(?:^|\.)layers\.(\d+)\.`)

// isTarget reports whether a module is one of SLTrain's target linears.
func isTarget(module string) bool {
	for _, s := range []string{"attn", "mlp", "attention"} {
		if strings.Contains(module, s) {
			return true
		}
	}
	return false
}

// newLayer names a layer by its module.
func newLayer(module string) *Layer {
	l := &Layer{Name: module, Block: -1}
	if m := blockNumber.FindStringSubmatch(module); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			l.Block = n
		}
	}
	l.Type = strings.TrimSuffix(module[strings.LastIndex(module, ".")+1:], "_proj")
	return l
}

// findLayers collects and checks the model's linear layers.
func (m *Model) findLayers(f *safetensors.File, sl map[string]any) error {
	byModule := map[string]*Layer{}
	get := func(module string) *Layer {
		if byModule[module] == nil {
			byModule[module] = newLayer(module)
		}
		return byModule[module]
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		switch {
		case strings.HasSuffix(t.Name, suffixA):
			get(strings.TrimSuffix(t.Name, suffixA)).A = t
		case strings.HasSuffix(t.Name, suffixB):
			get(strings.TrimSuffix(t.Name, suffixB)).B = t
		case strings.HasSuffix(t.Name, suffixValue):
			get(strings.TrimSuffix(t.Name, suffixValue)).Value = t
		case strings.HasSuffix(t.Name, suffixIndex):
			get(strings.TrimSuffix(t.Name, suffixIndex)).Index = t
		case strings.HasSuffix(t.Name, suffixDense) && len(t.Shape) == 2 && t.DType.IsFloat() && isTarget(strings.TrimSuffix(t.Name, suffixDense)):
			get(strings.TrimSuffix(t.Name, suffixDense)).Dense = t
		}
	}
	if len(byModule) == 0 {
		return errors.New("no linear layer of attention or MLP in it (no lora_A/lora_B/sparse_value/sparse_index, no 2-D *attn*/*mlp*.weight)")
	}
	for _, l := range byModule {
		if l.A == nil && l.B == nil && l.Value == nil && l.Index == nil {
			continue
		}
		if sl == nil {
			return fmt.Errorf("layer %s has SLTrain factors but there is no SLTrain config (%s), so their scale is unknown", l.Name, checkpoint.SLTrainFile)
		}
		if m.Rank == 0 {
			var err error
			if m.Rank, err = checkpoint.Rank(sl); err != nil {
				return err
			}
			if m.Scale, err = checkpoint.Scale(sl); err != nil {
				return err
			}
		}
	}
	for _, l := range byModule {
		if err := l.check(m.Rank); err != nil {
			return fmt.Errorf("layer %s: %w", l.Name, err)
		}
		m.Layers = append(m.Layers, *l)
	}
	order := func(t string) int {
		if i := slices.Index(Types, t); i >= 0 {
			return i
		}
		return len(Types)
	}
	sort.Slice(m.Layers, func(i, j int) bool {
		a, b := &m.Layers[i], &m.Layers[j]
		if a.Block != b.Block {
			return a.Block < b.Block
		}
		if order(a.Type) != order(b.Type) {
			return order(a.Type) < order(b.Type)
		}
		return a.Name < b.Name
	})
	return nil
}

// check validates a layer's tensors: all four SLTrain tensors with
// consistent shapes, the config's rank and an in-range, repeat-free sparse
// support; or one dense weight.
func (l *Layer) check(rank int) error {
	if l.Dense != nil {
		if l.A != nil || l.B != nil || l.Value != nil || l.Index != nil {
			return errors.New("has both a dense weight and SLTrain factors")
		}
		l.Out, l.In = l.Dense.Shape[0], l.Dense.Shape[1]
		if l.Out < 1 || l.In < 1 {
			return fmt.Errorf("%s has shape %v", l.Dense.Name, l.Dense.Shape)
		}
		return nil
	}
	var err error
	l.In, l.Out, err = export.CheckFactors(l.Name, l.A, l.B, l.Value, l.Index, rank)
	l.R = rank
	return err
}
