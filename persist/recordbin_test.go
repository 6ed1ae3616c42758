package persist

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fullDelivery() *Delivery {
	return &Delivery{
		ID: "dlv_01", EventID: "evt_01", Route: "billing", EventType: "invoice.paid",
		Status: StatusDead, Attempts: 7,
		Created:       time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		Due:           time.Date(2030, 1, 1, 0, 0, 1, 5, time.UTC),
		LastAttempt:   time.Date(2030, 1, 1, 0, 0, 2, 999999999, time.UTC),
		LastStatus:    410,
		LastClass:     "http_4xx",
		LastError:     "endpoint answered 410: ünicode",
		Done:          time.Date(2030, 1, 1, 0, 0, 3, 0, time.UTC),
		OrderKey:      "customer-1",
		Waiting:       true,
		ScheduleStart: time.Date(2029, 12, 31, 23, 0, 0, 1, time.UTC),
		ScheduleBase:  3,
	}
}

func TestDeliveryCodecRoundTrip(t *testing.T) {
	utc := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	cases := map[string]*Delivery{
		"full":    fullDelivery(),
		"minimal": {ID: "d", Status: StatusPending},
		"empty":   {},
		"local times": {ID: "d", EventID: "e", Route: "r", Status: StatusPending,
			Created: utc.Local(), Due: utc.Add(time.Hour).Local()},
		"fixed zone": {ID: "d", Created: utc.In(time.FixedZone("", -5*3600)), Due: utc.In(time.FixedZone("", 5*3600+1800))},
		"negative numbers": {ID: "d", Attempts: -1, LastStatus: -200, ScheduleBase: -3,
			Created: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC), Due: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		"long strings": {ID: strings.Repeat("i", 300), LastError: strings.Repeat("é", 5000), Status: StatusDelivered},
		"with its attempt": func() *Delivery {
			d := fullDelivery()
			d.attempt = &Attempt{N: 1, Start: utc, Duration: time.Second, Status: 200, Class: "ok", Response: []byte("{}"), TraceID: "t"}
			return d
		}(),
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			b := encodeDelivery(d)
			if b[0] != recordV2 {
				t.Fatalf("version byte = %d, want %d", b[0], recordV2)
			}
			var got Delivery
			if err := decodeDelivery(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&got, d) {
				t.Fatalf("decoded\n got  %+v\n want %+v", got, *d)
			}
		})
	}
	// A zone other than UTC and Local comes back as its offset, at the
	// same instant.
	ny := time.FixedZone("EST", -5*3600)
	d := &Delivery{ID: "d", Created: utc.In(ny)}
	var got Delivery
	if err := decodeDelivery(encodeDelivery(d), &got); err != nil {
		t.Fatal(err)
	}
	if _, off := got.Created.Zone(); !got.Created.Equal(d.Created) || off != -5*3600 {
		t.Fatalf("Created = %s, want %s", got.Created, d.Created)
	}
}

// TestDeliveryRecordStaysInLSM: a delivery as the engine records it,
// final, fits under the value threshold, so its rewrites stay in the LSM
// tree (where compaction drops them) instead of the value log. Its JSON
// did not (about 340 bytes).
func TestDeliveryRecordStaysInLSM(t *testing.T) {
	o := benchDelivered(benchIngest(1, time.Now()).Deliveries[0], time.Now())
	o.Delivery.LastClass = "http_2xx"
	if n := len(encodeDelivery(o.Delivery)); n >= valueThreshold {
		t.Fatalf("a final delivery takes %d bytes, want under the value threshold (%d)", n, valueThreshold)
	}
	if n := len(encodeAttempt(o.Attempt)); n >= valueThreshold {
		t.Fatalf("its attempt takes %d bytes, want under the value threshold (%d)", n, valueThreshold)
	}
	// With a first attempt that was its last, kept in its record (a
	// trace id and a short response), it still fits: that record is
	// what most deliveries end with.
	o.Attempt.TraceID = strings.Repeat("f", 32)
	o.Delivery.attempt = o.Attempt
	if n := len(encodeDelivery(o.Delivery)); n >= valueThreshold {
		t.Fatalf("a final delivery with its attempt takes %d bytes, want under the value threshold (%d)", n, valueThreshold)
	}
}

