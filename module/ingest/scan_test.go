package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeFastMatchesReference checks that, for every valid JSON input,
// the fast path decodes exactly what encoding/json's path does: the same
// answer status and code, or the same event byte for byte. The seeds run
// in every `go test`; `go test -fuzz FuzzDecode ./module` explores more.
func FuzzDecodeFastMatchesReference(f *testing.F) {
	for _, s := range []string{
		`{"type":"task.finished","data":{"a":1}}`,
		` { "type" : "a" , "data" : [1, {"x": "}"}, "\"]"] , "id":"x-1", "timestamp":"2026-11-23T10:00:00Z" } `,
		`{"type":"a","data":null}`,
		`{"type":"a","data":"str with \" quote and \\ slash"}`,
		`{"type":"a","data":1,"Data":2}`,
		`{"Type":"a","data":1}`,
		`{"type":"a","data":1,"type":"b"}`,
		`{"type":1,"data":1}`,
		`{"type":null,"data":1}`,
		`{"type":"a"}`,
		`{"data":1}`,
		`{"type":"a\u002eb","data":1}`,
		`{"typ\u0065":"a","data":1}`,
		`{"type":"a","data":1,"id":"bad.id"}`,
		`{"type":"a","data":1,"id":null,"timestamp":null}`,
		`{"type":"a","data":1,"timestamp":"yesterday"}`,
		`{"type":"a","data":{"nested":{"deep":[[[]]]}}, "id": "k:1"}`,
		`{}`,
		`[]`,
		`1`,
		`"x"`,
		`{"type":"a","data":true}`,
		`{"type":"a","data":-1.5e3}`,
		`{"type":"a","data":"caf\u00e9 é"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		want, werr := decodeEvent(raw, 3)
		got, gerr := decodeValidEvent(raw, 3)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%s: reference error %v, fast error %v", raw, werr, gerr)
		}
		if werr != nil {
			if werr.status != gerr.status || werr.code != gerr.code || werr.index != gerr.index {
				t.Fatalf("%s: reference %+v, fast %+v", raw, werr, gerr)
			}
			return
		}
		w, g := want.Event, got.Event
		if w.Type != g.Type || w.ID != g.ID || !w.Time.Equal(g.Time) || !bytes.Equal(w.Data, g.Data) {
			t.Fatalf("%s: reference %+v data %s, fast %+v data %s", raw, w, w.Data, g, g.Data)
		}
	})
}

// TestSplitArrayKeepsElementsAsWritten checks batch splitting against
// encoding/json.
func TestSplitArrayKeepsElementsAsWritten(t *testing.T) {
	for _, in := range []string{
		`[]`, ` [ ] `, `[1]`, `[{"a":"]"}, [1,2], "x\"y", null, -2.5e1, true]`,
		"[\n  {\"type\":\"a\",\"data\":1} ,\n {\"type\":\"b\",\"data\":{}}\n]",
	} {
		var want []json.RawMessage
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		got := splitArray([]byte(in), 1<<20)
		if len(got) != len(want) {
			t.Fatalf("%s: %d elements, want %d", in, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: element %d = %s, want %s", in, i, got[i], want[i])
			}
		}
	}
}

// FuzzDecodeBody feeds whole request bodies, valid JSON or not, to the
// decoder: it never panics, answers either events or a 4xx, never more
// than max_batch events, and an answer of events keeps each element's data
// as a valid JSON value. The seeds run in every `go test`.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"type":"a","data":1}`,
		`[{"type":"a","data":1},{"type":"b","data":{"x":[1,2]},"id":"k:1"}]`,
		`[{"type":"a","data":1},{"type":"a","data":1,"id":"x"},{"type":"a","data":1,"id":"x"}]`,
		`[{},{},{},{}]`,
		`[{"type":"a","data":1},`,
		`[{"type":"a","data":1}] trailing`,
		`[1,2,x]`,
		`[[],[],[]]`,
		"[\xff]",
		`   `,
		`{"type":"a","data":1}{"type":"b","data":2}`,
	} {
		f.Add([]byte(s))
	}
	h := &Handler{MaxBody: 1 << 20, MaxBatch: 3}
	f.Fuzz(func(t *testing.T, body []byte) {
		batch, _, ierr := h.decode(body)
		if ierr != nil {
			if ierr.status < 400 || ierr.status > 499 || ierr.code == "" || ierr.message == "" {
				t.Fatalf("%q: error answer %+v", body, ierr)
			}
			return
		}
		if len(batch) == 0 || len(batch) > h.MaxBatch {
			t.Fatalf("%q: %d events, want 1 to %d", body, len(batch), h.MaxBatch)
		}
		for i, in := range batch {
			if !json.Valid(in.Event.Data) || in.Event.Type == "" {
				t.Fatalf("%q: event %d has type %q data %q", body, i, in.Event.Type, in.Event.Data)
			}
		}
	})
}

// BenchmarkDecodeBatch: what the handler does with a valid batch of 100
// 1 KB events, as the load harness posts them: validate, split, decode.
func BenchmarkDecodeBatch(b *testing.B) {
	ev := `{"type":"load.batch","data":{"n":1,"sent_ns":0,"sched_ns":0,"pad":"` + strings.Repeat("x", 940) + `"}}`
	body := batchOf(ev, 100)
	h := &Handler{MaxBody: 1 << 20, MaxBatch: defaultMaxBatch}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ierr := h.decode(body); ierr != nil {
			b.Fatal(ierr)
		}
	}
}

// skipString ends a string at the first quote that an odd run of
// backslashes does not escape.
func TestSkipString(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int // the index after the string
	}{
		{`"" x`, 2}, {`"abc",`, 5}, {`"a\"b" x`, 6}, {`"a\\" x`, 5}, {`"a\\\"b" x`, 8},
		{`"\\\\" x`, 6}, {`"\"" x`, 4}, {`"` + strings.Repeat(`\\`, 20) + `" x`, 42}, {`"open`, 5}, {`"esc\"`, 6},
	} {
		if got := skipString([]byte(c.in), 0); got != c.want {
			t.Errorf("skipString(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
