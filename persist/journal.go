package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// The ingest journal. An ingest is acknowledged once it is committed to
// Badger and its records are in the journal on disk: a file of hookgate's
// own, appended with write(2) and synced with fdatasync(2), once for every
// group written meanwhile. Badger's two logs, which it writes through
// memory maps, are then synced only by the syncer's checkpoints (about
// once a second), not once per group: syncing a mapped file
// write-protects every page it syncs, and the next write to the page
// faults, so with 1 KB events and a round every millisecond or two most
// of the logs' pages were synced, and faulted on, several times. Under
// the load harness the journal cut the outbox's CPU per event by about a
// tenth (README, Performance and footprint).
//
// A checkpoint (syncLoop) moves the journal to a new segment, syncs
// Badger's logs, then deletes the older segments: everything in them was
// committed before the move (an ingest is journaled after its commit), so
// Badger's logs now hold it on disk. Opening the outbox replays what
// segments are left, an ingest at a time: one whose event is stored and
// readable is skipped (the crash came after Badger's logs reached the
// disk), any other is written again as it was first written. The events
// a sweep deletes went through a checkpoint first (sweep), so a replay
// never brings back an event that was swept.

const (
	journalPrefix = "journal-"
	journalExt    = ".hgj"
	// journalIngest marks a record holding one ingest.
	journalIngest = 1
	// journalMaxRecord bounds a record's length as replay reads it, so a
	// corrupt length cannot make it allocate without bound.
	journalMaxRecord = 1 << 30
)

var journalCRC = crc32.MakeTable(crc32.Castagnoli)

// journalBufs holds the buffers groups are encoded into.
var journalBufs = sync.Pool{New: func() any { return new([]byte) }}

// journalOp is one submission to the journal's writer: data (framed
// records) to append, and fns to call once it is on disk; or, with rotate
// set, a request to move to a new segment once everything submitted
// before it is written.
type journalOp struct {
	data   *[]byte // from journalBufs, returned to it once written
	fns    []func(error)
	rotate chan rotated
}

type rotated struct {
	seg uint64 // the new segment: every older one may go after a sync
	err error
}

// journal is the writer's state; only its goroutine touches f and off.
type journal struct {
	dir string
	ch  chan journalOp
	// done is closed when the writer has returned.
	done chan struct{}
	f    *os.File
	seg  uint64
	off  int64 // bytes of f that hold whole records
	// dirty is set by writes since the last rotation (writer only;
	// rotations of a clean segment are skipped); broken by a failed
	// write that could not be cut off (see cut).
	dirty, broken bool
	// observe is told how long each write-and-sync took; before runs
	// first (a test's hook). Either may be nil.
	observe func(time.Duration)
	before  func()
}

func journalName(seg uint64) string {
	return fmt.Sprintf("%s%08d%s", journalPrefix, seg, journalExt)
}

