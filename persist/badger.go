package persist

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options configure a Badger outbox. Zero values take the defaults noted.
type Options struct {
	// Dir is the database directory; it is created if missing.
	Dir string
	// DedupeWindow is how long an idempotency key is remembered. Default 24h.
	DedupeWindow time.Duration
	// Retention is how long delivered deliveries (and their events and
	// attempt logs) are kept for look-up. Default 72h.
	Retention time.Duration
	// DeadRetention is how long dead deliveries are kept. Default 30 days.
	DeadRetention time.Duration
	// AttemptLog caps the attempts kept per delivery; older ones are
	// dropped. Default 50.
	AttemptLog int
	// GCInterval is how often value-log garbage collection runs. Default 5m.
	GCInterval time.Duration
	// Logger receives Badger's own log lines; nil discards them.
	Logger Logger
	// Now is the clock the store reads whenever it needs the time: the
	// end of a dedupe window, an event's KeepUntil, the due time of an
	// ordered delivery promoted when its predecessor is final. The engine
	// passes its own, so one clock rules both; nil means time.Now.
	//
	// Badger's own expiry of records (retention, and collecting old
	// idempotency keys) runs on the wall clock, with one-second
	// granularity: a record is written with a TTL computed from this
	// clock, and disappears when that much wall time has passed.
	Now func() time.Time

	// MinFree is the free space, in bytes, the outbox's file system must
	// keep: below it Ingest fails with ErrStorageFull, below half of it
	// (the hard reserve) Record does too and Open refuses to start.
	// Default DefaultMinFree.
	MinFree int64
	// MaxStorage caps the space the outbox directory takes, in bytes:
	// above it Ingest fails with ErrStorageFull. Zero: no cap.
	MaxStorage int64
	// OnSpace is called when ingest starts or stops being refused for
	// space, or outcomes are, with the new state. It runs on the writing
	// goroutine and must not call into the store.
	OnSpace func(Space)
	// Observe, if set, is told how long making writes durable takes
	// (see Observer). The Badger outbox reports to it; NATS does not.
	Observe Observer

	// probe measures free space; tests replace it.
	probe spaceProbe
	// Tests shrink the logs' files, to see them move to new ones, and
	// watch sync rounds: beforeSync runs at the start of each.
	memTableSize, vlogFileSize int64
	beforeSync                 func()
	// beforeJournalSync runs before each journal sync; noCheckpoint
	// keeps every journal segment, as a crash before a checkpoint would.
	beforeJournalSync func()
	noCheckpoint      bool
	// tune, if set, changes Badger's options last (benchmarks try
	// settings with it).
	tune func(badger.Options) badger.Options
	// memReturn replaces how returnLoop measures and returns memory.
	memReturn memReturn
	// sweepEvery replaces sweepInterval; tests set it negative to run
	// no sweeper.
	sweepEvery time.Duration
}

// valueThreshold is the size from which Badger stores a value in the
// value log rather than in the LSM tree (see Open).
const valueThreshold = 256

// Logger is the logging interface Badger uses.
type Logger interface {
	Errorf(string, ...any)
	Warningf(string, ...any)
	Infof(string, ...any)
	Debugf(string, ...any)
}

type nopLogger struct{}

func (nopLogger) Errorf(string, ...any)   {}
func (nopLogger) Warningf(string, ...any) {}
func (nopLogger) Infof(string, ...any)    {}
func (nopLogger) Debugf(string, ...any)   {}

// Badger is the embedded outbox. Every write goes through one committer
// goroutine, which drains whatever is waiting into one transaction and
// syncs once: that is what lets concurrent ingests share an fsync.
type Badger struct {
	// flushGate keeps commit groups (read side) and memtable flushes
	// (write side, flattenAll) apart.
	flushGate sync.RWMutex
	db        *badger.DB
	opts      Options
	// retention is read by the committer for every write; SetRetention
	// swaps it when a reload changes the config.
	retention atomic.Pointer[Retention]
	now       func() time.Time
	// space refuses writes before the file system runs dry (space.go).
	space *spaceGuard
	// gcNow asks gcLoop for a value-log GC now: ingest was just refused.
	gcNow chan struct{}

	ingestCh chan *ingestReq
	recordCh chan recordReq
	// sync makes commits durable (durable.go); syncing is the current
	// group's committed durable units, handed to it at the group's end
	// (committer only).
	sync    *syncer
	syncing []func(error)
	// journal makes ingests durable (journal.go); journaling is the
	// current group's committed ingests (committer only).
	journal    *journal
	journaling []unit
	// moved maps pending deliveries a Requeue moved to an earlier due
	// time to the ready entry it wrote. An attempt claimed before the
	// move records with the old due time; applyRecord removes the new
	// entry too, so none is left behind. Only the committer uses it.
	moved map[string]time.Time
	// ord is the order-index changes of the committer's current
	// transaction (see ordered.go).
	ord *orderTxn
	// epoch marks the sole deliveries this store ingested (Delivery.epoch)
	// and stated the events among them whose state record was written
	// since: see knownStateless. Only the committer uses them.
	epoch  uint64
	stated map[string]struct{}
	// sweptTo is the wall-clock second (unix) every sweeper entry due
	// before which is swept, and sweeps counts sweeps (see sweep).
	sweptTo, sweeps atomic.Int64

	closeMu sync.RWMutex
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
	// reads counts look-ups in progress; Close waits for them before it
	// closes the database, which would otherwise pull files from under a
	// running iterator (Badger panics with "DB Closed").
	reads sync.WaitGroup
}

