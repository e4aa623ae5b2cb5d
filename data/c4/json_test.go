package c4

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestTextField(t *testing.T) {
	for _, tc := range []struct {
		line, want string
	}{
		{`{"text": "hello"}`, "hello"},
		{` { "url" : "u", "text":"a\nb" , "timestamp": "2019"} `, "a\nb"},
		{`{"text": "q\"b\\s\/\b\f\n\r\t"}`, "q\"b\\s/\b\f\n\r\t"},
		{`{"text": "\u00e9\u4e2d"}`, "é中"},
		{`{"text": "\ud83d\ude00!"}`, "😀!"},
		{`{"text": "x\ud800y"}`, "x\uFFFDy"},         // lone high surrogate
		{`{"text": "x\udc00y"}`, "x\uFFFDy"},         // lone low surrogate
		{`{"text": "\ud800\u0041"}`, "\uFFFDA"},      // high surrogate, then not a low one
		{"{\"text\": \"a\xff\xfeb\"}", "a\xff\xfeb"}, // invalid UTF-8 kept as it is
		{"{\"text\": \"\xe4\xb8\"}", "\xe4\xb8"},     // a cut UTF-8 sequence too
		{`{"t\u0065xt": "escaped key"}`, "escaped key"},
		{`{"text": "first", "text": "last"}`, "last"},
		{`{"Text": "no", "text": "yes"}`, "yes"},
		{`{"meta": {"text": "nested", "a": [1, {"text": "x"}, "]}"]}, "text": "top"}`, "top"},
		{`{"a": true, "b": null, "c": -1.5e3, "d": [], "e": {}, "text": ""}`, ""},
	} {
		got, err := textField([]byte(tc.line))
		if err != nil || got != tc.want {
			t.Errorf("textField(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
}

func TestTextFieldErrors(t *testing.T) {
	for _, tc := range []struct {
		line, want string
	}{
		{`{"url": "u"}`, `no "text" field`},
		{`{"Text": "x"}`, `no "text" field`},
		{`{"meta": {"text": "x"}}`, `no "text" field`},
		{`{"text": null}`, `field "text" is a JSON null, want a string`},
		{`{"text": 5}`, `field "text" is a JSON number, want a string`},
		{`{"text": ["a"]}`, `field "text" is a JSON array, want a string`},
		{`{"text": {"a": 1}}`, `field "text" is a JSON object, want a string`},
		{`{"text": true}`, `field "text" is a JSON boolean, want a string`},
		{`["text"]`, `want a JSON object with a "text" field, got a JSON array`},
		{`"text"`, `want a JSON object with a "text" field, got a JSON string`},
		{`{"text": "a"`, `not JSON (want one object per line): unexpected end of JSON input at byte 12`},
		{`{"text": "a"} x`, `not JSON (want one object per line): invalid character 'x' after top-level value at byte 15`},
		{"{\"text\": \"a\tb\"}", `not JSON (want one object per line): invalid character '\t' in string literal at byte 12`},
	} {
		got, err := textField([]byte(tc.line))
		if err == nil || err.Error() != tc.want {
			t.Errorf("textField(%q) = %q, %v; want error %q", tc.line, got, err, tc.want)
		}
	}
}

// On valid UTF-8, textField reads what encoding/json reads into a map (exact
// keys, the last of repeated keys).
func FuzzTextField(f *testing.F) {
	for _, s := range []string{
		`{"text": "hello"}`, `{"text": "a\u00e9\ud83d\ude00\ud800", "url": [1, {"text": 2}]}`,
		`{"text": 1}`, `{"a": "b"}`, `[]`, `{"text": "x", "text": "y"}`, `{"t\u0065xt": "\\\""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := textField(line)
		if !utf8.Valid(line) {
			return
		}
		var m map[string]json.RawMessage
		var want string
		werr := json.Unmarshal(line, &m)
		if werr == nil {
			raw, ok := m["text"]
			if !ok {
				werr = errNoText
			} else {
				werr = json.Unmarshal(raw, &want)
				if string(raw) == "null" {
					werr = errNoText // encoding/json leaves the string alone
				}
			}
		}
		if (err == nil) != (werr == nil) || got != want {
			t.Fatalf("textField(%q) = %q, %v; encoding/json: %q, %v", line, got, err, want, werr)
		}
	})
}

var errNoText = json.Unmarshal([]byte(`1`), new(bool))