// journalSegments lists the segments in dir, oldest first.
func journalSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range entries {
		if name, ok := strings.CutPrefix(e.Name(), journalPrefix); ok {
			if n, ok := logNumber(name, journalExt); ok {
				segs = append(segs, n)
			}
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// openJournal starts a writer on a new segment numbered seg.
func openJournal(dir string, seg uint64, before func(), observe func(time.Duration)) (*journal, error) {
	j := &journal{dir: dir, ch: make(chan journalOp, 1024), done: make(chan struct{}), seg: seg, before: before, observe: observe}
	if err := j.create(seg); err != nil {
		return nil, err
	}
	go j.loop()
	return j, nil
}

// create opens segment seg as the one written to, and syncs the
// directory so the file outlives a crash.
func (j *journal) create(seg uint64) error {
	f, err := os.OpenFile(filepath.Join(j.dir, journalName(seg)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating the outbox journal: %w", err)
	}
	if err := syncPath(j.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("creating the outbox journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.seg, j.off, j.dirty = f, seg, 0, false
	return nil
}

// submit hands op to the writer.
func (j *journal) submit(op journalOp) {
	j.ch <- op
}

// rotate moves the writer to a new segment once what was submitted
// before is written, and returns its number: every older segment may be
// deleted once Badger's logs are synced.
func (j *journal) rotate() (uint64, error) {
	c := make(chan rotated, 1)
	j.submit(journalOp{rotate: c})
	r := <-c
	return r.seg, r.err
}

// close stops the writer; nothing may be submitted after.
func (j *journal) close() {
	close(j.ch)
	<-j.done
}

// removeJournalBefore deletes the segments older than seg.
func removeJournalBefore(dir string, seg uint64) error {
	segs, err := journalSegments(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, n := range segs {
		if n >= seg {
			break
		}
		if err := os.Remove(filepath.Join(dir, journalName(n))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing a checkpointed journal segment: %w", err)
		}
		removed = true
	}
	if removed {
		// A removal lost in a crash would bring the segment back, and
		// a replay with it what was deleted since.
		if err := syncPath(dir); err != nil {
			return fmt.Errorf("removing checkpointed journal segments: %w", err)
		}
	}
	return nil
}

func (j *journal) loop() {
	defer close(j.done)
	defer func() {
		if j.f != nil {
			j.f.Close()
		}
	}()
	var (
		bufs []*[]byte
		size int
		fns  []func(error)
		rots []chan rotated
	)
	for op := range j.ch {
		bufs, size, fns, rots = bufs[:0], 0, fns[:0], rots[:0]
		add := func(op journalOp) {
			if op.data != nil {
				bufs = append(bufs, op.data)
				size += len(*op.data)
			}
			fns = append(fns, op.fns...)
			if op.rotate != nil {
				rots = append(rots, op.rotate)
			}
		}
		add(op)
		// Everything else already waiting shares the write and the sync.
	drain:
		for size < 8<<20 {
			select {
			case op, ok := <-j.ch:
				if !ok {
					break drain
				}
				add(op)
			default:
				break drain
			}
		}
		var err error
		if len(fns) > 0 || size > 0 {
			start := time.Now()
			if j.before != nil {
				j.before()
			}
			err = j.write(bufs, size)
			if j.observe != nil && err == nil {
				j.observe(time.Since(start))
			}
		}
		for _, b := range bufs {
			*b = (*b)[:0]
			if cap(*b) <= 4<<20 {
				journalBufs.Put(b)
			}
		}
		clear(bufs)
		for _, fn := range fns {
			fn(err)
		}
		for _, c := range rots {
			r := rotated{seg: j.seg}
			if j.dirty {
				if r.err = j.create(j.seg + 1); r.err == nil {
					r.seg = j.seg
				}
			}
			c <- r
		}
	}
}

// write appends the groups' buffers (size bytes in all) with as few
// writev(2) calls as the system allows, and syncs them. A failed write is
// cut off again, so the segment never holds a torn record before later
// whole ones.
func (j *journal) write(bufs []*[]byte, size int) error {
	if j.broken {
		if err := j.create(j.seg + 1); err != nil {
			return fmt.Errorf("outbox journal: a write failed and could not be cut off, and a new segment could not be started: %w", err)
		}
		j.broken = false
	}
	if size > 0 {
		iov := make([][]byte, 0, len(bufs))
		for _, b := range bufs {
			if len(*b) > 0 {
				iov = append(iov, *b)
			}
		}
		fd := int(j.f.Fd())
		for len(iov) > 0 {
			n, err := unix.Writev(fd, iov[:min(len(iov), 1024)])
			if err == unix.EINTR {
				continue
			}
			if err == nil && n == 0 {
				err = io.ErrShortWrite
			}
			if err != nil {
				j.cut()
				return fmt.Errorf("writing the outbox journal: %w", err)
			}
			// Drop what was written, partly written buffers included.
			for n > 0 {
				if n < len(iov[0]) {
					iov[0] = iov[0][n:]
					break
				}
				n -= len(iov[0])
				iov = iov[1:]
			}
		}
		j.dirty = true
	}
	if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
		// Its ingests are answered with the error: they need not be
		// replayed, and whole records after them must not sit beyond
		// an offset the next failure would cut back to.
		j.cut()
		return fmt.Errorf("syncing the outbox journal: %w", err)
	}
	j.off += int64(size)
	return nil
}

// cut drops what was written after the last whole, synced record. If it
// cannot, the segment is given up: the next write starts a new one, so
// no acknowledged record ever follows a torn one (replay stops at it).
func (j *journal) cut() {
	if err := j.f.Truncate(j.off); err != nil {
		j.broken = true
		return
	}
	if _, err := j.f.Seek(j.off, io.SeekStart); err != nil {
		j.broken = true
	}
}

// appendJournalIngest appends in, as applyIngest wrote it, as one framed
// record: length, CRC-32C, then the event record (ev, or encoded here if
// nil) and each delivery record, each after its length (4 bytes, little
// endian), then the idempotency key, whether it is kept without
// deliveries, and when it was stored (the store's clock, for the
// idempotency window).
func appendJournalIngest(b []byte, in *Ingest, ev []byte, at time.Time) []byte {
	if ev == nil {
		ev = encodeEvent(in.Event)
	}
	start := len(b)
	b = append(b, make([]byte, 8)...)
	b = append(b, journalIngest)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ev)))
	b = append(b, ev...)
	b = binary.AppendUvarint(b, uint64(len(in.Deliveries)))
	for _, d := range in.Deliveries {
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		b = appendDelivery(b, d)
		binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	}
	b = appendString(b, in.Dedupe)
	keep := byte(0)
	if in.Keep {
		keep = 1
	}
	b = append(b, keep)
	b = binary.AppendVarint(b, at.UnixNano())
	payload := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, journalCRC))
	return b
}

