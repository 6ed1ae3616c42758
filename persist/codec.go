package persist

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Every record starts with a format version byte, so a later release can
// read what this one wrote. recordV1 is JSON; recordV2 (recordbin.go) is
// the binary form of deliveries, attempts and event states; recordV3 is
// the binary form of events.
const recordV1 = 1

// Events are stored in a binary form, version byte recordV3:
//
//	recordV3, uvarint len(Data), metadata, Data
//
// The metadata is the Event's other fields in a fixed order, encoded as
// recordbin.go describes (strings with a uvarint length, integers as
// varints, times as appendTime writes them):
//
//	ID, Type, Source, Time, Received,
//	Headers: uvarint count, then key and value of each, keys sorted,
//	ContentType, TraceParent, TraceState,
//	uvarint len(Routes), uvarint len(Deliveries), then their strings,
//	DataBase64 (one byte, 0 or 1), Remaining, KeepUntil
//
// and the payload follows as sent: it is never re-encoded. Its length
// comes first so the metadata's end is known before it is read (its
// strings are cut from one copy of it) and a record cut short anywhere
// is refused.
//
// Earlier versions wrote recordV1: the version, the uvarint length of
// the JSON of the Event (its tagged fields), that JSON, then the payload.
// Such records are still read; those versions cannot read recordV3. The
// version is not recordV2, so that a record's first byte alone says
// which layout follows.
//
// The binary form keeps every field JSON kept. Times come back at the
// same instant, nanoseconds and offset, but their location is as it
// was written (UTC, Local, else a fixed zone: see appendTime), where
// JSON gave UTC for any time at offset zero and Local for any time at
// Local's offset; and years JSON could not write (before 0, after 9999)
// are kept. Empty Headers, Routes and Deliveries decode as nil, as
// they did from JSON.
const recordV3 = 3

// encodeEvent encodes e in the binary form, into one buffer sized up
// front.
func encodeEvent(e *Event) []byte {
	// 96 bytes hold the version, the counts, the times and the numbers
	// at their longest; each string adds its length's.
	n := 96 + len(e.Data)
	for _, s := range [...]string{e.ID, e.Type, e.Source, e.ContentType, e.TraceParent, e.TraceState} {
		n += binary.MaxVarintLen32 + len(s)
	}
	for k, v := range e.Headers {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	for _, s := range e.Routes {
		n += binary.MaxVarintLen32 + len(s)
	}
	for _, s := range e.Deliveries {
		n += binary.MaxVarintLen32 + len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, recordV3)
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	b = appendString(b, e.ID)
	b = appendString(b, e.Type)
	b = appendString(b, e.Source)
	b = appendTime(b, e.Time)
	b = appendTime(b, e.Received)
	b = appendHeaders(b, e.Headers)
	b = appendString(b, e.ContentType)
	b = appendString(b, e.TraceParent)
	b = appendString(b, e.TraceState)
	b = binary.AppendUvarint(b, uint64(len(e.Routes)))
	b = binary.AppendUvarint(b, uint64(len(e.Deliveries)))
	for _, s := range e.Routes {
		b = appendString(b, s)
	}
	for _, s := range e.Deliveries {
		b = appendString(b, s)
	}
	if e.DataBase64 {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, int64(e.Remaining))
	b = binary.AppendVarint(b, e.KeepUntil)
	return append(b, e.Data...)
}

// appendHeaders appends the count of h, then each key and value, keys
// sorted: equal maps encode equally.
func appendHeaders(b []byte, h map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(h)))
	if len(h) == 0 {
		return b
	}
	var stack [16]string
	keys := stack[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, h[k])
	}
	return b
}

