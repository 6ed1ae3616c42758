package persist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Deliveries, attempts and event states are stored in a compact binary
// form, version byte recordV2: the fields in a fixed order, integers as
// varints, strings and bytes with a uvarint length, times as described
// at appendTime. A delivery so stays well under the value threshold, in
// the LSM tree, where the compactions drop the versions its outcomes
// overwrite (in the value log each version stayed until GC rewrote the
// file), and costs a fraction of JSON's CPU to write and read. Records
// written as JSON (recordV1) by earlier versions are still read. Events
// have a binary form of their own, recordV3 (codec.go), built from the
// same pieces.
const recordV2 = 2

var errTruncated = errors.New("truncated")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Time tags: how a time's location comes back. UTC and Local times
// decode as they were; any other zone decodes as a fixed zone with the
// same offset. (JSON chose by the offset instead: UTC at offset zero,
// Local at Local's offset at that instant, else a fixed zone. The
// instant, nanoseconds and offset are the same either way.)
const (
	timeZero  = 0
	timeUTC   = 1
	timeLocal = 2
	timeFixed = 3 // followed by the offset in seconds (varint)
)

// maxTimeSec bounds the unix seconds of a stored time: far beyond any
// real one, and far from where time.Unix would overflow.
const maxTimeSec = 1 << 60

// appendTime appends a tag, then, unless t is zero, its unix seconds
// (varint) and nanoseconds (uvarint). The monotonic reading is dropped.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, timeZero)
	}
	switch loc := t.Location(); loc {
	case time.UTC:
		b = append(b, timeUTC)
	case time.Local:
		b = append(b, timeLocal)
	default:
		_, off := t.Zone()
		b = binary.AppendVarint(append(b, timeFixed), int64(off))
	}
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decoder reads a binary record; the first error sticks, and every read
// after it returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errTruncated)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// int reads a varint that must fit an int.
func (d *decoder) int() int {
	v := d.varint()
	if v < math.MinInt || v > math.MaxInt {
		d.fail(errors.New("integer out of range"))
		return 0
	}
	return int(v)
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errTruncated)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.raw()) }

// bytes returns a copy (nil when empty): records are read from buffers
// Badger reuses.
func (d *decoder) bytes() []byte {
	v := d.raw()
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(errors.New("bad boolean"))
	return false
}

func (d *decoder) time() time.Time {
	tag := d.byte()
	if tag == timeZero {
		return time.Time{}
	}
	var loc *time.Location
	switch tag {
	case timeUTC:
		loc = time.UTC
	case timeLocal:
		loc = time.Local
	case timeFixed:
		off := d.varint()
		if off < -24*3600 || off > 24*3600 {
			d.fail(errors.New("bad time zone offset"))
			return time.Time{}
		}
		loc = time.FixedZone("", int(off))
	default:
		d.fail(errors.New("bad time tag"))
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 || sec < -maxTimeSec || sec > maxTimeSec {
		d.fail(errors.New("time out of range"))
		return time.Time{}
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).In(loc)
}

// done returns the first error, or one for bytes left over.
func (d *decoder) done(what string) error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return fmt.Errorf("%s record: %w", what, d.err)
	}
	return nil
}

// versionOf checks a record's version byte against those it may have.
func versionOf(b []byte, what string) (byte, error) {
	if len(b) >= 1 && (b[0] == recordV1 || b[0] == recordV2) {
		return b[0], nil
	}
	return 0, fmt.Errorf("%s record: unknown format version", what)
}

func encodeDelivery(d *Delivery) []byte {
	return appendDelivery(make([]byte, 0, deliverySize(d)), d)
}

// deliverySize is about what a delivery record takes, its attempt aside.
func deliverySize(d *Delivery) int {
	return 64 + len(d.ID) + len(d.EventID) + len(d.Route) + len(d.EventType) +
		len(d.LastClass) + len(d.LastError) + len(d.OrderKey)
}