// journalIngestSize is about what appendJournalIngest appends, for its
// caller to size the buffer once for a group.
func journalIngestSize(in *Ingest, ev []byte) int {
	n := 48 + len(ev) + len(in.Dedupe)
	for _, d := range in.Deliveries {
		n += 4 + deliverySize(d)
	}
	return n
}

// readJournal parses a segment's records, calling fn with each ingest. It
// stops at the first record that is not whole and intact (a write the
// crash cut short) and says how many bytes it left unread.
func readJournal(data []byte, fn func(r journalRecord) error) (rest int, err error) {
	for len(data) > 0 {
		if len(data) < 8 {
			return len(data), nil
		}
		n := binary.LittleEndian.Uint32(data)
		sum := binary.LittleEndian.Uint32(data[4:])
		if n == 0 || n > journalMaxRecord || int64(n) > int64(len(data)-8) {
			return len(data), nil
		}
		payload := data[8 : 8+n]
		if crc32.Checksum(payload, journalCRC) != sum {
			return len(data), nil
		}
		r, err := decodeJournalIngest(payload)
		if err != nil {
			return len(data), err
		}
		if err := fn(r); err != nil {
			return len(data), err
		}
		data = data[8+n:]
	}
	return 0, nil
}

// journalRecord is an ingest as the journal holds it: ev is its event
// record as stored, at when it was stored.
type journalRecord struct {
	in Ingest
	ev []byte
	at time.Time
}

func decodeJournalIngest(p []byte) (journalRecord, error) {
	var jr journalRecord
	if len(p) == 0 || p[0] != journalIngest {
		return jr, errors.New("journal record: unknown kind")
	}
	r := decoder{b: p[1:]}
	raw := r.fixed()
	ev, err := decodeEvent(raw)
	if r.err != nil {
		return jr, fmt.Errorf("journal record: %w", r.err)
	}
	if err != nil {
		return jr, fmt.Errorf("journal record: %w", err)
	}
	in := Ingest{Event: ev}
	nd := r.uvarint()
	for i := uint64(0); i < nd && r.err == nil; i++ {
		d := new(Delivery)
		rec := r.fixed()
		if r.err != nil {
			break
		}
		if err := decodeDelivery(rec, d); err != nil {
			return jr, fmt.Errorf("journal record (event %s): %w", ev.ID, err)
		}
		in.Deliveries = append(in.Deliveries, d)
	}
	in.Dedupe = r.string()
	in.Keep = r.byte() == 1
	at := r.varint()
	if r.err != nil {
		return jr, fmt.Errorf("journal record (event %s): %w", ev.ID, r.err)
	}
	return journalRecord{in: in, ev: raw, at: time.Unix(0, at)}, nil
}

