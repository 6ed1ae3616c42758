package ingest

import (
	"bytes"
	"encoding/json"

	"github.com/hookgate/hookgate/persist"
)

// The ingest fast path: encoding/json scans a body twice (once to check
// it, once to decode) and builds a map per event. For a body validJSON
// (json.Valid's answer, faster) has already accepted, these functions find the spans of the values in
// one light pass; values are never decoded except the short strings
// type, id and timestamp. They rely on that validity: never call them on
// unchecked input.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the string whose quote is at i.
// The string is valid JSON: its end is the first quote not escaped by an
// odd run of backslashes, found with bytes.IndexByte (vectorised) rather
// than byte by byte, which is where a batch's decoding spent its time.
func skipString(b []byte, i int) int {
	for i++; i < len(b); {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		q := i + j
		// The run of backslashes before the quote cannot reach back past
		// i: b[i-1] is a quote.
		k := q
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
	return len(b)
}

// skipValue returns the index after the value that starts at i.
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// splitArray returns the elements of a valid JSON array, as written, but
// at most limit of them: a caller that refuses more than max elements
// asks for max+1, so a hostile array of a million tiny elements costs no
// more than a legitimate one.
func splitArray(b []byte, limit int) []json.RawMessage {
	var out []json.RawMessage
	i := skipSpace(b, 0) + 1 // past '['
	for len(out) < limit {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] == ']' {
			return out
		}
		end := skipValue(b, i)
		out = append(out, json.RawMessage(b[i:end]))
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
	return out
}

// decodeValidEvent is decodeEvent for valid JSON.
func decodeValidEvent(raw []byte, index int) (persist.Ingest, *ingestError) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		// Not an object: let encoding/json say so.
		return decodeEvent(raw, index)
	}
	var (
		m    incoming
		seen uint8 // the fields met so far, one bit each
	)
	for i = skipSpace(raw, i+1); i < len(raw) && raw[i] != '}'; {
		kEnd := skipString(raw, i)
		key := raw[i+1 : kEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			// An escaped key: decode it to compare it exactly.
			var k string
			_ = json.Unmarshal(raw[i:kEnd], &k)
			key = []byte(k)
		}
		v := skipSpace(raw, skipSpace(raw, kEnd)+1) // past ':'
		vEnd := skipValue(raw, v)
		val := raw[v:vEnd]
		var (
			err error
			bit uint8
		)
		switch string(key) {
		case "type":
			bit, err = 1, scanString(val, &m.Type)
		case "id":
			bit, err = 2, scanString(val, &m.ID)
		case "timestamp":
			bit, err = 4, scanString(val, &m.Timestamp)
		case "data":
			bit, m.Data = 8, json.RawMessage(val)
		default:
			return persist.Ingest{}, badRequest(index, "unknown field %q: an event has type, data, id and timestamp", string(key))
		}
		if seen&bit != 0 {
			// JSON leaves a repeated name to the reader; taking the last
			// (as encoding/json would) could store what the sender's
			// own checks did not see.
			return persist.Ingest{}, badRequest(index, "field %q appears twice", string(key))
		}
		seen |= bit
		if err != nil {
			return persist.Ingest{}, badRequest(index, "malformed event: %q must be a string", string(key))
		}
		i = skipSpace(raw, vEnd)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return finishEvent(m, index)
}

// errNotString marks a value that should have been a string.
var errNotString = json.Unmarshal([]byte(`1`), new(string))

// scanString reads a valid JSON string value; null leaves dst nil.
func scanString(val []byte, dst **string) error {
	switch {
	case string(val) == "null":
		return nil
	case len(val) < 2 || val[0] != '"':
		return errNotString
	case bytes.IndexByte(val, '\\') < 0:
		str := string(val[1 : len(val)-1])
		*dst = &str
		return nil
	}
	return decodeString(val, dst)
}
