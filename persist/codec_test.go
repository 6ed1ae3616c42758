package persist

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// encodeEventV1 writes an event record as earlier versions did
// (recordV1: the JSON of the event's metadata, then the payload), for
// the tests of reading old outboxes and for the benchmarks.
func encodeEventV1(e *Event) ([]byte, error) {
	meta, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen32+len(meta)+len(e.Data))
	b = append(b, recordV1)
	b = binary.AppendUvarint(b, uint64(len(meta)))
	b = append(b, meta...)
	return append(b, e.Data...), nil
}

// fullEvent has every field set.
func fullEvent() *Event {
	return &Event{
		ID:          "ev-1",
		Type:        "order.created",
		Source:      "shop",
		Time:        time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Received:    time.Date(2031, 5, 6, 7, 8, 10, 1, time.UTC),
		Headers:     map[string]string{"x-a": "é", "x-b": "", "": "empty name", "content-type": "text/plain"},
		ContentType: "text/plain; charset=utf-8",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState:  "k=v",
		Routes:      []string{"a", "ab", ""},
		Deliveries:  []string{"ev-1/a", "ev-1/ab", "ev-1/"},
		Data:        []byte(`{"n":1}`),
		DataBase64:  true,
		Remaining:   3,
		KeepUntil:   1234567890123456789,
	}
}

func TestEventCodecRoundTrip(t *testing.T) {
	big := make([]byte, 1<<20)
	rand.New(rand.NewSource(1)).Read(big)

	cases := []struct {
		name string
		data []byte
	}{
		{"json", []byte(`{"a": 1,  "b":[true, null]}` + "\n")},
		{"non-ascii", []byte(`{"name":"Zoë ✓ 日本語 🚀","esc":"\u00e9"}`)},
		{"invalid utf-8", []byte{0xff, 0xfe, 0x00, '{', 0x80, '}', 0x01}},
		{"looks like a record", []byte{recordV1, 0x05, '{', '}', '{', '}', '"'}},
		{"looks like a binary record", encodeEvent(fullEvent())},
		{"plain text", []byte("hello, world\r\n")},
		{"one mebibyte", big},
		{"empty", nil},
	}
	// Both versions: what this one writes, and what earlier ones wrote.
	encoders := map[string]func(*Event) ([]byte, error){
		"binary": func(e *Event) ([]byte, error) { return encodeEvent(e), nil },
		"json":   encodeEventV1,
	}
	for enc, encode := range encoders {
		for _, tc := range cases {
			t.Run(enc+"/"+tc.name, func(t *testing.T) {
				in := fullEvent()
				in.Data = append([]byte(nil), tc.data...)
				b, err := encode(in)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[string]byte{"binary": recordV3, "json": recordV1}[enc]; b[0] != want {
					t.Fatalf("version byte = %d, want %d", b[0], want)
				}
				// The payload is stored as sent, at the end of the record.
				if !bytes.HasSuffix(b, tc.data) {
					t.Fatal("record does not end with the payload bytes")
				}
				out, err := decodeEvent(b)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Data, tc.data) || len(out.Data) != len(tc.data) {
					t.Fatalf("Data = %d bytes %q, want %d bytes %q", len(out.Data), clip(out.Data), len(tc.data), clip(tc.data))
				}
				// Decoded data must not alias the buffer Badger hands out,
				// nor the strings the record's bytes.
				if len(out.Data) > 0 {
					b[len(b)-1] ^= 0xff
					if out.Data[len(out.Data)-1] != tc.data[len(tc.data)-1] {
						t.Fatal("decoded Data aliases the encoded record")
					}
				}
				for i := range b {
					b[i] = 0
				}
				out.Data, in.Data = nil, nil
				if !reflect.DeepEqual(out, in) {
					t.Fatalf("decoded event\n got  %+v\n want %+v", out, in)
				}
			})
		}
	}
}

