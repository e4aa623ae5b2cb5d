package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/fbs"
)

// sourceKind is what a model file holds, judged by its content.
type sourceKind int

const (
	kindConfig   sourceKind = iota + 1 // a HF/SLTrain LLaMA config
	kindText                           // slc IR text (JSON with "format")
	kindBinary                         // slc IR binary (FlatBuffers, identifier "SLIR")
	kindArtifact                       // a compiled .slc artifact (written only)
	kindONNX                           // an ONNX ModelProto
)

func (k sourceKind) String() string {
	switch k {
	case kindConfig:
		return "LLaMA config"
	case kindText:
		return "IR text"
	case kindBinary:
		return "IR binary"
	case kindArtifact:
		return "artifact"
	case kindONNX:
		return "ONNX model"
	}
	return "unknown"
}

// binaryIdent is the FlatBuffers file identifier of binary IR.
const binaryIdent = fbs.FileIdentifier

// hasBinaryIdent reports whether data carries the binary IR identifier where a
// size-prefixed FlatBuffer has it (bytes 8..12, what ir.MarshalBinary writes) or
// where a plain one does (bytes 4..8). Either way ir.ParseBinary judges the rest.
func hasBinaryIdent(data []byte) bool {
	return (len(data) >= 12 && string(data[8:12]) == binaryIdent) ||
		(len(data) >= 8 && string(data[4:8]) == binaryIdent)
}

// source is a model file read into memory and sniffed.
type source struct {
	path string
	kind sourceKind
	data []byte
}

// readSource reads path and decides what it holds. Errors start with the path.
func readSource(path string) (*source, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	kind, err := sniff(path, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &source{path: path, kind: kind, data: data}, nil
}

// readFile reads a whole file, with short errors: "path: no such file".
func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, not a file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	return data, nil
}

// fileError words an os error as "path: reason".
func fileError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: no such file", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied", path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// sniff tells a LLaMA config, IR text, IR binary and an ONNX model apart by content. The
// extension only sharpens the message when the content is not what it promises.
func sniff(path string, data []byte) (sourceKind, error) {
	if hasBinaryIdent(data) {
		return kindBinary, nil
	}
	ext := strings.ToLower(filepath.Ext(path))
	if len(data) > 0 && data[0] == 0x08 { // ONNX: protobuf, field 1 (ir_version) first
		return kindONNX, nil
	}
	if trimmed := bytes.TrimSpace(data); ext == ".onnx" && (len(trimmed) == 0 || trimmed[0] != '{') {
		if len(data) == 0 {
			return 0, errors.New("empty file")
		}
		return 0, fmt.Errorf("not an ONNX model: a ModelProto starts with its ir_version field (byte 0x08), this file with 0x%02x", data[0])
	}
	if ext == ".slir" {
		return 0, fmt.Errorf("not binary slc IR: no %q file identifier", binaryIdent)
	}
	body := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if len(body) == 0 {
		return 0, errors.New("empty file")
	}
	if body[0] != '{' {
		return 0, errors.New("not a model: want a LLaMA config or slc IR text (a JSON object), or binary slc IR")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off := se.Offset + int64(bytes.IndexByte(data, '{')) // body starts at the first '{'
			line, col := ir.LineCol(data, off)
			return 0, fmt.Errorf("line %d, column %d: malformed JSON: %v", line, col, err)
		}
		return 0, fmt.Errorf("malformed JSON: %v", err)
	}
	if _, ok := top["format"]; ok {
		return kindText, nil
	}
	_, hasType := top["model_type"]
	_, hasSize := top["hidden_size"]
	if hasType || hasSize {
		return kindConfig, nil
	}
	return 0, fmt.Errorf("not a model: a LLaMA config has \"model_type\" and \"hidden_size\", slc IR text has \"format\": %q", ir.TextFormat)
}

// importONNX imports an ONNX model as a forward graph, its symbolic input
// dimensions bound by dims (--dim), the initializers freeze matches kept
// fixed (--freeze). Errors start with the path.
func importONNX(src *source, dims map[string]int, freeze []string) (*ir.Module, error) {
	m, err := onnx.Import(src.data, onnx.Options{Dims: dims, Freeze: freeze})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.path, err)
	}
	return m, nil
}

// parseIR reads IR text or binary and verifies it. Errors start with the path.
func parseIR(src *source) (*ir.Module, error) {
	var m *ir.Module
	var err error
	switch src.kind {
	case kindText:
		m, err = ir.ParseText(src.data)
	case kindBinary:
		m, err = ir.ParseBinary(src.data)
	default:
		article := "a"
		if k := src.kind.String(); k != "" && strings.ContainsRune("AEIOU", rune(k[0])) {
			article = "an"
		}
		return nil, fmt.Errorf("%s: is %s %s, not slc IR (compile it with 'slc compile %s')", src.path, article, src.kind, src.path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.path, err)
	}
	if err := m.Verify(); err != nil {
		return nil, fmt.Errorf("%s: %w", src.path, err)
	}
	return m, nil
}
