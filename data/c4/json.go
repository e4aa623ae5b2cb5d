package c4

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// textField returns the string value of the top-level key "text" of the JSON
// object in line. Unlike encoding/json it keeps the bytes of the string as
// they are, invalid UTF-8 included (encoding/json would turn them into
// U+FFFD), and it matches the key exactly (encoding/json also accepts "Text").
// A repeated key keeps its last value, as Python's json module does. Escapes
// are decoded; a lone UTF-16 surrogate (\ud800 without its pair) becomes
// U+FFFD. The error does not name the file or the line; the caller adds them.
func textField(line []byte) (string, error) {
	if !json.Valid(line) {
		var raw json.RawMessage
		err := json.Unmarshal(line, &raw)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return "", fmt.Errorf("not JSON (want one object per line): %v at byte %d", se, se.Offset)
		}
		return "", fmt.Errorf("not JSON (want one object per line): %v", err)
	}
	// The line is valid JSON, so the walk below needs no error checks of its
	// own: every index it computes stays inside line.
	i := skipSpace(line, 0)
	if line[i] != '{' {
		return "", fmt.Errorf(`want a JSON object with a "text" field, got a JSON %s`, kindOf(line[i]))
	}
	var (
		text  string
		found bool
	)
	i = skipSpace(line, i+1)
	for line[i] != '}' {
		end := stringEnd(line, i)
		isText := keyIsText(line[i:end])
		i = skipSpace(line, end) // at ':'
		i = skipSpace(line, i+1) // at the value
		end = valueEnd(line, i)
		if isText {
			if line[i] != '"' {
				return "", fmt.Errorf(`field "text" is a JSON %s, want a string`, kindOf(line[i]))
			}
			text, found = decodeString(line[i:end]), true
		}
		i = skipSpace(line, end)
		if line[i] == ',' {
			i = skipSpace(line, i+1)
		}
	}
	if !found {
		return "", errors.New(`no "text" field`)
	}
	return text, nil
}

// kindOf names the JSON value that starts with c, for error messages.
func kindOf(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the closing quote of the string that
// starts at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	for j := i; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
	}
	return len(b)
}

// keyIsText reports whether the quoted key raw is "text", escapes decoded.
func keyIsText(raw []byte) bool {
	if string(raw) == `"text"` {
		return true
	}
	return bytes.IndexByte(raw, '\\') >= 0 && decodeString(raw) == "text"
}

// decodeString decodes the quoted JSON string raw (quotes included), keeping
// bytes that are not escapes as they are.
func decodeString(raw []byte) string {
	s := raw[1 : len(raw)-1]
	k := bytes.IndexByte(s, '\\')
	if k < 0 {
		return string(s)
	}
	out := make([]byte, 0, len(s))
	for k >= 0 {
		out = append(out, s[:k]...)
		c := s[k+1]
		s = s[k+2:]
		switch c {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hex4(s))
			s = s[4:]
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
					r2 = utf16.DecodeRune(r, rune(hex4(s[2:])))
				}
				if r2 != utf8.RuneError {
					s = s[6:]
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, c)
		}
		k = bytes.IndexByte(s, '\\')
	}
	return string(append(out, s...))
}

// hex4 reads the four hex digits of a \u escape (valid: the line passed
// json.Valid).
func hex4(b []byte) uint32 {
	var v uint32
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint32(c - '0')
		case c >= 'a' && c <= 'f':
			v |= uint32(c - 'a' + 10)
		default:
			v |= uint32(c - 'A' + 10)
		}
	}
	return v
}