// TestEventCodecZeroValues: an event with nothing set comes back with
// nothing set (zero times stay zero, empty lists and maps are nil, as
// they were from JSON), and so does one with empty non-nil ones.
func TestEventCodecZeroValues(t *testing.T) {
	for name, in := range map[string]*Event{
		"zero":  {},
		"empty": {Headers: map[string]string{}, Routes: []string{}, Deliveries: []string{}, Data: []byte{}},
	} {
		for enc, b := range map[string][]byte{"binary": encodeEvent(in), "json": must(encodeEventV1(in))} {
			out, err := decodeEvent(b)
			if err != nil {
				t.Fatalf("%s/%s: %v", name, enc, err)
			}
			if !reflect.DeepEqual(out, &Event{}) {
				t.Fatalf("%s/%s: decoded %+v, want the zero Event", name, enc, *out)
			}
			if !out.Time.IsZero() || !out.Received.IsZero() {
				t.Fatalf("%s/%s: zero times decode as %v, %v", name, enc, out.Time, out.Received)
			}
		}
	}
	// Negative and extreme numbers survive too.
	in := &Event{ID: "n", Remaining: -1, KeepUntil: math.MinInt64,
		Time: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), Received: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
	out, err := decodeEvent(encodeEvent(in))
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("decoded %+v, %v; want %+v", out, err, *in)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestEventCodecRoutesDoNotShare: Routes and Deliveries decode into one
// array, but appending to Routes (as a state's added routes are) must
// not change Deliveries.
func TestEventCodecRoutesDoNotShare(t *testing.T) {
	out, err := decodeEvent(encodeEvent(fullEvent()))
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(out.Deliveries)
	out.Routes = append(out.Routes, "added")
	if !slices.Equal(out.Deliveries, want) {
		t.Fatalf("Deliveries = %q after appending to Routes, want %q", out.Deliveries, want)
	}
}

// TestEventCodecHeaderOrder: headers are written sorted by name, so
// equal events give equal records whatever the map's order.
func TestEventCodecHeaderOrder(t *testing.T) {
	h := map[string]string{}
	for i := range 40 {
		h[fmt.Sprintf("x-h%02d", 39-i)] = strconv.Itoa(i)
	}
	first := encodeEvent(&Event{ID: "h", Headers: h})
	for range 20 {
		again := make(map[string]string, len(h))
		for k, v := range h {
			again[k] = v
		}
		if b := encodeEvent(&Event{ID: "h", Headers: again}); !bytes.Equal(b, first) {
			t.Fatalf("equal events encode differently:\n %x\n %x", first, b)
		}
	}
	last := -1
	for i := range 40 {
		at := bytes.Index(first, fmt.Appendf(nil, "x-h%02d", i))
		if at < last {
			t.Fatalf("header x-h%02d is written before x-h%02d", i, i-1)
		}
		last = at
	}
}

// TestEventCodecTimes: the times an engine stores (its clock's now, in
// Local; a sender's timestamp as time.Parse gives it: UTC, Local or a
// fixed zone) come back at the same instant, nanoseconds and offset as
// a JSON round trip gave them, so they compare and print the same. The
// location differs where the record format says: the binary form keeps
// UTC, Local or the fixed zone it was given, JSON chose by the offset.
func TestEventCodecTimes(t *testing.T) {
	parse := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	_, localOff := time.Date(2026, 11, 23, 10, 0, 0, 0, time.Local).Zone()
	times := map[string]time.Time{
		"now":            time.Now(),
		"utc":            time.Date(2026, 11, 23, 10, 0, 0, 1, time.UTC),
		"local":          time.Date(2026, 11, 23, 10, 0, 0, 999999999, time.Local),
		"parsed Z":       parse("2026-11-23T10:00:00.5Z"),
		"parsed +05:30":  parse("2026-11-23T10:00:00.000000001+05:30"),
		"parsed -00:00":  parse("2026-11-23T10:00:00-00:00"),
		"parsed local":   time.Date(2026, 11, 23, 10, 0, 0, 0, time.FixedZone("", localOff)),
		"named zone":     time.Date(2026, 11, 23, 10, 0, 0, 7, time.FixedZone("EST", -5*3600)),
		"before 1970":    time.Date(1969, 12, 31, 23, 59, 59, 1, time.UTC),
		"fixed negative": time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -9*3600-1800)),
	}
	for name, tm := range times {
		in := &Event{ID: "t", Time: tm, Received: tm}
		bin, err := decodeEvent(encodeEvent(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		js, err := decodeEvent(must(encodeEventV1(in)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, got := range []time.Time{bin.Time, bin.Received} {
			_, off := got.Zone()
			_, jsOff := js.Time.Zone()
			if !got.Equal(tm) || got.Nanosecond() != tm.Nanosecond() || off != jsOff ||
				got.Format(time.RFC3339Nano) != js.Time.Format(time.RFC3339Nano) {
				t.Errorf("%s: binary gives %v, JSON gave %v (stored %v)", name, got, js.Time, tm)
			}
			if got.Format(time.RFC3339Nano) != tm.Format(time.RFC3339Nano) {
				t.Errorf("%s: prints as %s, stored as %s", name, got.Format(time.RFC3339Nano), tm.Format(time.RFC3339Nano))
			}
			// The location: as stored for UTC and Local, else a fixed zone.
			switch loc := tm.Location(); {
			case loc == time.UTC || loc == time.Local:
				if got.Location() != loc {
					t.Errorf("%s: location %v, want %v", name, got.Location(), loc)
				}
			case got.Location() == time.UTC || got.Location() == time.Local:
				t.Errorf("%s: location %v, want a fixed zone", name, got.Location())
			}
		}
	}
}

// TestDecodeOldJSONEventRecord: an event record as earlier versions
// wrote it (recordV1, written out here byte for byte) is still read,
// payload included.
func TestDecodeOldJSONEventRecord(t *testing.T) {
	old := []byte("\x01\xcd\x03" + // recordV1, the metadata's length (461)
		`{"id":"evt_01J","type":"order.created","source":"/hooks/shop",` +
		`"time":"2026-11-23T10:00:00.123456789+05:30","received":"2026-11-23T04:30:01.000000005Z",` +
		`"headers":{"x-a":"ü","x-b":"2"},"content_type":"application/octet-stream",` +
		`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"k=v",` +
		`"routes":["billing","audit"],"deliveries":["evt_01J/billing","evt_01J/audit"],` +
		`"data_base64":true,"remaining":2,"keep_until":1795000000000000001}` +
		"\xff\x00{\"a\":1}\n") // the payload, not UTF-8
	want := &Event{
		ID: "evt_01J", Type: "order.created", Source: "/hooks/shop",
		Time:        time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("", 5*3600+1800)),
		Received:    time.Date(2026, 11, 23, 4, 30, 1, 5, time.UTC),
		Headers:     map[string]string{"x-b": "2", "x-a": "ü"},
		ContentType: "application/octet-stream",
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "k=v",
		Routes: []string{"billing", "audit"}, Deliveries: []string{"evt_01J/billing", "evt_01J/audit"},
		Data: []byte("\xff\x00{\"a\":1}\n"), DataBase64: true, Remaining: 2, KeepUntil: 1795000000000000001,
	}
	got, err := decodeEvent(old)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("Data = %q, want %q", got.Data, want.Data)
	}
	// +05:30 decodes as Local where that is Local's offset: compare
	// the time by instant and offset.
	if _, off := got.Time.Zone(); !got.Time.Equal(want.Time) || off != 5*3600+1800 {
		t.Fatalf("Time = %v, want %v", got.Time, want.Time)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n got  %+v\n want %+v", *got, *want)
	}
	// Written again, it is a binary record that reads the same.
	again, err := decodeEvent(encodeEvent(got))
	if err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("rewritten: %+v, %v; want %+v", again, err, *got)
	}
}