// TestDecodeOldJSONRecords: deliveries and attempts written as JSON by
// earlier versions are still read.
func TestDecodeOldJSONRecords(t *testing.T) {
	d := fullDelivery()
	old, err := encodeJSON(d)
	if err != nil {
		t.Fatal(err)
	}
	var got Delivery
	if err := decodeDelivery(old, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, d) {
		t.Fatalf("decoded\n got  %+v\n want %+v", got, *d)
	}
	a := &Attempt{N: 2, Start: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Duration: 3 * time.Millisecond,
		Status: 503, Class: "http_5xx", Error: "busy", Response: []byte("retry later"), TraceID: "abc"}
	old, err = encodeJSON(a)
	if err != nil {
		t.Fatal(err)
	}
	var ga Attempt
	if err := decodeAttempt(old, &ga); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&ga, a) {
		t.Fatalf("decoded\n got  %+v\n want %+v", ga, *a)
	}
}

func TestAttemptCodecRoundTrip(t *testing.T) {
	for name, a := range map[string]*Attempt{
		"full": {N: 51, Start: time.Date(2030, 1, 1, 0, 0, 0, 7, time.UTC), Duration: 1500 * time.Millisecond,
			Status: 200, Class: "http_2xx", Error: "", Response: []byte{0, 0xff, '{', '}'}, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		"no response": {N: 1, Start: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Local(), Error: "dial tcp: refused"},
		"empty":       {},
	} {
		b := encodeAttempt(a)
		var got Attempt
		if err := decodeAttempt(b, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(&got, a) {
			t.Fatalf("%s: decoded\n got  %+v\n want %+v", name, got, *a)
		}
		// The response must not alias the buffer it was read from.
		if len(got.Response) > 0 {
			b[len(b)-1-len(a.TraceID)-1] ^= 0xff
			if !bytes.Equal(got.Response, a.Response) {
				t.Fatalf("%s: decoded Response aliases the record", name)
			}
		}
	}
}

func TestStateCodecRoundTrip(t *testing.T) {
	for name, st := range map[string]eventState{
		"pending":  {remaining: 2, received: time.Date(2030, 1, 1, 0, 0, 0, 1, time.UTC)},
		"expiring": {keepUntil: 1893729845000000000, expires: 1893729845, received: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		"added": {remaining: 1, received: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
			routes: []string{"b", ""}, deliveries: []string{"ev/b", "ev/b2", "ev/c"}},
		"zero": {},
	} {
		got, err := decodeState(encodeState(&st))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("%s: decoded\n got  %+v\n want %+v", name, got, st)
		}
	}
}

func TestBinaryRecordsRejectBadInput(t *testing.T) {
	st := eventState{remaining: 1, received: time.Unix(5, 0).UTC(), routes: []string{"r"}, deliveries: []string{"d"}}
	goods := map[string][]byte{
		"delivery": encodeDelivery(fullDelivery()),
		"delivery with its attempt": encodeDelivery(func() *Delivery {
			d := fullDelivery()
			d.attempt = &Attempt{N: 1, Start: time.Unix(1, 0).UTC(), Class: "x", Response: []byte("r"), TraceID: "t"}
			return d
		}()),
		"attempt": encodeAttempt(&Attempt{N: 1, Start: time.Unix(1, 0).UTC(), Class: "x", Response: []byte("r"), TraceID: "t"}),
		"state":   encodeState(&st),
	}
	decode := map[string]func([]byte) error{
		"delivery":                  func(b []byte) error { var d Delivery; return decodeDelivery(b, &d) },
		"delivery with its attempt": func(b []byte) error { var d Delivery; return decodeDelivery(b, &d) },
		"attempt":                   func(b []byte) error { var a Attempt; return decodeAttempt(b, &a) },
		"state":                     func(b []byte) error { _, err := decodeState(b); return err },
	}
	for name, good := range goods {
		dec := decode[name]
		if err := dec(good); err != nil {
			t.Fatalf("%s: the good record fails: %v", name, err)
		}
		// Every cut short record is refused, and so is one with more.
		for n := 0; n < len(good); n++ {
			if err := dec(good[:n]); err == nil {
				t.Errorf("%s cut to %d of %d bytes decodes", name, n, len(good))
			}
		}
		if err := dec(append(append([]byte(nil), good...), 0)); err == nil {
			t.Errorf("%s with a byte left over decodes", name)
		}
		if err := dec(append([]byte{9}, good[1:]...)); err == nil {
			t.Errorf("%s with an unknown version decodes", name)
		}
	}
	// A bad time tag, nanoseconds out of range, an unknown flag.
	d := fullDelivery()
	b := encodeDelivery(&Delivery{ID: "d", Waiting: true})
	for i, bad := range [][]byte{
		{recordV2, 1, 'd', 0, 0, 0, 0, 0, 9},                                        // Created: tag 9
		{recordV2, 1, 'd', 0, 0, 0, 0, 0, timeUTC, 0, 0x80, 0x94, 0xeb, 0xdc, 0x03}, // 1e9 ns
		append(b[:len(b)-3:len(b)-3], 8, 0, 0),                                      // flags 8
	} {
		if err := decodeDelivery(bad, d); err == nil {
			t.Errorf("bad record %d (%x) decodes", i, bad)
		}
	}
}

// The fuzz targets: no input may make a decoder panic or read past its
// record, and what decodes encodes back to a record that decodes the
// same.

func FuzzDecodeDelivery(f *testing.F) {
	f.Add(encodeDelivery(fullDelivery()))
	f.Add(encodeDelivery(&Delivery{}))
	old, _ := encodeJSON(fullDelivery())
	f.Add(old)
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Delivery
		if err := decodeDelivery(b, &d); err != nil || b[0] != recordV2 {
			return
		}
		var again Delivery
		if err := decodeDelivery(encodeDelivery(&d), &again); err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", d, again, err)
		}
	})
}

