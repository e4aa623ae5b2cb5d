package driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/frontend/onnx"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/fbs"
)

// Kind is what a model file holds, judged by its content.
type Kind int

const (
	KindConfig   Kind = iota + 1 // a HF/SLTrain LLaMA config
	KindText                     // slc IR text (JSON with "format")
	KindBinary                   // slc IR binary (FlatBuffers, identifier "SLIR")
	KindArtifact                 // a compiled .slc artifact (written only)
	KindONNX                     // an ONNX ModelProto
)

func (k Kind) String() string {
	switch k {
	case KindConfig:
		return "LLaMA config"
	case KindText:
		return "IR text"
	case KindBinary:
		return "IR binary"
	case KindArtifact:
		return "artifact"
	case KindONNX:
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

// Source is a model file read into memory and sniffed.
type Source struct {
	Path string
	Kind Kind
	Data []byte
}

// ReadSource reads path and decides what it holds. Errors start with the path.
func ReadSource(path string) (*Source, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	kind, err := Sniff(path, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Source{Path: path, Kind: kind, Data: data}, nil
}

// ReadFile reads a whole file, with short errors: "path: no such file".
func ReadFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, FileError(path, err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory, not a file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, FileError(path, err)
	}
	return data, nil
}

// FileError words an os error as "path: reason".
func FileError(path string, err error) error {
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

// Sniff tells a LLaMA config, IR text, IR binary and an ONNX model apart by content. The
// extension only sharpens the message when the content is not what it promises.
func Sniff(path string, data []byte) (Kind, error) {
	if hasBinaryIdent(data) {
		return KindBinary, nil
	}
	ext := strings.ToLower(filepath.Ext(path))
	if len(data) > 0 && data[0] == 0x08 { // ONNX: protobuf, field 1 (ir_version) first
		return KindONNX, nil
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
		return KindText, nil
	}
	_, hasType := top["model_type"]
	_, hasSize := top["hidden_size"]
	if hasType || hasSize {
		return KindConfig, nil
	}
	return 0, fmt.Errorf("not a model: a LLaMA config has \"model_type\" and \"hidden_size\", slc IR text has \"format\": %q", ir.TextFormat)
}

// ImportONNX imports an ONNX model as a forward graph, its symbolic input
// dimensions bound by dims (--dim), the initializers freeze matches kept
// fixed (--freeze). Errors start with the path.
func ImportONNX(src *Source, dims map[string]int, freeze []string) (*ir.Module, error) {
	m, err := onnx.Import(src.Data, onnx.Options{Dims: dims, Freeze: freeze})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	return m, nil
}

// ParseIR reads IR text or binary and verifies it. Errors start with the path.
func ParseIR(src *Source) (*ir.Module, error) {
	var m *ir.Module
	var err error
	switch src.Kind {
	case KindText:
		m, err = ir.ParseText(src.Data)
	case KindBinary:
		m, err = ir.ParseBinary(src.Data)
	default:
		article := "a"
		if k := src.Kind.String(); k != "" && strings.ContainsRune("AEIOU", rune(k[0])) {
			article = "an"
		}
		return nil, fmt.Errorf("%s: is %s %s, not slc IR (compile it with 'slc compile %s')", src.Path, article, src.Kind, src.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	if err := m.Verify(); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	return m, nil
}

// IsArtifact tells a .slc artifact by its extension or its FlatBuffers
// identifier.
func IsArtifact(path string) bool {
	if strings.EqualFold(filepath.Ext(path), ".slc") {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 12)
	n, _ := f.Read(head)
	head = head[:n]
	return (len(head) >= 12 && string(head[8:12]) == artifact.FileIdentifier) || (len(head) >= 8 && string(head[4:8]) == artifact.FileIdentifier)
}

// OutputFormat says how a file is written, from its extension.
func OutputFormat(path string) (Kind, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		return KindText, nil
	case ".slir":
		return KindBinary, nil
	case ".slc":
		return KindArtifact, nil
	case "":
		return 0, fmt.Errorf("no extension (want .json for IR text, .slir for binary IR or .slc for a compiled artifact)")
	default:
		return 0, fmt.Errorf("unknown extension %q (want .json for IR text, .slir for binary IR or .slc for a compiled artifact)", ext)
	}
}

// UnwrapPathErr is err without its *fs.PathError wrapping (the caller
// names the path itself).
func UnwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