func TestEventCodecThroughBadger(t *testing.T) {
	s := openStore(t, Options{})
	big := make([]byte, 1<<20)
	rand.New(rand.NewSource(2)).Read(big)
	payloads := map[string][]byte{
		"small":     []byte(`{"x":"ü"}`),
		"nonascii":  []byte("naïve café — 中文 \x00\xff"),
		"threshold": bytes.Repeat([]byte("v"), 4<<10), // at the value-log threshold
		"big":       big,
	}
	for id, data := range payloads {
		in := oneIngest(id, t0, "r")
		in.Event.Data = data
		ingest(t, s, in)
	}
	for id, data := range payloads {
		if got := mustEvent(t, s, id).Data; !bytes.Equal(got, data) {
			t.Fatalf("%s: Data = %d bytes, want %d bytes exactly as sent", id, len(got), len(data))
		}
	}
}

func TestDecodeEventRejectsBadRecords(t *testing.T) {
	old, err := encodeEventV1(&Event{ID: "x", Data: []byte("data")})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":             nil,
		"version only":      {recordV1},
		"unknown version 0": append([]byte{0}, old[1:]...),
		"unknown version 2": append([]byte{recordV2}, old[1:]...),
		"unknown version 4": append([]byte{4}, encodeEvent(fullEvent())[1:]...),
		"length past end":   {recordV1, 0x7f, '{', '}'},
		"bad varint":        {recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"metadata not json": {recordV1, 0x02, 'x', 'y'},
		"cut in metadata":   old[:5],
		// Binary records.
		"v3 version only":     {recordV3},
		"v3 payload past end": {recordV3, 0x7f, 0, 0, 0},
		"v3 bad varint":       {recordV3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"v3 bad time tag":     {recordV3, 0, 0, 0, 0, 9},
		"v3 nanoseconds 1e9":  {recordV3, 0, 0, 0, 0, timeUTC, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03},
		"v3 bad offset":       {recordV3, 0, 0, 0, 0, timeFixed, 0xff, 0xff, 0x0f, 0, 0},
		"v3 header count":     {recordV3, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0},
		"v3 route count":      {recordV3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0},
		"v3 delivery count":   {recordV3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 0, 0, 0},
		"v3 bad boolean":      {recordV3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0},
	}
	for name, b := range bad {
		if ev, err := decodeEvent(b); err == nil {
			t.Errorf("%s: decodeEvent(%q) = %+v, want an error", name, b, ev)
		}
	}
	// The smallest binary record decodes; every record cut short is
	// refused, and so is one with a byte more: the payload's length
	// says where the metadata ends.
	if ev, err := decodeEvent([]byte{recordV3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil || !reflect.DeepEqual(ev, &Event{}) {
		t.Fatalf("the smallest record decodes as %+v, %v", ev, err)
	}
	for _, e := range []*Event{fullEvent(), {ID: "x"}} {
		good := encodeEvent(e)
		for n := range len(good) {
			if ev, err := decodeEvent(good[:n]); err == nil {
				t.Errorf("record cut to %d of %d bytes decodes: %+v", n, len(good), ev)
			}
		}
		if ev, err := decodeEvent(append(slices.Clone(good), 'x')); err == nil {
			t.Errorf("record with a byte more decodes: %+v", ev)
		}
	}
}

func TestJSONCodec(t *testing.T) {
	d := &Delivery{ID: "d", EventID: "e", Route: "r", Status: StatusDead, Attempts: 3,
		Created: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Due: time.Date(2030, 1, 1, 0, 0, 1, 5, time.UTC),
		LastStatus: 410, LastClass: "gone", LastError: "ünicode", OrderKey: "k"}
	b, err := encodeJSON(d)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != recordV1 {
		t.Fatalf("version byte = %d", b[0])
	}
	var got Delivery
	if err := decodeJSON(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, d) {
		t.Fatalf("got %+v, want %+v", got, *d)
	}
	for _, bad := range [][]byte{nil, {2, '{', '}'}, {recordV1, '{'}} {
		if err := decodeJSON(bad, &got); err == nil {
			t.Errorf("decodeJSON(%q) succeeded", bad)
		}
	}
}

func TestStatusStrings(t *testing.T) {
	for _, s := range []Status{StatusPending, StatusDelivered, StatusDead} {
		got, ok := ParseStatus(s.String())
		if !ok || got != s {
			t.Errorf("ParseStatus(%q) = %v, %v", s.String(), got, ok)
		}
	}
	want := map[Status]string{StatusPending: "pending", StatusDelivered: "delivered", StatusDead: "dead", 0: "unknown", 9: "unknown"}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("Status(%d).String() = %q, want %q", s, s.String(), w)
		}
	}
	if _, ok := ParseStatus("Pending"); ok {
		t.Error(`ParseStatus("Pending") accepted`)
	}
}

func clip(b []byte) string {
	if len(b) > 40 {
		return strings.ToValidUTF8(string(b[:40]), "?") + "…"
	}
	return string(b)
}

// An idempotency record keeps the end of its window; one written before
// it did (a bare event id) still counts as live until its TTL.
func TestDedupeRecords(t *testing.T) {
	until := time.Unix(0, 1_900_000_000_123_456_789)
	id, got, ok := decodeDedupe(encodeDedupe("evt_1", until))
	if !ok || id != "evt_1" || !got.Equal(until) {
		t.Fatalf("round trip = %q, %v, %v; want evt_1, %v, true", id, got, ok, until)
	}
	if id, _, ok := decodeDedupe([]byte("evt_old")); ok || id != "evt_old" {
		t.Fatalf("bare id = %q, ok %v; want evt_old, false", id, ok)
	}

	now := t0
	s := openStore(t, Options{Now: func() time.Time { return now }, DedupeWindow: time.Minute})
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry(dedupeKey("old-key"), []byte("evt_old")).WithTTL(time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Minute)
	in := oneIngest("evt_new", t0, "r")
	in.Dedupe = "old-key"
	if res := ingest(t, s, in); res[0] != (IngestResult{Duplicate: true, ID: "evt_old"}) {
		t.Fatalf("ingest with an old-format key = %+v, want a duplicate of evt_old", res[0])
	}
}

// FuzzDecodeEvent: no input may make decodeEvent panic or read past its
// record; a binary record that decodes encodes back to one that decodes
// the same, and encoding that again gives the same bytes.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(encodeEvent(fullEvent()))
	f.Add(encodeEvent(&Event{}))
	f.Add(encodeEvent(&Event{ID: "t", Time: time.Unix(1, 2).In(time.FixedZone("", 3600)), Received: time.Unix(3, 4).Local(),
		Headers: map[string]string{"a": "1"}, Data: []byte{0xff}}))
	f.Add([]byte{recordV3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(must(encodeEventV1(fullEvent())))
	f.Add([]byte{recordV1, 0x02, '{', '}', 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b)
		if err != nil {
			return
		}
		if len(ev.Data) > 0 && len(b) > 0 && &ev.Data[0] == &b[len(b)-len(ev.Data)] {
			t.Fatal("decoded Data aliases the record")
		}
		if b[0] != recordV3 {
			return
		}
		enc := encodeEvent(ev)
		again, err := decodeEvent(enc)
		if err != nil || !reflect.DeepEqual(again, ev) {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", *ev, again, err)
		}
		if enc2 := encodeEvent(again); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable:\n %x\n %x", enc, enc2)
		}
	})
}