func FuzzDecodeAttempt(f *testing.F) {
	f.Add(encodeAttempt(&Attempt{N: 1, Start: time.Unix(1, 2).UTC(), Status: 200, Response: []byte("ok"), TraceID: "t"}))
	old, _ := encodeJSON(&Attempt{N: 1, Response: []byte("ok")})
	f.Add(old)
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Attempt
		if err := decodeAttempt(b, &a); err != nil || b[0] != recordV2 {
			return
		}
		var again Attempt
		if err := decodeAttempt(encodeAttempt(&a), &again); err != nil || !reflect.DeepEqual(again, a) {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", a, again, err)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(&eventState{remaining: 1, expires: 5, received: time.Unix(1, 0).Local(), routes: []string{"a"}, deliveries: []string{"x", "y"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		again, err := decodeState(encodeState(&st))
		if err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", st, again, err)
		}
	})
}

// The flags byte was a boolean (Waiting) before it held sole: records of
// either kind read as they were written, and sole survives a round trip.
func TestDeliveryFlags(t *testing.T) {
	for _, d := range []Delivery{{ID: "d"}, {ID: "d", Waiting: true}, {ID: "d", sole: true}, {ID: "d", Waiting: true, sole: true},
		{ID: "d", sole: true, attempt: &Attempt{N: 1}}} {
		var got Delivery
		if err := decodeDelivery(encodeDelivery(&d), &got); err != nil {
			t.Fatal(err)
		}
		if got.Waiting != d.Waiting || got.sole != d.sole || (got.attempt != nil) != (d.attempt != nil) {
			t.Errorf("waiting %v sole %v attempt %v read back as %v %v %v", d.Waiting, d.sole, d.attempt != nil, got.Waiting, got.sole, got.attempt != nil)
		}
	}
	old := encodeDelivery(&Delivery{ID: "d", Waiting: true})
	if flags := old[len(old)-3]; flags != 1 {
		t.Fatalf("a waiting delivery's flags byte is %d, the boolean true of earlier records was 1", flags)
	}
}