var _ Store = (*Badger)(nil)

// Open opens (or creates) the outbox in opts.Dir. Deliveries that were in
// flight when the previous process stopped are still in the ready index
// (claims live only in memory), so they are due again at once.
func Open(opts Options) (*Badger, error) {
	if opts.Dir == "" {
		return nil, errors.New("outbox directory is empty")
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = 24 * time.Hour
	}
	if opts.Retention <= 0 {
		opts.Retention = 72 * time.Hour
	}
	if opts.DeadRetention <= 0 {
		opts.DeadRetention = 30 * 24 * time.Hour
	}
	if opts.AttemptLog <= 0 {
		opts.AttemptLog = 50
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = nopLogger{}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	// Checked before Badger opens: replaying its logs and starting a new
	// memtable on a full disk would crash the process (space.go).
	space := newSpaceGuard(opts.Dir, opts.MinFree, opts.MaxStorage, opts.probe, now, nil)
	if err := space.checkOpen(); err != nil {
		return nil, err
	}

	bo := badger.DefaultOptions(opts.Dir).
		WithLogger(opts.Logger).
		// Durability: the syncer syncs what must be durable, once for
		// every group committed meanwhile (durable.go); Badger's own
		// sync would make every transaction wait for its fsync.
		WithSyncWrites(false).
		// One writer goroutine: there are no conflicts to detect.
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		// Sized for a small daemon rather than a database server: these
		// bound resident memory with a large backlog.
		WithMemTableSize(cmp.Or(opts.memTableSize, memTableSize)).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithNumCompactors(2).
		// Event bodies (about 1 KB) go to the value log, so the LSM holds
		// only small records: with them inline, compactions of a 1M backlog
		// held over 1 GB of table-builder buffers and ingest ran at half
		// the speed. Compression would cost CPU and buffers for little.
		WithValueThreshold(valueThreshold).
		WithNumMemtables(3).
		WithCompression(options.None).
		// Small enough that GC can reclaim a file on a small disk, and
		// that its rewrite fits in the free space kept (space.go).
		WithValueLogFileSize(cmp.Or(opts.vlogFileSize, valueLogFileSize))
	if opts.tune != nil {
		bo = opts.tune(bo)
	}
	db, err := badger.Open(bo)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("outbox %s is in use by another process: "+
				"only one hookgate may open a storage directory (to change the "+
				"config of a running Caddy, use 'caddy reload'): %w", opts.Dir, err)
		}
		return nil, fmt.Errorf("opening outbox %s: %w", opts.Dir, err)
	}
	sy, err := newSyncer(opts.Dir)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening outbox %s: %w", opts.Dir, err)
	}
	s := &Badger{
		db:       db,
		sync:     sy,
		opts:     opts,
		now:      now,
		space:    space,
		gcNow:    make(chan struct{}, 1),
		ingestCh: make(chan *ingestReq, 1024),
		recordCh: make(chan recordReq, 4096),
		moved:    make(map[string]time.Time),
		epoch:    epochs.Add(1),
		stated:   make(map[string]struct{}, maxStated),
		stop:     make(chan struct{}),
	}
	space.onChange = func(sp Space) {
		if sp.Full {
			select {
			case s.gcNow <- struct{}{}:
			default:
			}
		}
		if opts.OnSpace != nil {
			opts.OnSpace(sp)
		}
	}
	s.retention.Store(&Retention{Dedupe: opts.DedupeWindow, Delivered: opts.Retention, Dead: opts.DeadRetention})
	// Before anything is written: what the last process acknowledged and
	// Badger's logs lost is written again first.
	next, err := s.replayJournal()
	if err == nil {
		s.journal, err = openJournal(opts.Dir, next, opts.beforeJournalSync, func(d time.Duration) {
			if o := opts.Observe; o != nil {
				o.SyncRound(d)
			}
		})
	}
	if err != nil {
		sy.logs.close()
		db.Close()
		return nil, fmt.Errorf("opening outbox %s: %w", opts.Dir, err)
	}
	s.wg.Add(7)
	go s.commitLoop()
	go s.tablesLoop()
	go s.syncLoop()
	go s.gcLoop()
	go s.trimLoop()
	go s.sweepLoop()
	go s.returnLoop()
	return s, nil
}