// benchEvents are events as the engine stores them: one from a batched
// ingest (no headers) and one from an inbound webhook (its headers),
// each with a 1 KB payload, one route and its delivery.
func benchEvents() map[string]*Event {
	now := time.Now()
	batch := &Event{ID: "evt_01JD3ZK8Q0000000000000001", Type: "order.created", Time: now, Received: now,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Routes:      []string{"billing"}, Deliveries: []string{"evt_01JD3ZK8Q0000000000000001/billing"},
		Data: payload1K, Remaining: 1}
	inbound := *batch
	inbound.Source = "/hooks/github"
	inbound.Headers = map[string]string{
		"accept": "*/*", "content-type": "application/json", "user-agent": "GitHub-Hookshot/abc1234",
		"x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "x-github-event": "push",
		"x-github-hook-id": "292430182", "x-hub-signature-256": "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c",
		"content-length": "1024",
	}
	return map[string]*Event{"batch": batch, "inbound": &inbound}
}

// BenchmarkEncodeEvent compares the JSON record earlier versions wrote
// with the binary one.
func BenchmarkEncodeEvent(b *testing.B) {
	for _, kind := range []string{"batch", "inbound"} {
		ev := benchEvents()[kind]
		b.Run(kind+"/json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encodeEventV1(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(kind+"/binary", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				encodeEvent(ev)
			}
		})
	}
}

// BenchmarkDecodeEvent compares reading the two record versions.
func BenchmarkDecodeEvent(b *testing.B) {
	for _, kind := range []string{"batch", "inbound"} {
		ev := benchEvents()[kind]
		for _, enc := range []string{"json", "binary"} {
			rec := encodeEvent(ev)
			if enc == "json" {
				rec = must(encodeEventV1(ev))
			}
			b.Run(kind+"/"+enc, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := decodeEvent(rec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