// appendDelivery appends d's record to b.
func appendDelivery(b []byte, d *Delivery) []byte {
	b = append(b, recordV2)
	b = appendString(b, d.ID)
	b = appendString(b, d.EventID)
	b = appendString(b, d.Route)
	b = appendString(b, d.EventType)
	b = append(b, byte(d.Status))
	b = binary.AppendVarint(b, int64(d.Attempts))
	b = appendTime(b, d.Created)
	b = appendTime(b, d.Due)
	b = appendTime(b, d.LastAttempt)
	b = binary.AppendVarint(b, int64(d.LastStatus))
	b = appendString(b, d.LastClass)
	b = appendString(b, d.LastError)
	b = appendTime(b, d.Done)
	b = appendString(b, d.OrderKey)
	b = append(b, deliveryFlags(d))
	b = appendTime(b, d.ScheduleStart)
	b = binary.AppendVarint(b, int64(d.ScheduleBase))
	if d.attempt != nil {
		// Flagged by flagAttempt: records without it end above.
		a := encodeAttempt(d.attempt)
		b = binary.AppendUvarint(b, uint64(len(a)))
		b = append(b, a...)
	}
	return b
}

// decodeDelivery reads a delivery record of either version into d.
func decodeDelivery(b []byte, d *Delivery) error {
	v, err := versionOf(b, "delivery")
	if err != nil {
		return err
	}
	if v == recordV1 {
		return decodeJSON(b, d)
	}
	r := decoder{b: b[1:]}
	*d = Delivery{
		ID:          r.string(),
		EventID:     r.string(),
		Route:       r.string(),
		EventType:   r.string(),
		Status:      Status(r.byte()),
		Attempts:    r.int(),
		Created:     r.time(),
		Due:         r.time(),
		LastAttempt: r.time(),
		LastStatus:  r.int(),
		LastClass:   r.string(),
		LastError:   r.string(),
		Done:        r.time(),
		OrderKey:    r.string(),
	}
	// The operands of a composite literal are read in order; the flags
	// byte comes before the schedule fields.
	flags := r.byte()
	if flags&^flagsKnown != 0 {
		r.fail(errors.New("unknown delivery flags"))
	}
	d.ScheduleStart, d.ScheduleBase = r.time(), r.int()
	d.Waiting, d.sole = flags&flagWaiting != 0, flags&flagSole != 0
	if flags&flagAttempt != 0 {
		raw := r.raw()
		if r.err == nil {
			d.attempt = new(Attempt)
			if err := decodeAttempt(raw, d.attempt); err != nil {
				r.fail(err)
			}
		}
	}
	return r.done("delivery")
}

// The flags byte of a binary delivery record. It was a boolean (Waiting)
// until flagSole was added; both values of that boolean keep their
// meaning. flagAttempt says an attempt record follows the last field.
const (
	flagWaiting = 1 << iota
	flagSole
	flagAttempt
	flagsKnown = flagWaiting | flagSole | flagAttempt
)

func deliveryFlags(d *Delivery) byte {
	var f byte
	if d.Waiting {
		f |= flagWaiting
	}
	if d.sole {
		f |= flagSole
	}
	if d.attempt != nil {
		f |= flagAttempt
	}
	return f
}

func encodeAttempt(a *Attempt) []byte {
	b := make([]byte, 0, 40+len(a.Class)+len(a.Error)+len(a.Response)+len(a.TraceID))
	b = append(b, recordV2)
	b = binary.AppendVarint(b, int64(a.N))
	b = appendTime(b, a.Start)
	b = binary.AppendVarint(b, int64(a.Duration))
	b = binary.AppendVarint(b, int64(a.Status))
	b = appendString(b, a.Class)
	b = appendString(b, a.Error)
	b = binary.AppendUvarint(b, uint64(len(a.Response)))
	b = append(b, a.Response...)
	return appendString(b, a.TraceID)
}

// decodeAttempt reads an attempt record of either version into a.
func decodeAttempt(b []byte, a *Attempt) error {
	v, err := versionOf(b, "attempt")
	if err != nil {
		return err
	}
	if v == recordV1 {
		return decodeJSON(b, a)
	}
	r := decoder{b: b[1:]}
	*a = Attempt{
		N:        r.int(),
		Start:    r.time(),
		Duration: time.Duration(r.varint()),
		Status:   r.int(),
		Class:    r.string(),
		Error:    r.string(),
		Response: r.bytes(),
		TraceID:  r.string(),
	}
	return r.done("attempt")
}