// replayJournal writes again what the journal's segments hold and Badger
// lost, syncs Badger's logs and deletes the segments. It runs in Open,
// before the committer starts, and returns the number to give the next
// segment.
func (s *Badger) replayJournal() (next uint64, err error) {
	segs, err := journalSegments(s.opts.Dir)
	if err != nil || len(segs) == 0 {
		return 1, err
	}
	var recs []journalRecord
	for _, seg := range segs {
		path := filepath.Join(s.opts.Dir, journalName(seg))
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("reading the outbox journal: %w", err)
		}
		rest, err := readJournal(data, func(r journalRecord) error {
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			// Intact (its checksum holds) but not a record this release
			// can read: refuse to start rather than drop acknowledged
			// events without a word.
			return 0, fmt.Errorf("replaying the outbox journal %s: %w (to start without what it holds, move the file out of the directory)", path, err)
		}
		if rest > 0 {
			// The tail of a write the crash cut short: never acknowledged.
			s.opts.Logger.Warningf("outbox journal %s: ignored %d bytes of an unfinished write at its end", path, rest)
		}
	}
	// An id used again (its first event gone by a short retention) has
	// a record per use: the last is the one to keep, since an earlier one
	// written first would make it a duplicate. Likewise an idempotency
	// key used again (its window over) was given up by the earlier use.
	lastID := make(map[string]int, len(recs))
	lastKey := make(map[string]int)
	for i, r := range recs {
		lastID[r.in.Event.ID] = i
		if r.in.Dedupe != "" {
			lastKey[r.in.Dedupe] = i
		}
	}
	replayed, skipped := 0, 0
	for i, r := range recs {
		if lastID[r.in.Event.ID] != i {
			skipped++
			continue
		}
		if r.in.Dedupe != "" && lastKey[r.in.Dedupe] != i {
			r.in.Dedupe = ""
		}
		wrote, err := s.replayIngest(r)
		if err != nil {
			return 0, fmt.Errorf("replaying the outbox journal (event %s): %w", r.in.Event.ID, err)
		}
		if wrote {
			replayed++
		} else {
			skipped++
		}
	}
	if err := s.syncLogs(); err != nil {
		return 0, err
	}
	if replayed > 0 {
		s.opts.Logger.Infof("outbox journal: wrote again %d acknowledged events that were not in the outbox's logs after the last stop (%d were)", replayed, skipped)
	}
	newest := segs[len(segs)-1]
	if err := removeJournalBefore(s.opts.Dir, newest+1); err != nil {
		return 0, err
	}
	return newest + 1, nil
}