// SetRetention implements Store. Zero values keep the current setting.
// It applies to records written from now on; what is stored keeps the
// expiry it was written with.
func (s *Badger) SetRetention(dedupe, delivered, dead time.Duration) {
	r := s.retention.Load().With(dedupe, delivered, dead)
	s.retention.Store(&r)
}

// Ingest implements Store.
func (s *Badger) Ingest(ctx context.Context, batch []Ingest) ([]IngestResult, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	r := &ingestReq{batch: batch, res: make([]IngestResult, len(batch)), recs: make([][]byte, len(batch)), left: len(batch), done: make(chan struct{})}
	for i, in := range batch {
		if in.Event == nil {
			return nil, fmt.Errorf("ingest %d: no event", i)
		}
		for _, d := range in.Deliveries {
			if d == nil {
				return nil, fmt.Errorf("ingest %d (event %s): nil delivery", i, in.Event.ID)
			}
			if err := checkRoute(d.Route); err != nil {
				return nil, fmt.Errorf("ingest %d (event %s): %w", i, in.Event.ID, err)
			}
		}
		r.size += len(in.Event.Data) + 512 + 256*len(in.Deliveries)
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ErrClosed
	}
	if s.opts.Observe != nil {
		r.submitted = time.Now()
	}
	select {
	case s.ingestCh <- r:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	s.closeMu.RUnlock()
	// Once submitted, wait for the commit even if ctx ends: the committer
	// owns r until it closes done.
	<-r.done
	if o := s.opts.Observe; o != nil && r.err == nil {
		o.IngestWait(r.committed.Sub(r.submitted), time.Since(r.committed))
	}
	if r.err != nil {
		return nil, r.err
	}
	return r.res, nil
}

// Record implements Store.
func (s *Badger) Record(o Outcome, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if o.Delivery == nil {
		done(errors.New("outcome has no delivery"))
		return
	}
	if err := checkRoute(o.Delivery.Route); err != nil {
		done(fmt.Errorf("delivery %s: %w", o.Delivery.ID, err))
		return
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		done(ErrClosed)
		return
	}
	s.recordCh <- recordReq{o: o, done: done}
}

// Close implements Store.
func (s *Badger) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	close(s.stop)
	s.wg.Wait()
	s.reads.Wait()
	s.sync.logsMu.Lock()
	s.sync.logs.close()
	s.sync.logsMu.Unlock()
	return s.db.Close()
}

// beginRead admits a look-up unless Close has begun; a true return must
// be paired with s.reads.Done(). The lock is held only to order Add
// before Close's Wait, so a skip callback may call back into the store.
func (s *Badger) beginRead() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return false
	}
	s.reads.Add(1)
	return true
}

// view runs fn in a read transaction, guarded against Close like every
// read: ErrClosed once closing began, never a Badger panic.
func (s *Badger) view(fn func(txn *badger.Txn) error) error {
	if !s.beginRead() {
		return ErrClosed
	}
	defer s.reads.Done()
	err := s.db.View(fn)
	if errors.Is(err, badger.ErrDBClosed) {
		err = ErrClosed
	}
	return err
}

