package bench

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/driver"
	"gitee.com/gidean/conv-linn/ir"
)

// ArtifactSettings are an artifact's settings under the names of the flags
// that would contradict them.
func ArtifactSettings(mod *ir.Module, art *artifact.Artifact) map[string]string {
	prec, _ := driver.ModulePrecision(mod.Meta)
	have := map[string]string{"peft": "full", "cpu": art.Target.CPU, "dtype": prec.String()}
	if g := mod.Graph("train_step"); g != nil {
		if ids := g.Input("input_ids"); ids != nil && ids.Type.Rank() == 2 {
			have["batch-size"], have["max-length"] = strconv.Itoa(ids.Type.Shape[0]), strconv.Itoa(ids.Type.Shape[1])
		}
	}
	if IsSLTrain(mod) {
		for flag, key := range map[string]string{"peft": "peft", "rank": "rank", "sp-ratio": "sp_ratio", "lora-alpha": "lora_alpha", "target-modules": "target_modules"} {
			have[flag] = mod.Meta[key]
		}
	}
	return have
}

// SameSetting compares a flag's value with an artifact's recorded one.
func SameSetting(flag, have string, v any) bool {
	switch x := v.(type) {
	case float64:
		h, err := strconv.ParseFloat(have, 64)
		return err == nil && h == x
	case int:
		return have == strconv.Itoa(x)
	}
	s := fmt.Sprint(v)
	if flag == "dtype" {
		d, _ := driver.ParsePrecision(s)
		return d.String() == have
	}
	if flag == "target-modules" { // a set: the order does not matter
		x, y := splitList(s), splitList(have)
		sort.Strings(x)
		sort.Strings(y)
		return strings.Join(x, ",") == strings.Join(y, ",")
	}
	return s == have
}

func splitList(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// IsSLTrain reports whether the module was fused by sltrain-fuse.
func IsSLTrain(m *ir.Module) bool { return m.Meta["peft"] == "sltrain" }

// MetaLabel describes a module's SLTrain settings from its metadata.
func MetaLabel(meta map[string]string) string {
	if meta["peft"] != "sltrain" {
		return "full-rank"
	}
	return fmt.Sprintf("SLTrain r %s, δ %s, α %s", meta["rank"], meta["sp_ratio"], meta["lora_alpha"])
}

// VocabSize reads the vocabulary from the embedding's shape.
func VocabSize(m *ir.Module) int {
	for _, g := range m.Graphs {
		if in := g.Input("model.embed_tokens.weight"); in != nil {
			return in.Type.Shape[0]
		}
	}
	return 2
}
