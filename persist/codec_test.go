package persist

import (
	"bytes"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

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
		{"plain text", []byte("hello, world\r\n")},
		{"one mebibyte", big},
		{"empty", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &Event{
				ID:          "ev-1",
				Type:        "order.created",
				Source:      "shop",
				Time:        time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC),
				Received:    time.Date(2031, 5, 6, 7, 8, 10, 1, time.UTC),
				Headers:     map[string]string{"X-A": "é", "X-B": ""},
				ContentType: "text/plain; charset=utf-8",
				TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				TraceState:  "k=v",
				Routes:      []string{"a", "ab"},
				Data:        append([]byte(nil), tc.data...),
				Remaining:   2,
				KeepUntil:   1234567890123456789,
			}
			b, err := encodeEvent(in)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != recordV1 {
				t.Fatalf("version byte = %d, want %d", b[0], recordV1)
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
			// Decoded data must not alias the buffer Badger hands out.
			if len(b) > 0 && len(out.Data) > 0 {
				b[len(b)-1] ^= 0xff
				if out.Data[len(out.Data)-1] != tc.data[len(tc.data)-1] {
					t.Fatal("decoded Data aliases the encoded record")
				}
			}
			out.Data, in.Data = nil, nil
			if !reflect.DeepEqual(out, in) {
				t.Fatalf("decoded event\n got  %+v\n want %+v", out, in)
			}
		})
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
	good, err := encodeEvent(&Event{ID: "x", Data: []byte("data")})
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"empty":             nil,
		"version only":      {recordV1},
		"unknown version":   append([]byte{2}, good[1:]...),
		"length past end":   {recordV1, 0x7f, '{', '}'},
		"bad varint":        {recordV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"metadata not json": {recordV1, 0x02, 'x', 'y'},
		"cut in metadata":   good[:5],
	}
	for name, b := range bad {
		if ev, err := decodeEvent(b); err == nil {
			t.Errorf("%s: decodeEvent(%q) = %+v, want an error", name, b, ev)
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
