package checkpoint

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/safetensors"
	"gitee.com/gidean/conv-linn/version"
)

const tinyConfig = "{\n  \"hidden_size\": 4,\n  \"num_hidden_layers\": 1\n}\n"

// sample builds a small SLTrain checkpoint at update step.
func sample(step int64) *Checkpoint {
	f := float32(step)
	return &Checkpoint{
		Model: &safetensors.File{Tensors: []safetensors.Tensor{
			safetensors.FromFloat32s("model.embed_tokens.weight", ir.F32, []int{2, 2}, []float32{f, 2, 3, 4}),
			safetensors.FromFloat32s("model.layers.0.self_attn.q_proj.lora_B", ir.BF16, []int{2, 1}, []float32{0.1, f}),
			safetensors.FromInt64s("model.layers.0.self_attn.q_proj.sparse_index", ir.I64, []int{2}, []int64{0, 3}),
		}},
		Optimizer: &safetensors.File{Tensors: []safetensors.Tensor{
			safetensors.FromFloat32s("model.embed_tokens.weight.exp_avg", ir.F32, []int{2, 2}, []float32{f, 0, 0, 1}),
			safetensors.FromFloat32s("model.embed_tokens.weight.exp_avg_sq", ir.F32, []int{2, 2}, []float32{1, 0, 0, f}),
		}},
		State: TrainingState{
			Step: step, GlobalStep: 2 * step, TokensSeen: 512 * step, Epoch: 1, RowIndex: 7 * step, Seed: 1<<63 + 5, LR: 3e-3,
			ElapsedSeconds: 1.5, Args: map[string]any{"lr": 3e-3, "peft": "sltrain", "rank": 4.0, "tags": []any{"a"}},
		},
		Config:  []byte(tinyConfig),
		SLTrain: map[string]any{"peft": "sltrain", "r": 4.0, "lora_alpha": 32.0, "sp_ratio": 0.03, "target_modules": []any{"attn", "mlp"}},
	}
}

func sameFile(t *testing.T, what string, got, want *safetensors.File) {
	t.Helper()
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%s: %v, want %v", what, got.Names(), want.Names())
	}
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || g.DType != w.DType || !ir.ShapeEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: tensor %d is %s %v%v, want %s %v%v", what, i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
		}
	}
}

// sameCheckpoint compares a loaded checkpoint with the one saved.
func sameCheckpoint(t *testing.T, got, want *Checkpoint) {
	t.Helper()
	sameFile(t, "model", got.Model, want.Model)
	sameFile(t, "optimizer", got.Optimizer, want.Optimizer)
	ws := want.State
	if ws.Version == "" {
		ws.Version = version.Version
	}
	ws.Format = formatOf(&ws)
	gs := got.State
	if len(gs.Files) == 0 || len(gs.StateSHA256) != 64 || got.Unverified {
		t.Errorf("loaded checkpoint has no checksums: %v, %q", gs.Files, gs.StateSHA256)
	}
	gs.Files, gs.StateSHA256, ws.Files, ws.StateSHA256 = nil, "", nil, ""
	if !reflect.DeepEqual(gs, ws) {
		t.Errorf("state %+v, want %+v", gs, ws)
	}
	if !bytes.Equal(got.Config, want.Config) {
		t.Errorf("config %q, want %q", got.Config, want.Config)
	}
	if !reflect.DeepEqual(got.SLTrain, want.SLTrain) {
		t.Errorf("sltrain %v, want %v", got.SLTrain, want.SLTrain)
	}
}