// replayIngest writes r's ingest unless its event is stored as r's
// record, and says whether it wrote anything.
func (s *Badger) replayIngest(r journalRecord) (bool, error) {
	in, ev, now := r.in, r.ev, s.now()
	// An idempotency key past its window would have expired by its TTL.
	if in.Dedupe != "" && !r.at.Add(s.retention.Load().Dedupe).After(now) {
		in.Dedupe = ""
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	switch item, err := txn.Get(eventKey(in.Event.ID)); {
	case err == nil:
		raw, verr := item.ValueCopy(nil)
		if verr == nil && bytes.Equal(raw, ev) {
			// Stored as written; a delivery record big enough for the
			// value log may still have lost its payload.
			wrote, err := s.repairDeliveries(txn, in.Deliveries)
			if err != nil || !wrote {
				return false, err
			}
			return true, txn.Commit()
		}
		if verr == nil {
			if _, derr := decodeEvent(raw); derr == nil {
				// An earlier use of the id, readable: applyIngest below
				// forgets it if it is gone (as it was when this use was
				// acknowledged).
				break
			}
		}
		// Its key reached the disk and its payload did not (a power
		// failure between checkpoints).
		ours, err := s.ownsKey(txn, in)
		if err != nil {
			return false, err
		}
		if !ours {
			// The key of an earlier use of the id, whose payload was
			// lost; this use's transaction was lost whole.
			st, _, err := txnState(txn, in.Event.ID)
			if err != nil {
				return false, err
			}
			if err := forgetEvent(txn, in.Event.ID, &st); err != nil {
				return false, err
			}
			break
		}
		// This ingest's transaction reached the disk, with whatever
		// outcomes changed since: the event record is written again as
		// it was (with the expiry it had), and any delivery record
		// whose payload was lost with it as it was first written.
		e := badger.NewEntry(eventKey(in.Event.ID), ev)
		e.ExpiresAt = item.ExpiresAt()
		if err := txn.SetEntry(e); err != nil {
			return false, err
		}
		if _, err := s.repairDeliveries(txn, in.Deliveries); err != nil {
			return false, err
		}
		return true, txn.Commit()
	case !errors.Is(err, badger.ErrKeyNotFound):
		return false, err
	default:
		// A kept event without deliveries past its KeepUntil: Badger's
		// TTL would have expired it by now.
		if len(in.Deliveries) == 0 && in.Event.KeepUntil != 0 && in.Event.KeepUntil <= now.UnixNano() {
			return false, nil
		}
	}
	in.Fresh = false
	res, err := s.applyIngest(txn, []Ingest{in}, nil)
	if err != nil {
		return false, err
	}
	if res[0].Duplicate {
		return false, nil
	}
	if err := txn.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

// ownsKey says whether the stored key of in's event was written by in:
// its deliveries were written in the same transaction, with ids of their
// own, and once they are final (their records may have expired since)
// its state record names its received time. An ingest without
// deliveries cannot tell, and is taken as the writer.
func (s *Badger) ownsKey(txn *badger.Txn, in Ingest) (bool, error) {
	if len(in.Deliveries) == 0 {
		return true, nil
	}
	for _, d := range in.Deliveries {
		_, err := txn.Get(deliveryKey(d.ID))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return false, err
		}
	}
	st, has, err := txnState(txn, in.Event.ID)
	if err != nil {
		return false, err
	}
	return has && st.received.Equal(in.Event.Received), nil
}

// repairDeliveries writes each of ds again, as the ingest wrote it, whose
// stored record does not read (its payload was in the value log's lost
// tail), and says whether it wrote any. An outcome such a record held is
// lost with it: the delivery is sent again (a ready entry an outcome
// wrote since is in the LSM tree and stays: the claim of either reads
// the record).
func (s *Badger) repairDeliveries(txn *badger.Txn, ds []*Delivery) (bool, error) {
	wrote := false
	for _, d := range ds {
		item, err := txn.Get(deliveryKey(d.ID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue // final and expired by its TTL since
		}
		if err != nil {
			return false, err
		}
		if item.Value(func(v []byte) error { return decodeDelivery(v, new(Delivery)) }) == nil {
			continue
		}
		if err := s.putDelivery(txn, d, 0); err != nil {
			return false, err
		}
		// A waiting one's order index entry, small, is in the LSM tree.
		if !d.Waiting {
			if err := txn.Set(readyKey(d.Route, d.Due, d.ID), nil); err != nil {
				return false, err
			}
		}
		wrote = true
	}
	return wrote, nil
}

// fixed reads what a 4-byte little-endian length precedes.
func (d *decoder) fixed() []byte {
	if len(d.b) < 4 {
		d.fail(errTruncated)
		return nil
	}
	n := binary.LittleEndian.Uint32(d.b)
	if uint64(n) > uint64(len(d.b)-4) {
		d.fail(errTruncated)
		return nil
	}
	v := d.b[4 : 4+n : 4+n]
	d.b = d.b[4+n:]
	return v
}