// decodeEvent reads an event record of either version. The event's Data
// is a copy (records are read from buffers Badger reuses); the strings
// of a binary record are cut from one copy of its metadata, so they cost
// one allocation, and any one of them kept keeps that copy.
func decodeEvent(b []byte) (*Event, error) {
	if len(b) == 0 {
		return nil, errors.New("event record: unknown format version")
	}
	switch b[0] {
	case recordV1:
		return decodeEventJSON(b)
	case recordV3:
	default:
		return nil, errors.New("event record: unknown format version")
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return nil, errors.New("event record: truncated")
	}
	meta := b[1+w : len(b)-int(n)]
	r := eventDecoder{decoder: decoder{b: meta}, s: string(meta)}
	e := &Event{
		ID:          r.string(),
		Type:        r.string(),
		Source:      r.string(),
		Time:        r.time(),
		Received:    r.time(),
		Headers:     r.headers(),
		ContentType: r.string(),
		TraceParent: r.string(),
		TraceState:  r.string(),
	}
	e.Routes, e.Deliveries = r.routes()
	e.DataBase64 = r.bool()
	e.Remaining = r.int()
	e.KeepUntil = r.varint()
	if err := r.done("event"); err != nil {
		return nil, err
	}
	if n > 0 {
		e.Data = append([]byte(nil), b[len(b)-int(n):]...)
	}
	return e, nil
}

// decodeEventJSON reads a recordV1 event record.
func decodeEventJSON(b []byte) (*Event, error) {
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || uint64(len(b)-1-w) < n {
		return nil, fmt.Errorf("event record: truncated")
	}
	meta := b[1+w : 1+w+int(n)]
	var e Event
	if err := json.Unmarshal(meta, &e); err != nil {
		return nil, fmt.Errorf("event record: %w", err)
	}
	e.Data = append([]byte(nil), b[1+w+int(n):]...)
	return &e, nil
}

// eventDecoder reads an event's metadata; its strings are slices of s,
// the metadata as one string.
type eventDecoder struct {
	decoder
	s string
}

func (d *eventDecoder) string() string {
	v := d.raw()
	if d.err != nil || len(v) == 0 {
		return ""
	}
	end := len(d.s) - len(d.b)
	return d.s[end-len(v) : end]
}

func (d *eventDecoder) headers() map[string]string {
	n := d.uvarint()
	// Each entry takes at least two length bytes.
	if n > uint64(len(d.b)/2) {
		d.fail(errTruncated)
		return nil
	}
	if n == 0 {
		return nil
	}
	h := make(map[string]string, n)
	for ; n > 0 && d.err == nil; n-- {
		k := d.string()
		h[k] = d.string()
	}
	return h
}

// routes reads the counts of Routes and Deliveries, then their
// strings, into one backing array; each is capped, so that appending to
// one never overwrites the other.
func (d *eventDecoder) routes() (routes, deliveries []string) {
	nr, nd := d.uvarint(), d.uvarint()
	// Each string takes at least its length byte.
	if nr > uint64(len(d.b)) || nd > uint64(len(d.b))-nr {
		d.fail(errTruncated)
		return nil, nil
	}
	if nr+nd == 0 {
		return nil, nil
	}
	all := make([]string, nr+nd)
	for i := range all {
		all[i] = d.string()
	}
	if nr > 0 {
		routes = all[:nr:nr]
	}
	if nd > 0 {
		deliveries = all[nr:]
	}
	return routes, deliveries
}

func encodeJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{recordV1}, b...), nil
}

func decodeJSON(b []byte, v any) error {
	if len(b) < 1 || b[0] != recordV1 {
		return fmt.Errorf("record: unknown format version")
	}
	return json.Unmarshal(b[1:], v)
}

// Idempotency keys map to dedupeV1, the key's expiry (unix ns, big
// endian) and the event id. Records written before the expiry was kept
// hold the bare event id (ids never start with a control byte); their
// window ends with their TTL.
const dedupeV1 = 1

func encodeDedupe(eventID string, until time.Time) []byte {
	b := make([]byte, 0, 9+len(eventID))
	b = append(b, dedupeV1)
	b = binary.BigEndian.AppendUint64(b, uint64(until.UnixNano()))
	return append(b, eventID...)
}

// decodeDedupe returns the event id of an idempotency record and, when
// it says, the end of its window; ok is false for a bare id.
func decodeDedupe(v []byte) (eventID string, until time.Time, ok bool) {
	if len(v) >= 9 && v[0] == dedupeV1 {
		return string(v[9:]), time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))), true
	}
	return string(v), time.Time{}, false
}