// applyIngest writes a batch of ingests. An ingest is a duplicate, and
// writes nothing, when its Dedupe key is live (remembered less than the
// dedupe window ago, by s.now) or when an event with its id is still
// stored: an event record is never overwritten, so the deliveries made
// for it always send its own payload. An id whose event is gone (every
// delivery final and retention over) and whose key is past the window
// may be used again and gets a fresh record.
func (s *Badger) applyIngest(txn *badger.Txn, batch []Ingest, recs [][]byte) ([]IngestResult, error) {
	res := make([]IngestResult, len(batch))
	now := s.now()
	for i, in := range batch {
		ev := in.Event
		if in.Dedupe != "" {
			id, live, err := s.dedupeLookup(txn, in.Dedupe, now)
			if err != nil {
				return nil, err
			}
			if live {
				res[i] = IngestResult{Duplicate: true, ID: id}
				continue
			}
		}
		// A state record exists only beside its event's record (they are
		// written and swept together), so a new id costs one look-up, and
		// an id made for this ingest none.
		var (
			st       eventState
			hasState bool
		)
		if !in.Fresh {
			switch _, err := txn.Get(eventKey(ev.ID)); {
			case err == nil:
				if st, hasState, err = txnState(txn, ev.ID); err != nil {
					return nil, err
				}
				if !(hasState && st.gone(wallSeconds())) {
					// Still held (its deliveries unfinished, or retained):
					// a duplicate whatever the dedupe window says.
					res[i] = IngestResult{Duplicate: true, ID: ev.ID}
					continue
				}
			case !errors.Is(err, badger.ErrKeyNotFound):
				return nil, err
			}
		}
		if hasState {
			// Expired, not yet swept: nothing of it may outlive this.
			if err := forgetEvent(txn, ev.ID, &st); err != nil {
				return nil, err
			}
		}
		if in.Dedupe != "" {
			window := s.retention.Load().Dedupe
			e := badger.NewEntry(dedupeKey(in.Dedupe), encodeDedupe(ev.ID, now.Add(window))).WithTTL(window)
			if err := txn.SetEntry(e); err != nil {
				return nil, err
			}
		}
		res[i] = IngestResult{ID: ev.ID}
		if len(in.Deliveries) == 0 && !in.Keep {
			continue
		}
		ev.Remaining = len(in.Deliveries)
		ev.Deliveries = ev.Deliveries[:0]
		for _, d := range in.Deliveries {
			ev.Deliveries = append(ev.Deliveries, d.ID)
		}
		if ev.Remaining == 0 {
			// Set before encoding, so the stored record says it too.
			ev.KeepUntil = now.Add(s.retention.Load().Delivered).UnixNano()
		}
		rec := encodeEvent(ev)
		if recs != nil {
			recs[i] = rec
		}
		entry := badger.NewEntry(eventKey(ev.ID), rec)
		index := badger.NewEntry(receivedKey(ev.Received, ev.ID), nil)
		if ev.Remaining == 0 {
			entry = entry.WithTTL(s.retention.Load().Delivered)
			index = index.WithTTL(s.retention.Load().Delivered)
		}
		if err := txn.SetEntry(entry); err != nil {
			return nil, err
		}
		if err := txn.SetEntry(index); err != nil {
			return nil, err
		}
		// What outcomes change is kept apart from the event, which is
		// never written again (see evstate.go). An event with one
		// delivery gets its state when that delivery is final: until
		// then its record says all, and the delivery knows it is the
		// only one.
		sole := ev.Remaining == 1 && in.Deliveries[0].Created.Equal(ev.Received)
		if ev.Remaining > 0 && !sole {
			if err := putState(txn, ev.ID, &eventState{remaining: ev.Remaining, received: ev.Received}); err != nil {
				return nil, err
			}
		}
		for _, d := range in.Deliveries {
			d.sole = sole
			if sole {
				d.epoch = s.epoch
			}
			if err := s.orderEnter(txn, d); err != nil {
				return nil, err
			}
			if err := s.putDelivery(txn, d, 0); err != nil {
				return nil, err
			}
			if d.Waiting {
				// Behind an earlier delivery of its order key: it enters
				// the ready index when that one is final.
				continue
			}
			if err := txn.Set(readyKey(d.Route, d.Due, d.ID), nil); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// dedupeLookup returns the event id stored under an idempotency key and
// whether the key is still live at now. The window is judged by the
// store's clock, from the expiry kept in the value; Badger's TTL on the
// key (wall clock, one-second granularity) only collects it afterwards.
func (s *Badger) dedupeLookup(txn *badger.Txn, key string, now time.Time) (string, bool, error) {
	item, err := txn.Get(dedupeKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return "", false, err
	}
	id, until, ok := decodeDedupe(v)
	if ok && !now.Before(until) {
		return id, false, nil
	}
	return id, true, nil
}

func (s *Badger) putDelivery(txn *badger.Txn, d *Delivery, ttl time.Duration) error {
	return setEntry(txn, deliveryKey(d.ID), encodeDelivery(d), ttl)
}

func (s *Badger) applyRecord(txn *badger.Txn, o Outcome) error {
	d := o.Delivery
	if err := txn.Delete(readyKey(d.Route, o.ClaimedDue, d.ID)); err != nil {
		return err
	}
	// The entry is forgotten once this commits (apply may run again in
	// a new transaction when a group is split).
	if due, ok := s.moved[d.ID]; ok {
		if !due.Equal(o.ClaimedDue) {
			if err := txn.Delete(readyKey(d.Route, due, d.ID)); err != nil {
				return err
			}
		}
	}
	if d.Status == StatusPending {
		if err := s.putDelivery(txn, d, 0); err != nil {
			return err
		}
		if err := txn.Set(readyKey(d.Route, d.Due, d.ID), nil); err != nil {
			return err
		}
		return s.putAttempt(txn, d.ID, o.Attempt, 0)
	}

	if err := s.orderFinish(txn, d); err != nil {
		return err
	}

	// Final deliveries are indexed by route and the time they ended, so
	// they can be listed and replayed without scanning every record:
	// x| for dead ones, v| for delivered ones; both expire with them.
	ttl, index := s.retention.Load().Final(d.Status), doneKey(d.Route, d.Done, d.ID)
	if d.Status == StatusDead {
		index = deadKey(d.Route, d.Done, d.ID)
	}
	if err := txn.SetEntry(badger.NewEntry(index, nil).WithTTL(ttl)); err != nil {
		return err
	}
	if err := s.putFinal(txn, d, o.Attempt, ttl); err != nil {
		return err
	}
	return s.finishEventDelivery(txn, d, ttl)
}

// putFinal writes a final delivery and the attempt it ended with, both
// expiring after ttl, with the earlier attempts.
func (s *Badger) putFinal(txn *badger.Txn, d *Delivery, a *Attempt, ttl time.Duration) error {
	if a != nil && a.N == 1 {
		// Its first attempt was its last, as for most deliveries: there
		// is no history, and the attempt goes in the delivery's record,
		// one write instead of two, if the record stays small enough for
		// the LSM tree (under valueThreshold).
		rec := *d
		rec.attempt = a
		if v := encodeDelivery(&rec); len(v) < valueThreshold {
			return setEntry(txn, deliveryKey(d.ID), v, ttl)
		}
	}
	if err := s.putDelivery(txn, d, ttl); err != nil {
		return err
	}
	if err := s.putAttempt(txn, d.ID, a, ttl); err != nil {
		return err
	}
	if a == nil || a.N > 1 {
		// Earlier attempts expire with the delivery.
		return s.expireAttempts(txn, d.ID, a, ttl)
	}
	return nil
}

// setEntry writes k, expiring after ttl if ttl > 0.
func setEntry(txn *badger.Txn, k, v []byte, ttl time.Duration) error {
	e := badger.NewEntry(k, v)
	if ttl > 0 {
		e = e.WithTTL(ttl)
	}
	return txn.SetEntry(e)
}

func (s *Badger) putAttempt(txn *badger.Txn, deliveryID string, a *Attempt, ttl time.Duration) error {
	if a == nil {
		return nil
	}
	if err := setEntry(txn, attemptKey(deliveryID, a.N), encodeAttempt(a), ttl); err != nil {
		return err
	}
	if old := a.N - s.opts.AttemptLog; old >= 1 {
		return txn.Delete(attemptKey(deliveryID, old))
	}
	return nil
}

func (s *Badger) expireAttempts(txn *badger.Txn, deliveryID string, current *Attempt, ttl time.Duration) error {
	// The earlier attempts are read from a snapshot, not with an iterator
	// on txn: Badger sorts all of a write transaction's pending writes
	// each time an iterator is opened on it, which made a group commit of
	// many final outcomes quadratic (a replay delivering 20,000 at once
	// kept the committer busy for a minute). Only the committer writes,
	// so the snapshot holds everything txn started from; of this
	// delivery's attempts, txn holds only the current one, and the
	// deletion of the one it pushed out of the log.
	dropped := 0
	if current != nil {
		dropped = current.N - s.opts.AttemptLog
	}
	prefix := attemptPrefix(deliveryID)
	var rewrite []*badger.Entry
	err := s.db.View(func(view *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := view.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefix)+4 {
				continue
			}
			n := int(binary.BigEndian.Uint32(k[len(prefix):]))
			if current != nil && (n == current.N || n <= dropped) {
				continue
			}
			val, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			rewrite = append(rewrite, badger.NewEntry(item.KeyCopy(nil), val).WithTTL(ttl))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range rewrite {
		if err := txn.SetEntry(e); err != nil {
			return err
		}
	}
	return nil
}