// entries lists a directory's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveLoad(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "ckpt")
	for _, step := range []int64{1, 2} {
		c := sample(step)
		if err := Save(dir, c); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		sameCheckpoint(t, got, c)
		if s, _ := got.Scale(); s != 8 {
			t.Errorf("scale %v, want 8", s)
		}
	}
	if got := entries(t, parent); !reflect.DeepEqual(got, []string{"ckpt"}) {
		t.Errorf("parent holds %v after two saves, want only ckpt", got)
	}
	want := []string{ConfigFile, ModelFile, OptimizerFile, SLTrainFile, StateFile}
	if got := entries(t, dir); !reflect.DeepEqual(got, want) {
		t.Errorf("checkpoint holds %v, want %v", got, want)
	}
	// The safetensors files carry HF's "format" metadata.
	if f, err := safetensors.Read(filepath.Join(dir, ModelFile)); err != nil || f.Metadata["format"] != "pt" {
		t.Errorf("model.safetensors metadata %v (%v)", f.Metadata, err)
	}
	// The state file is readable JSON with the seed's field names.
	data, _ := os.ReadFile(filepath.Join(dir, StateFile))
	for _, key := range []string{`"update_step": 2`, `"tokens_seen": 1024`, `"data_index": 14`, `"seed": 9223372036854775813`, `"slc_version"`} {
		if !bytes.Contains(data, []byte(key)) {
			t.Errorf("%s lacks %s:\n%s", StateFile, key, data)
		}
	}

	// A full-rank checkpoint without optimizer state: no sltrain_config.json,
	// an empty optimizer file.
	c := sample(3)
	c.SLTrain, c.Optimizer = nil, nil
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.SLTrain != nil || len(got.Optimizer.Tensors) != 0 {
		t.Errorf("full-rank checkpoint loaded with SLTrain %v and %d optimizer tensors", got.SLTrain, len(got.Optimizer.Tensors))
	}
	if _, err := os.Stat(filepath.Join(dir, SLTrainFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left over from the previous checkpoint (%v)", SLTrainFile, err)
	}
	if _, err := got.Scale(); err == nil {
		t.Error("Scale of a full-rank checkpoint succeeded")
	}
}

// saveSteps are the points where replaceDir's hook runs, in order.
var saveSteps = []string{"mkdir", "write model.safetensors", "write optimizer.safetensors", "write config.json",
	"write sltrain_config.json", "write training_state.json", "set aside", "rename", "sync", "cleanup"}

// TestCrash kills Save (without any cleanup) at every step, and checks that
// Load then finds the previous or the new checkpoint complete, and that the
// next Save recovers and leaves nothing behind.
func TestCrash(t *testing.T) {
	for _, first := range []bool{false, true} {
		for i, at := range saveSteps {
			name := at
			if first {
				name = "first save/" + at
			}
			t.Run(name, func(t *testing.T) {
				parent := t.TempDir()
				dir := filepath.Join(parent, "ckpt")
				var old *Checkpoint
				if !first {
					old = sample(1)
					if err := Save(dir, old); err != nil {
						t.Fatal(err)
					}
				}
				c := sample(2)
				err := save(dir, c, func(s string) error {
					if s == at {
						return errCrash
					}
					return nil
				})
				if !errors.Is(err, errCrash) {
					t.Fatalf("save = %v, want the simulated crash", err)
				}
				// The new checkpoint is complete once its state file is in;
				// it replaces an old one at the rename.
				want := old
				if i >= slicesIndex(saveSteps, "rename") || first && i > slicesIndex(saveSteps, "write training_state.json") {
					want = c
				}
				got, err := Load(dir)
				switch {
				case want == nil && err == nil:
					t.Fatalf("Load found a checkpoint %v after a first save crashed before its commit", got)
				case want == nil && !errors.Is(err, os.ErrNotExist):
					t.Fatalf("Load = %v, want a missing directory", err)
				case want != nil && err != nil:
					t.Fatalf("Load after the crash: %v", err)
				case want != nil:
					sameCheckpoint(t, got, want)
				}

				// The next save recovers and cleans up.
				next := sample(3)
				if err := Save(dir, next); err != nil {
					t.Fatal(err)
				}
				if got, err = Load(dir); err != nil {
					t.Fatal(err)
				}
				sameCheckpoint(t, got, next)
				if es := entries(t, parent); !reflect.DeepEqual(es, []string{"ckpt"}) {
					t.Errorf("parent holds %v, want only ckpt", es)
				}
			})
		}
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestSaveErrors makes every step fail (a full disk, an unwritable parent)
// and checks that Save reports it and the previous checkpoint stays as it was.
func TestSaveErrors(t *testing.T) {
	diskFull := errors.New("no space left on device")
	for i, at := range saveSteps {
		t.Run(at, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "ckpt")
			old := sample(1)
			if err := Save(dir, old); err != nil {
				t.Fatal(err)
			}
			err := save(dir, sample(2), func(s string) error {
				if s == at {
					return diskFull
				}
				return nil
			})
			if !errors.Is(err, diskFull) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("save = %v, want the injected error naming %s", err, dir)
			}
			got, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if i <= slicesIndex(saveSteps, "rename") {
				sameCheckpoint(t, got, old)
				if es := entries(t, parent); !reflect.DeepEqual(es, []string{"ckpt"}) {
					t.Errorf("parent holds %v after a failed save, want only ckpt", es)
				}
			} else { // failed after the commit: the new one is in place
				sameCheckpoint(t, got, sample(2))
			}
		})
	}
}

