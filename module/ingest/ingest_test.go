package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/module/signing"
)

type wantEvent struct {
	typ  string
	data string
	id   string
	time time.Time
}

func TestIngestDecode(t *testing.T) {
	h := &Handler{MaxBatch: 3}
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	type201 := strings.Repeat("a", 201)
	type200 := strings.Repeat("a", 200)
	id129 := strings.Repeat("i", 129)
	id128 := strings.Repeat("i", 128)
	tests := []struct {
		name    string
		body    string
		isBatch bool
		want    []wantEvent
		status  int    // error answer; 0: success
		code    string // error code
		index   int    // error index
		msgHas  string
	}{
		{
			name: "single event",
			body: `{"type": "task.finished", "data": {"task_id": "T-1", "priority": "High"}, "id": "optional-client-id", "timestamp": "2026-11-23T10:00:00Z"}`,
			want: []wantEvent{{typ: "task.finished", data: `{"task_id": "T-1", "priority": "High"}`, id: "optional-client-id", time: ts}},
		},
		{
			name: "minimal event, leading whitespace",
			body: " \n\t{\"type\":\"a\",\"data\":1}\n",
			want: []wantEvent{{typ: "a", data: `1`}},
		},
		{
			name: "data null accepted",
			body: `{"type":"a","data":null}`,
			want: []wantEvent{{typ: "a", data: `null`}},
		},
		{
			name: "data kept byte for byte",
			body: `{"type":"a","data":  {"b" :  [1, 2.50 ,3e2],  "s":"\u00e9\u00E9 \"q\" \/", "u":"é"} }`,
			want: []wantEvent{{typ: "a", data: `{"b" :  [1, 2.50 ,3e2],  "s":"\u00e9\u00E9 \"q\" \/", "u":"é"}`}},
		},
		{
			name: "data string",
			body: `{"type":"a","data":"x\ny"}`,
			want: []wantEvent{{typ: "a", data: `"x\ny"`}},
		},
		{
			name: "timestamp with offset and fraction",
			body: `{"type":"a","data":{},"timestamp":"2026-11-23T11:00:00.5+01:00"}`,
			want: []wantEvent{{typ: "a", data: `{}`, time: ts.Add(500 * time.Millisecond)}},
		},
		{
			name: "null id and timestamp are absent",
			body: `{"type":"a","data":{},"id":null,"timestamp":null}`,
			want: []wantEvent{{typ: "a", data: `{}`}},
		},
		{
			name: "type of 200 chars, every allowed char",
			body: `{"type":"` + type200 + `","data":0}`,
			want: []wantEvent{{typ: type200, data: `0`}},
		},
		{
			name: "type and id charsets",
			body: `{"type":"Az09._-:/","data":0,"id":"` + id128 + `"}`,
			want: []wantEvent{{typ: "Az09._-:/", data: `0`, id: id128}},
		},
		{
			name:    "batch",
			body:    `[{"type":"a","data":1,"id":"x1"}, {"type":"b","data":[2]}, {"type":"c","data":{"k":3},"timestamp":"2026-11-23T10:00:00Z"}]`,
			isBatch: true,
			want: []wantEvent{
				{typ: "a", data: `1`, id: "x1"},
				{typ: "b", data: `[2]`},
				{typ: "c", data: `{"k":3}`, time: ts},
			},
		},
		{
			name:    "batch of one",
			body:    ` [ {"type":"a","data":1} ] `,
			isBatch: true,
			want:    []wantEvent{{typ: "a", data: `1`}},
		},

		{name: "empty body", body: "", status: 400, code: "invalid_event", index: -1, msgHas: "empty body"},
		{name: "whitespace body", body: " \n ", status: 400, code: "invalid_event", index: -1, msgHas: "empty body"},
		{name: "unknown field", body: `{"type":"a","data":1,"tpye":"b"}`, status: 400, code: "invalid_event", index: -1, msgHas: `"tpye"`},
		{name: "malformed JSON", body: `{"type":"a","data":`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed"},
		{name: "malformed JSON bad token", body: `{"type":"a" "data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed"},
		{name: "not an object", body: `"task"`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed JSON"},
		{name: "null body", body: `null`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed JSON"},
		{name: "trailing object", body: `{"type":"a","data":1}{"type":"b","data":2}`, status: 400, code: "invalid_event", index: -1, msgHas: "data after the event object"},
		{name: "trailing garbage", body: `{"type":"a","data":1} x`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed JSON"},
		{name: "trailing brace", body: `{"type":"a","data":1}}`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed JSON"},
		{name: "missing type", body: `{"data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `missing "type"`},
		{name: "null type", body: `{"type":null,"data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `missing "type"`},
		{name: "empty type", body: `{"type":"","data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "type"`},
		{name: "type with space", body: `{"type":"task finished","data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "type"`},
		{name: "type with unicode", body: `{"type":"tâsk","data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "type"`},
		{name: "type with star", body: `{"type":"task.*","data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "type"`},
		{name: "type 201 chars", body: `{"type":"` + type201 + `","data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "type"`},
		{name: "type not a string", body: `{"type":5,"data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed event"},
		{name: "missing data", body: `{"type":"a"}`, status: 400, code: "invalid_event", index: -1, msgHas: `missing "data"`},
		{name: "id with dot", body: `{"type":"a","data":1,"id":"a.b"}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "id"`},
		{name: "empty id", body: `{"type":"a","data":1,"id":""}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "id"`},
		{name: "id 129 chars", body: `{"type":"a","data":1,"id":"` + id129 + `"}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "id"`},
		{name: "id with slash", body: `{"type":"a","data":1,"id":"a/b"}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "id"`},
		{name: "bad timestamp", body: `{"type":"a","data":1,"timestamp":"2026-11-23 10:00:00"}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "timestamp"`},
		{name: "timestamp without zone", body: `{"type":"a","data":1,"timestamp":"2026-11-23T10:00:00"}`, status: 400, code: "invalid_event", index: -1, msgHas: `invalid "timestamp"`},
		{name: "timestamp as number", body: `{"type":"a","data":1,"timestamp":1790000000}`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed event"},

		{name: "empty batch", body: `[]`, status: 400, code: "invalid_event", index: -1, msgHas: "empty batch"},
		{name: "empty batch with spaces", body: ` [ ] `, status: 400, code: "invalid_event", index: -1, msgHas: "empty batch"},
		{name: "malformed batch", body: `[{"type":"a","data":1},`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed JSON"},
		{name: "batch with trailing data", body: `[{"type":"a","data":1}] []`, status: 400, code: "invalid_event", index: -1, msgHas: "malformed JSON"},
		{name: "batch over max_batch", body: `[{"type":"a","data":1},{"type":"a","data":1},{"type":"a","data":1},{"type":"a","data":1}]`, status: 413, code: "batch_too_large", index: -1, msgHas: "max_batch (3)"},
		{name: "repeated id in batch", body: `[{"type":"a","data":1,"id":"x"},{"type":"a","data":1,"id":"y"},{"type":"a","data":1,"id":"x"}]`, status: 400, code: "invalid_event", index: 2, msgHas: "element 0"},
		{name: "batch error index 1, missing data", body: `[{"type":"a","data":1},{"type":"b"},{"type":"c","data":1}]`, status: 400, code: "invalid_event", index: 1, msgHas: `missing "data"`},
		{name: "batch error index 2, unknown field", body: `[{"type":"a","data":1},{"type":"b","data":1},{"type":"c","data":1,"extra":true}]`, status: 400, code: "invalid_event", index: 2, msgHas: `"extra"`},
		{name: "batch error index 0, bad id", body: `[{"type":"a","data":1,"id":"a.b"}]`, status: 400, code: "invalid_event", index: 0, msgHas: `invalid "id"`},
		{name: "batch element not an object", body: `[{"type":"a","data":1},42]`, status: 400, code: "invalid_event", index: 1, msgHas: "malformed event"},
		{name: "batch element null", body: `[null]`, status: 400, code: "invalid_event", index: 0, msgHas: `missing "type"`},
		{name: "nested batch", body: `[[{"type":"a","data":1}]]`, status: 400, code: "invalid_event", index: 0, msgHas: "malformed event: an event must be a JSON object, not a array"},
		{name: "repeated field", body: `{"type":"task.a","type":"task.b","data":1}`, status: 400, code: "invalid_event", index: -1, msgHas: `field "type" appears twice`},
		{name: "repeated data in a batch", body: `[{"type":"a","data":1},{"type":"a","data":1,"data":2}]`, status: 400, code: "invalid_event", index: 1, msgHas: `field "data" appears twice`},
		{name: "batch element a number", body: `[{"type":"a","data":1},5]`, status: 400, code: "invalid_event", index: 1, msgHas: "malformed event: an event must be a JSON object, not a number"},
		{name: "invalid UTF-8 in data", body: "{\"type\":\"a\",\"data\":\"caf\xe9\"}", status: 400, code: "invalid_event", index: -1, msgHas: "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, isBatch, ierr := h.decode([]byte(tc.body))
			if tc.status != 0 {
				if ierr == nil {
					t.Fatalf("want error %d %s, got %d events", tc.status, tc.code, len(got))
				}
				if ierr.status != tc.status || ierr.code != tc.code || ierr.index != tc.index {
					t.Errorf("error = %d %s index %d (%q), want %d %s index %d",
						ierr.status, ierr.code, ierr.index, ierr.message, tc.status, tc.code, tc.index)
				}
				if !strings.Contains(ierr.message, tc.msgHas) {
					t.Errorf("message %q does not mention %q", ierr.message, tc.msgHas)
				}
				if got != nil {
					t.Errorf("events returned with an error: %v", got)
				}
				return
			}
			if ierr != nil {
				t.Fatalf("unexpected error %d %s: %s", ierr.status, ierr.code, ierr.message)
			}
			if isBatch != tc.isBatch {
				t.Errorf("isBatch = %v, want %v", isBatch, tc.isBatch)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d events, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				in := got[i]
				if in.Event == nil {
					t.Fatalf("event %d is nil", i)
				}
				ev := in.Event
				if ev.Type != w.typ || string(ev.Data) != w.data || ev.ID != w.id || !ev.Time.Equal(w.time) {
					t.Errorf("event %d = {type %q data %q id %q time %v}, want {type %q data %q id %q time %v}",
						i, ev.Type, ev.Data, ev.ID, ev.Time, w.typ, w.data, w.id, w.time)
				}
				if len(in.Deliveries) != 0 || in.Dedupe != "" || in.Keep {
					t.Errorf("event %d: decode set Deliveries/Dedupe/Keep: %+v", i, in)
				}
			}
		})
	}
}

// encoding/json matches object keys case-insensitively, so "strict"
// decoding still takes "Type", "DATA" or "Id" for the real fields; SPEC §1
// says unknown fields are rejected so typos surface early.
func TestIngestDecodeFieldNamesAreCaseSensitive(t *testing.T) {
	h := &Handler{MaxBatch: 10}
	for _, body := range []string{
		`{"Type":"a","data":1}`,
		`{"type":"a","DATA":1}`,
		`{"type":"a","data":1,"Id":"x"}`,
		`{"type":"a","data":1,"Data":3}`, // data silently replaced by the later key
		`{"type":"a","data":1,"TimeStamp":"2026-11-23T10:00:00Z"}`,
	} {
		got, _, ierr := h.decode([]byte(body))
		if ierr == nil {
			ev := got[0].Event
			t.Errorf("BUG: decode(%s) accepted a field name that differs from the spec's only in case (type %q data %s id %q); want 400 invalid_event naming the field",
				body, ev.Type, ev.Data, ev.ID)
		}
	}
}

func TestValidID(t *testing.T) {
	ids := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"evt_01J9ZZZ", true},
		{"AZaz09_-:", true},
		{"urn:x:1", true},
		{strings.Repeat("i", 128), true},
		{strings.Repeat("i", 129), false},
		{"", false},
		{"a.b", false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
		{"a=", false},
	}
	for _, tc := range ids {
		if got := module.ValidID(tc.in); got != tc.want {
			t.Errorf("module.ValidID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		name    string
		results []module.Accepted
		isBatch bool
		want    string
	}{
		{
			name:    "single with routes",
			results: []module.Accepted{{ID: "evt_1", Routes: []string{"erp", "slack"}}},
			want:    `{"id":"evt_1","routes":["erp","slack"]}`,
		},
		{
			name:    "single, no route",
			results: []module.Accepted{{ID: "evt_1"}},
			want:    `{"id":"evt_1","routes":[]}`,
		},
		{
			name:    "single duplicate carries the original id",
			results: []module.Accepted{{ID: "orig-1", Duplicate: true}},
			want:    `{"id":"orig-1","duplicate":true}`,
		},
		{
			name:    "batch",
			results: []module.Accepted{{ID: "a1", Routes: []string{"erp"}}, {ID: "a2"}, {ID: "a3", Routes: []string{"a", "b"}}},
			isBatch: true,
			want:    `{"ids":["a1","a2","a3"]}`,
		},
		{
			name:    "batch with duplicates",
			results: []module.Accepted{{ID: "a1", Duplicate: true}, {ID: "a2"}, {ID: "a3", Duplicate: true}, {ID: "a4"}},
			isBatch: true,
			want:    `{"ids":["a1","a2","a3","a4"],"duplicates":[0,2]}`,
		},
		{
			name:    "batch of one",
			results: []module.Accepted{{ID: "a1", Routes: []string{"erp"}}},
			isBatch: true,
			want:    `{"ids":["a1"]}`,
		},
	}
	for _, tc := range tests {
		got := answer(tc.results, tc.isBatch)
		if string(got) != tc.want {
			t.Errorf("%s: answer = %s, want %s", tc.name, got, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: answer is not valid JSON: %s", tc.name, got)
		}
	}
}

func TestAuthorized(t *testing.T) {
	h := &Handler{tokens: [][]byte{[]byte("s3cret"), []byte("rotated-2")}}
	tests := []struct {
		header string
		set    bool
		want   bool
	}{
		{"Bearer s3cret", true, true},
		{"bearer s3cret", true, true},
		{"BEARER s3cret", true, true},
		{"bEaReR s3cret", true, true},
		{"Bearer rotated-2", true, true},
		{"Bearer wrong", true, false},
		{"Bearer s3cre", true, false},
		{"Bearer s3crett", true, false},
		{"Bearer S3CRET", true, false},
		{"Bearer ", true, false},
		{"Bearer", true, false},
		{"Bearers3cret", true, false},
		{"Basic s3cret", true, false},
		{"s3cret", true, false},
		{"Bearer s3cret rotated-2", true, false},
		{"", true, false},
		{"", false, false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodPost, "/events", nil)
		if tc.set {
			r.Header.Set("Authorization", tc.header)
		}
		if got := h.authorized(r); got != tc.want {
			t.Errorf("authorized(%q, set=%v) = %v, want %v", tc.header, tc.set, got, tc.want)
		}
	}
}

// hostileBatch is a valid JSON array of n empty objects, about 3n bytes:
// 1 MiB holds about 350,000 of them.
func hostileBatch(size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, '[')
	for len(b) < size-4 {
		b = append(b, "{},"...)
	}
	return append(b, "{}]"...)
}

// A body of max_body full of tiny elements is refused at max_batch+1
// elements, allocating about what a legitimate batch would, valid JSON or
// not (the invalid variant ends in garbage after the last element).
func TestDecodeHostileBatchIsBounded(t *testing.T) {
	h := &Handler{MaxBody: 1 << 20, MaxBatch: 1000}
	valid := hostileBatch(1 << 20)
	invalid := append(append([]byte(nil), valid[:len(valid)-1]...), ",x]"...)
	for name, body := range map[string][]byte{"valid": valid, "invalid": invalid} {
		var ierr *ingestError
		allocated := allocatedBy(func() { _, _, ierr = h.decode(body) })
		if ierr == nil || ierr.status != 413 {
			t.Fatalf("%s: decode = %+v, want 413 batch_too_large", name, ierr)
		}
		// Before the limit, the valid body cost 62 MiB and a million
		// elements 122 MiB; 1001 elements cost well under 1 MiB.
		if allocated > 1<<20 {
			t.Errorf("%s: decoding a hostile 1 MiB batch allocated %d bytes, want under 1 MiB", name, allocated)
		}
	}
}

func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// BenchmarkDecodeHostileBatch reports the bytes one hostile 1 MiB body
// (about 350,000 empty objects) makes the decoder allocate (B/op).
func BenchmarkDecodeHostileBatch(b *testing.B) {
	h := &Handler{MaxBody: 1 << 20, MaxBatch: defaultMaxBatch}
	body := hostileBatch(1 << 20)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		h.decode(body)
	}
}

// Inbound events keep request headers for rules and look-ups, but never
// a credential: by name, by the endpoint's auth and verify headers, and
// only the listed ones when keep_headers is set.
func TestInboundHeadersKeepNoCredentials(t *testing.T) {
	req := httptest.NewRequest("POST", "/gitlab", strings.NewReader(`{"a":1}`))
	for k, v := range map[string]string{
		"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "glpat-secret",
		"X-Api-Key": "k-secret", "Authorization": "Bearer b-secret", "Cookie": "s=secret",
		"X-Shopify-Hmac-Sha256": "h-secret", "X-Partner-Session": "sess-secret", "X-Custom-Auth": "c-secret",
		"X-Request-Id": "req-1", "X-Sig": "sig-secret",
	} {
		req.Header.Set(k, v)
	}
	h := &Handler{Topic: "gitlab.push", Verify: &VerifyConfig{Header: "X-Sig"}}
	batch, ierr := h.inbound(req, []byte(`{"a":1}`))
	if ierr != nil {
		t.Fatal(ierr)
	}
	got := batch[0].Event.Headers
	for k, v := range got {
		if strings.Contains(v, "secret") {
			t.Errorf("header %s kept with a credential value", k)
		}
	}
	for _, k := range []string{"content-type", "x-gitlab-event", "x-request-id"} {
		if got[k] == "" {
			t.Errorf("header %s dropped; kept %v", k, got)
		}
	}

	h.keep = map[string]struct{}{"X-Gitlab-Event": {}, "X-Gitlab-Token": {}}
	batch, _ = h.inbound(req, []byte(`{"a":1}`))
	if got := batch[0].Event.Headers; len(got) != 1 || got["x-gitlab-event"] != "Push Hook" {
		t.Errorf("keep_headers X-Gitlab-Event X-Gitlab-Token kept %v, want only x-gitlab-event", got)
	}
}

// A sender's ids live in the namespace of the path its requests came
// with: an endpoint under handle_path keeps its whole path, so two
// endpoints of a site never share ids, and an explicit source wins.
func TestInboundNamespace(t *testing.T) {
	h := &Handler{Topic: "gh.push", idHeader: "X-Id"}
	at := func(orig, stripped string) *http.Request {
		req := httptest.NewRequest("POST", orig, strings.NewReader(`{}`))
		req.Header.Set("X-Id", "d-1")
		ctx := context.WithValue(req.Context(), caddyhttp.OriginalRequestCtxKey, *req.Clone(req.Context()))
		req = req.WithContext(ctx)
		req.URL.Path = stripped
		return req
	}
	for _, tc := range []struct{ orig, stripped, source, want string }{
		{"/github", "/github", "", "github:d-1"},
		{"/strip/github", "/github", "", "strip_github:d-1"},
		{"/partner", "", "", "partner:d-1"},
		{"/strip/github", "/github", "gh", "gh:d-1"},
	} {
		h.Source = tc.source
		batch, ierr := h.inbound(at(tc.orig, tc.stripped), []byte(`{}`))
		if ierr != nil {
			t.Fatal(ierr)
		}
		if got := batch[0].Event.ID; got != tc.want {
			t.Errorf("%s stripped to %q (source %q): id %q, want %q", tc.orig, tc.stripped, tc.source, got, tc.want)
		}
	}
}

// A body labelled JSON that is not UTF-8 is kept byte for byte
// (data_base64), as any other body that is not text: put in the envelope
// as it came it would be JSON no receiver can parse.
func TestInboundJSONNotUTF8(t *testing.T) {
	h := &Handler{Topic: "p.x"}
	body := []byte("{\"a\":\"caf\xe9\"}")
	req := httptest.NewRequest("POST", "/p", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	batch, ierr := h.inbound(req, body)
	if ierr != nil {
		t.Fatal(ierr)
	}
	ev := batch[0].Event
	if !ev.DataBase64 || !bytes.Equal(ev.Data, body) || ev.ContentType != "application/json" {
		t.Errorf("data %q base64 %v content type %q; want the bytes as they came, base64, application/json", ev.Data, ev.DataBase64, ev.ContentType)
	}
}

// A text body is kept as a JSON string with its text as it came: no
// \u003c for "<".
func TestInboundTextKeptAsSent(t *testing.T) {
	h := &Handler{Topic: "p.x"}
	body := []byte("<b>a & b</b>\n\"q\"")
	req := httptest.NewRequest("POST", "/p", bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	batch, ierr := h.inbound(req, body)
	if ierr != nil {
		t.Fatal(ierr)
	}
	var got string
	if err := json.Unmarshal(batch[0].Event.Data, &got); err != nil || got != string(body) || string(batch[0].Event.Data) != `"<b>a & b</b>\n\"q\""` {
		t.Errorf("data %s (%q, %v), want the text as it came", batch[0].Event.Data, got, err)
	}
}

func TestInboundID(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct{ source, sender, want string }{
		{"/partner", "msg_1", "partner:msg_1"},
		{"/hooks/github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "hooks_github:72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{"/a.b", "m", "a_b:m"},
	}
	for _, tc := range tests {
		if got := inboundID(tc.source, tc.sender); got != tc.want {
			t.Errorf("inboundID(%q, %q) = %q, want %q", tc.source, tc.sender, got, tc.want)
		}
	}
	// Sender ids that differ only in characters an id may not hold stay
	// apart: each would otherwise be dropped as the other's duplicate.
	seen := map[string]string{}
	for _, sender := range []string{"d_2", "d.2", "d/2", "d 2", "d\u00e92", "é", "_", "__"} {
		got := inboundID("/gh", sender)
		if !module.ValidID(got) || !strings.HasPrefix(got, "gh:") || len(got) > 128 {
			t.Errorf("inboundID(/gh, %q) = %q: not a valid id under gh:", sender, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("sender ids %q and %q both became %q", other, sender, got)
		}
		seen[got] = sender
	}
	if a, b := inboundID("/gh", "a.b c"), inboundID("/gh", "a.b c"); a != b {
		t.Errorf("one sender id gave %q and %q: its retries would not be duplicates", a, b)
	}
	a, b := inboundID("/p", long), inboundID("/p", long+"y")
	if a == b || len(a) > 128 || !module.ValidID(a) || !strings.HasPrefix(a, "p:") {
		t.Errorf("long sender ids: %q and %q, want distinct valid ids under p:", a, b)
	}
	if got := inboundID(long, "m"); len(got) > 128 || !module.ValidID(got) {
		t.Errorf("long source: %q is not a valid id", got)
	}
}

// An answer is built in one allocation, sized up front.
func TestAnswerAllocatesOnce(t *testing.T) {
	single := []module.Accepted{{ID: "evt_01jdq7y7m2x9", Routes: []string{"erp", "slack", "audit"}}}
	batch := make([]module.Accepted, 100)
	for i := range batch {
		batch[i] = module.Accepted{ID: fmt.Sprintf("evt_%026d", i), Duplicate: i%7 == 0}
	}
	for name, tc := range map[string]struct {
		results []module.Accepted
		isBatch bool
	}{"single": {single, false}, "batch": {batch, true}} {
		if n := testing.AllocsPerRun(20, func() { answer(tc.results, tc.isBatch) }); n > 1 {
			t.Errorf("%s: %v allocations per answer, want 1", name, n)
		}
	}
}

// Only application/json bodies are taken (any case, with parameters),
// with or without the exact-match shortcut.
func TestServeMediaType(t *testing.T) {
	h := &Handler{MaxBody: 1 << 20, MaxBatch: 10}
	for ct, want := range map[string]int{
		"application/json":                   400, // taken: the body is malformed
		"Application/JSON":                   400,
		"application/json; charset=utf-8":    400,
		" application/json ":                 400,
		"application/json;":                  400,
		"application/jsonx":                  415,
		"text/plain":                         415,
		"":                                   415,
		"application/json; charset=\"utf8":   415,
		"application/json; charset=UTF-8":    400,
		"application/json; charset=latin1":   415, // JSON is UTF-8
		"application/json; charset=utf8":     400, // an alias
		"application/json; charset=us-ascii": 400, // a subset
		"application/json; charset=utf-16":   415,
		"gzip":                               415, // Content-Encoding: gzip
	} {
		r := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(`{"type":`))
		switch ct {
		case "gzip":
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Content-Encoding", "gzip")
		case "":
		default:
			r.Header.Set("Content-Type", ct)
		}
		ierr := h.serve(httptest.NewRecorder(), r)
		if ierr == nil || ierr.status != want {
			t.Errorf("Content-Type %q: %+v, want status %d", ct, ierr, want)
		}
	}
}

// readBody returns the body whole, with or without a Content-Length, and
// fails on a body shorter than its Content-Length or over the limit.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		name    string
		cl      int64 // -1: unknown
		limit   int64
		want    string
		errLike string
	}{
		{"exact length", 1000, 4096, body, ""},
		{"length at the limit", 1000, 1000, body, ""},
		{"no length", -1, 4096, body, ""},
		{"no length, over the limit", -1, 999, "", "request body too large"},
		{"shorter than its length", 1200, 4096, "", "unexpected EOF"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/events", io.NopCloser(strings.NewReader(body)))
		r.ContentLength = tc.cl
		got, err := readBody(httptest.NewRecorder(), r, tc.limit)
		if tc.errLike != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errLike) {
				t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.errLike)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %d bytes, %v; want %d bytes", tc.name, len(got), err, len(tc.want))
		}
	}
}

// A body of known length costs readBody its buffer and the size limit's
// reader, nothing more.
func TestReadBodyAllocations(t *testing.T) {
	body := strings.Repeat("x", 1000)
	r := httptest.NewRequest(http.MethodPost, "/events", nil)
	r.ContentLength = int64(len(body))
	bodies := make([]io.ReadCloser, 30)
	for i := range bodies {
		bodies[i] = io.NopCloser(strings.NewReader(body))
	}
	w := httptest.NewRecorder()
	i := 0
	n := testing.AllocsPerRun(20, func() {
		r.Body = bodies[i]
		i++
		if got, err := readBody(w, r, 4096); err != nil || len(got) != len(body) {
			t.Fatalf("%d bytes, %v", len(got), err)
		}
	})
	if n > 2 {
		t.Errorf("%v allocations per body, want 2 (the buffer and the limit's reader)", n)
	}
}

func TestCheckTopic(t *testing.T) {
	for topic, ok := range map[string]bool{
		"github.{http.request.header.X-GitHub-Event}": true,
		"partner.event":                   true,
		"{http.request.header.X-Type}":    true,
		"a.{x}.{y}":                       true,
		"a b":                             false,
		"a {http.request.header.X-Event}": false,
		"a.{x}!":                          false,
		strings.Repeat("x", 201):          false,
		// Misspelt request placeholders would fail every request.
		"gh.{http.request.heder.X-Event}":        false,
		"gh.{http.request.body.type}":            false,
		"gh.{http.request.header.}":              false,
		"gh.{http.request.uri.query.kind}":       true,
		"gh.{http.request.uri.path.1}":           true,
		"gh.{http.request.method}":               true,
		"gh.{http.vars.kind}.{env.HOOKGATE_ENV}": true,
	} {
		if err := CheckTopic(topic); (err == nil) != ok {
			t.Errorf("CheckTopic(%q) = %v, want ok %v", topic, err, ok)
		}
	}
}

// An Idempotency-Key sent empty, twice, on a batch or unlike the event's
// id is refused before anything is stored; none of those is about a
// batch element, so none has an index.
func TestIdempotencyKeyRefusals(t *testing.T) {
	h := &Handler{MaxBody: 1 << 20, MaxBatch: 10}
	for name, tc := range map[string]struct {
		body string
		keys []string
		msg  string
	}{
		"empty":       {`{"type":"a","data":1}`, []string{""}, "must be 1-128 characters"},
		"twice":       {`{"type":"a","data":1}`, []string{"k1", "k2"}, "sent 2 times"},
		"on a batch":  {`[{"type":"a","data":1}]`, []string{"k1"}, "applies to a single event"},
		"unlike id":   {`{"type":"a","data":1,"id":"x"}`, []string{"k1"}, "id and Idempotency-Key differ"},
		"bad charset": {`{"type":"a","data":1}`, []string{"a.b"}, "must be 1-128 characters"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", "application/json")
		r.Header["Idempotency-Key"] = tc.keys
		ierr := h.serve(httptest.NewRecorder(), r)
		if ierr == nil || ierr.status != 400 || ierr.index != -1 || !strings.Contains(ierr.message, tc.msg) {
			t.Errorf("%s: %+v, want 400 without index saying %q", name, ierr, tc.msg)
		}
	}
}

func TestJSONField(t *testing.T) {
	body := []byte(`{"id":"evt_1","n":42,"big":12345678901234567890,"data":{"id":"inner","obj":{}},"nul":null,"arr":["x"]}`)
	for path, want := range map[string]string{
		"id":          "evt_1",
		"n":           "42",
		"big":         "12345678901234567890", // as sent, not rounded
		"data.id":     "inner",
		"data.obj":    "",
		"data.absent": "",
		"id.deeper":   "",
		"nul":         "",
		"arr":         "",
		"absent":      "",
	} {
		if got := jsonField(body, strings.Split(path, ".")); got != want {
			t.Errorf("jsonField(%s) = %q, want %q", path, got, want)
		}
	}
	for _, bad := range [][]byte{[]byte(`not json`), []byte(`["id"]`), nil} {
		if got := jsonField(bad, []string{"id"}); got != "" {
			t.Errorf("jsonField(%q) = %q, want none", bad, got)
		}
	}
	for _, path := range []string{"", ".", "a.", ".a", "a..b"} {
		if CheckIDField(path) == nil {
			t.Errorf("CheckIDField(%q) accepted", path)
		}
	}
	if err := CheckIDField("data.id"); err != nil {
		t.Errorf("CheckIDField(data.id): %v", err)
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An inbound body sent with Content-Encoding: gzip is decoded, within
// max_body decoded; other encodings, stacked ones and corrupt gzip get a
// clear error and store nothing. The API ingest takes no encoding.
func TestInboundGzip(t *testing.T) {
	const secret = "s3cret"
	body := []byte(`{"action":"opened","n":1}`)
	sig := func(b []byte) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write(b)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	h := &Handler{Topic: "gh.push", MaxBody: 1 << 10}
	h.Verify = &VerifyConfig{Scheme: "hmac-sha256", Secrets: []string{secret}}
	var err error
	if h.verifier, err = signing.NewVerifier("hmac-sha256", []string{secret}, "", "", "", 0); err != nil {
		t.Fatal(err)
	}
	post := func(b []byte, hdr ...string) ([]byte, *ingestError) {
		r := httptest.NewRequest(http.MethodPost, "/gh", bytes.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return h.readChecked(httptest.NewRecorder(), r)
	}
	gz := gzipped(t, body)
	for _, tc := range []struct {
		name string
		sig  string
	}{{"signed decoded", sig(body)}, {"signed as sent", sig(gz)}} {
		got, ierr := post(gz, "Content-Encoding", "gzip", "X-Hub-Signature-256", tc.sig)
		if ierr != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: %q %+v, want the decoded body", tc.name, got, ierr)
		}
	}
	if got, ierr := post(body, "Content-Encoding", "identity", "X-Hub-Signature-256", sig(body)); ierr != nil || !bytes.Equal(got, body) {
		t.Errorf("identity: %q %+v", got, ierr)
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		hdr    []string
		status int
		code   string
	}{
		{"bad signature", gz, []string{"Content-Encoding", "gzip", "X-Hub-Signature-256", sig([]byte("other"))}, 401, "verification_failed"},
		{"brotli", gz, []string{"Content-Encoding", "br", "X-Hub-Signature-256", sig(body)}, 415, "unsupported_media_type"},
		{"stacked", gzipped(t, gz), []string{"Content-Encoding", "gzip, gzip", "X-Hub-Signature-256", sig(body)}, 415, "unsupported_media_type"},
		{"twice", gzipped(t, gz), []string{"Content-Encoding", "gzip", "Content-Encoding", "gzip", "X-Hub-Signature-256", sig(body)}, 415, "unsupported_media_type"},
		{"not gzip", body, []string{"Content-Encoding", "gzip", "X-Hub-Signature-256", sig(body)}, 400, "bad_encoding"},
		{"truncated", gz[:len(gz)-6], []string{"Content-Encoding", "gzip", "X-Hub-Signature-256", sig(body)}, 400, "bad_encoding"},
		{"inflates past max_body", gzipped(t, bytes.Repeat([]byte(" "), 1<<20)), []string{"Content-Encoding", "gzip"}, 413, "body_too_large"},
	} {
		_, ierr := post(tc.body, tc.hdr...)
		if ierr == nil || ierr.status != tc.status || ierr.code != tc.code {
			t.Errorf("%s: %+v, want %d %s", tc.name, ierr, tc.status, tc.code)
		}
	}

	// What is kept: the decoded body, without the headers that described
	// the encoded one.
	r := httptest.NewRequest(http.MethodPost, "/gh", bytes.NewReader(gz))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Content-Encoding", "gzip")
	r.Header.Set("Content-Length", strconv.Itoa(len(gz)))
	r.Header.Set("X-GitHub-Event", "push")
	batch, ierr := h.inbound(r, body)
	if ierr != nil {
		t.Fatal(ierr)
	}
	hd := batch[0].Event.Headers
	if _, ok := hd["content-encoding"]; ok || hd["x-github-event"] != "push" {
		t.Errorf("kept headers %v: want x-github-event and no content-encoding", hd)
	}
	if _, ok := hd["content-length"]; ok {
		t.Errorf("kept headers %v: the encoded body's content-length", hd)
	}
}