// TestUnwritableParent uses real permissions (not as root, who ignores them).
func TestUnwritableParent(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; TestSaveErrors covers the failure paths")
	}
	parent := t.TempDir()
	dir := filepath.Join(parent, "ckpt")
	old := sample(1)
	if err := Save(dir, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(parent, 0o755)
	err := Save(dir, sample(2))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Save into a read-only parent = %v, want an error naming %s", err, dir)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, got, old)
}

func TestSaveRefuses(t *testing.T) {
	parent := t.TempDir()
	foreign := filepath.Join(parent, "home")
	os.Mkdir(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
	file := filepath.Join(parent, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	real := filepath.Join(parent, "real")
	if err := Save(real, sample(1)); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(parent, "link")
	os.Symlink(real, link)

	nan := sample(1)
	nan.State.LR = math.NaN()
	noModel := sample(1)
	noModel.Model = nil
	badConfig := sample(1)
	badConfig.Config = []byte("{")
	badSL := sample(1)
	badSL.SLTrain["r"] = 0.5
	negative := sample(1)
	negative.State.TokensSeen = -1
	badTensor := sample(1)
	badTensor.Model.Tensors[0].Data = nil

	for _, c := range []struct {
		name string
		dir  string
		c    *Checkpoint
		want string
	}{
		{"foreign directory", foreign, sample(1), `"notes.txt"`},
		{"a file", file, sample(1), "not a directory"},
		{"a symlink", link, sample(1), "symbolic link"},
		{"through a file", filepath.Join(file, "ckpt"), sample(1), "not a directory"},
		{"nil", filepath.Join(parent, "x"), nil, "no checkpoint"},
		{"no model", filepath.Join(parent, "x"), noModel, "no model tensors"},
		{"bad config", filepath.Join(parent, "x"), badConfig, "not valid JSON"},
		{"bad sltrain", filepath.Join(parent, "x"), badSL, `"r"`},
		{"nan lr", filepath.Join(parent, "x"), nan, `"lr"`},
		{"negative", filepath.Join(parent, "x"), negative, `"tokens_seen"`},
		{"bad tensor", filepath.Join(parent, "x"), badTensor, "model.embed_tokens.weight"},
		{"dot", ".", sample(1), "not a directory path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Save(c.dir, c.c)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Save = %v, want an error containing %q", err, c.want)
			}
		})
	}
	if data, err := os.ReadFile(filepath.Join(foreign, "notes.txt")); string(data) != "mine" {
		t.Errorf("the foreign directory's file is now %q (%v)", data, err)
	}
	if es := entries(t, parent); !reflect.DeepEqual(es, []string{"file", "home", "link", "real"}) {
		t.Errorf("parent holds %v after refused saves", es)
	}
	if _, err := Load(link); err != nil { // reading through a symlink is fine
		t.Errorf("Load through a symlink: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	parent := t.TempDir()
	good := filepath.Join(parent, "good")
	if err := Save(good, sample(1)); err != nil {
		t.Fatal(err)
	}
	// variant copies the good checkpoint and applies a change to the copy.
	variant := func(name string, change func(dir string)) string {
		dir := filepath.Join(parent, name)
		os.Mkdir(dir, 0o755)
		for _, f := range entries(t, good) {
			data, _ := os.ReadFile(filepath.Join(good, f))
			os.WriteFile(filepath.Join(dir, f), data, 0o644)
		}
		unseal(t, dir) // as slc wrote it before checksums: the parsers see the change
		change(dir)
		return dir
	}
	write := func(file, s string) func(string) {
		return func(dir string) { os.WriteFile(filepath.Join(dir, file), []byte(s), 0o644) }
	}
	remove := func(file string) func(string) {
		return func(dir string) { os.Remove(filepath.Join(dir, file)) }
	}
	foreign := filepath.Join(parent, "foreign")
	os.Mkdir(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "model.safetensors"), nil, 0o644)
	plain := filepath.Join(parent, "plain")
	os.WriteFile(plain, nil, 0o644)

	for _, c := range []struct {
		name string
		dir  string
		want []string
	}{
		{"missing", filepath.Join(parent, "nope"), []string{"nope", "no such file"}},
		{"a file", plain, []string{"plain", "not a directory"}},
		{"foreign", foreign, []string{"foreign", "not an slc checkpoint: no training_state.json"}},
		{"no model", variant("nomodel", remove(ModelFile)), []string{"model.safetensors", "missing"}},
		{"no optimizer", variant("noopt", remove(OptimizerFile)), []string{"optimizer.safetensors", "missing"}},
		{"no config", variant("nocfg", remove(ConfigFile)), []string{"config.json", "missing"}},
		{"corrupt model", variant("corrupt", func(dir string) {
			p := filepath.Join(dir, ModelFile)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-3], 0o644)
		}), []string{"corrupt", "model.safetensors", "data_offsets"}},
		{"garbage model", variant("garbage", write(ModelFile, "hello")), []string{"model.safetensors", "too short"}},
		{"state type", variant("statetype", write(StateFile, `{"update_step": "ten"}`)), []string{StateFile, `"update_step"`}},
		{"state json", variant("statejson", write(StateFile, `{"update_step": 1`)), []string{StateFile, "not valid JSON"}},
		{"state negative", variant("stateneg", write(StateFile, `{"data_index": -4}`)), []string{StateFile, `"data_index"`}},
		{"state newer", variant("statenew", write(StateFile, `{"format_version": 99, "slc_version": "9.0"}`)), []string{StateFile, "newer", "9.0"}},
		{"config json", variant("cfgjson", write(ConfigFile, `{"a":`)), []string{ConfigFile, "not valid JSON"}},
		{"sltrain r", variant("slr", write(SLTrainFile, `{"r": "four", "lora_alpha": 32}`)), []string{SLTrainFile, `"r"`}},
		{"sltrain alpha", variant("sla", write(SLTrainFile, `{"r": 4, "lora_alpha": -1}`)), []string{SLTrainFile, `"lora_alpha"`}},
		{"sltrain null", variant("sln", write(SLTrainFile, `null`)), []string{SLTrainFile, "null"}},
		{"sltrain array", variant("slarr", write(SLTrainFile, `[1]`)), []string{SLTrainFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.dir)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadIgnoresLeftovers(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "ckpt")
	c := sample(1)
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
	// A torn temporary directory of a killed save, and a stale set-aside one.
	for _, d := range []string{".ckpt.tmp-123", ".ckpt.old-456"} {
		os.MkdirAll(filepath.Join(parent, d), 0o755)
		os.WriteFile(filepath.Join(parent, d, ModelFile), []byte("torn"), 0o644)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, got, c)
	if err := Save(dir, sample(2)); err != nil {
		t.Fatal(err)
	}
	if es := entries(t, parent); !reflect.DeepEqual(es, []string{"ckpt"}) {
		t.Errorf("parent holds %v after a save, want only ckpt", es)
	}
	// Without dir, an incomplete temporary directory alone is not a checkpoint.
	os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(parent, ".ckpt.tmp-789"), 0o755)
	if _, err := Load(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load with only a torn temporary directory = %v, want not-exist", err)
	}
}

func TestScale(t *testing.T) {
	for _, c := range []struct {
		sl   map[string]any
		want float64
		err  string
	}{
		{map[string]any{"r": 128.0, "lora_alpha": 32.0}, 0.25, ""},
		{map[string]any{"r": 4, "lora_alpha": 8}, 2, ""},
		{map[string]any{"r": int64(2), "lora_alpha": float32(1)}, 0.5, ""},
		{nil, 0, "full-rank"},
		{map[string]any{"lora_alpha": 32.0}, 0, `"r"`},
		{map[string]any{"r": 0.0, "lora_alpha": 32.0}, 0, `"r"`},
		{map[string]any{"r": 4.0}, 0, `"lora_alpha"`},
		{map[string]any{"r": 4.0, "lora_alpha": math.Inf(1)}, 0, `"lora_alpha"`},
		{map[string]any{"r": 4.0, "lora_alpha": "32"}, 0, `"lora_alpha"`},
	} {
		got, err := Scale(c.sl)
		if c.err == "" && (err != nil || got != c.want) || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Scale(%v) = %v, %v; want %v, %q", c.sl, got, err, c.want, c.err)
		}
	}
}
