package natsstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bucket is one key-value bucket, written with raw publishes so that
// every write can carry a TTL and an expected revision, and read from
// the stream leader (no direct gets from replicas that may lag).
type bucket struct {
	name   string
	subj   string // "$KV.<name>."
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue
}

// markerTTL is how long the server keeps the delete marker of an
// expired record, which is how watchers learn of the expiry.
const markerTTL = 15 * time.Minute

func openBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int) (*bucket, error) {
	cfg := jetstream.StreamConfig{
		Name:                   "KV_" + name,
		Subjects:               []string{"$KV." + name + ".>"},
		MaxMsgsPerSubject:      1,
		MaxBytes:               -1,
		MaxMsgs:                -1,
		MaxMsgSize:             -1,
		Storage:                jetstream.FileStorage,
		Replicas:               replicas,
		AllowRollup:            true,
		DenyDelete:             true,
		Discard:                jetstream.DiscardNew,
		Duplicates:             2 * time.Minute,
		AllowMsgTTL:            true,
		SubjectDeleteMarkerTTL: markerTTL,
	}
	// Nodes starting together create the same streams at once: a
	// request the cluster does not answer while another's create is
	// under way is tried again until ctx ends.
	for {
		st, kv, err := tryOpenBucket(ctx, js, cfg, name)
		if err == nil {
			return &bucket{name: name, subj: "$KV." + name + ".", js: js, stream: st, kv: kv}, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tryOpenBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, name string) (jetstream.Stream, jetstream.KeyValue, error) {
	// Two identical creates at once may both go unanswered by a
	// cluster: look first, create only what is missing, and try again
	// soon rather than wait long.
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := js.Stream(actx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		st, err = js.CreateStream(actx, cfg)
	case err == nil && st.CachedInfo().Config.Replicas != cfg.Replicas:
		// replicas changed in the config: the server moves the stream.
		st, err = js.UpdateStream(actx, cfg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("creating stream %s: %w", cfg.Name, err)
	}
	kv, err := js.KeyValue(actx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("binding bucket %s: %w", name, err)
	}
	return st, kv, nil
}

// enc makes an id a valid key.
func enc(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func dec(key string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(key)
	return string(b), err == nil
}

// entry is a key's latest record; rev is 0 when the key never existed.
type entry struct {
	val     []byte
	rev     uint64
	deleted bool // the latest message is a delete or expiry marker
}

// get reads the latest record of id from the stream leader.
func (b *bucket) get(ctx context.Context, id string) (entry, error) {
	if err := connected(b.js.Conn()); err != nil {
		return entry{}, err
	}
	m, err := b.stream.GetLastMsgForSubject(ctx, b.subj+enc(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return entry{}, nil
	}
	if err != nil {
		return entry{}, err
	}
	return entry{val: m.Data, rev: m.Sequence, deleted: isMarker(m.Header)}, nil
}

func isMarker(h nats.Header) bool {
	if h == nil {
		return false
	}
	if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return true
	}
	return h.Get("Nats-Marker-Reason") != ""
}

// put writes id. expect, when not nil, is the revision the key must be
// at (0: must never have been written); ttl > 0 makes the record expire.
func (b *bucket) put(ctx context.Context, id string, val []byte, expect *uint64, ttl time.Duration) (uint64, error) {
	m := &nats.Msg{Subject: b.subj + enc(id), Data: val, Header: nats.Header{}}
	var opts []jetstream.PublishOpt
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(max(ttl, time.Second).Truncate(time.Second)))
	}
	ack, err := b.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		if isWrongLast(err) {
			return 0, errConflict
		}
		return 0, mapErr(err)
	}
	return ack.Sequence, nil
}

// createAsync starts a write of id that the server refuses (with a
// wrong-last-sequence error) if the key was ever written; the future
// reports it.
func (b *bucket) createAsync(id string, val []byte) (jetstream.PubAckFuture, error) {
	m := &nats.Msg{Subject: b.subj + enc(id), Data: val}
	return b.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0))
}

// create writes id only if it holds no live record (never written,
// deleted or expired). It returns errConflict if it does.
func (b *bucket) create(ctx context.Context, id string, val []byte, ttl time.Duration) (uint64, error) {
	zero := uint64(0)
	rev, err := b.put(ctx, id, val, &zero, ttl)
	if !errors.Is(err, errConflict) {
		return rev, err
	}
	e, gerr := b.get(ctx, id)
	if gerr != nil {
		return 0, gerr
	}
	if e.rev == 0 || !e.deleted {
		return 0, errConflict
	}
	return b.put(ctx, id, val, &e.rev, ttl)
}

// del writes a delete marker for id (only at revision rev, if not 0).
// ttl > 0 makes the marker expire, so that a bucket whose keys are each
// used for a while does not keep a marker per key for ever. Such a
// marker is a purge marker: the server drops it when it expires, where
// in place of an expired delete marker it would write one of its own,
// another replicated write that stays markerTTL more.
func (b *bucket) del(ctx context.Context, id string, rev uint64, ttl time.Duration) (uint64, error) {
	m := &nats.Msg{Subject: b.subj + enc(id), Header: nats.Header{}}
	op := "DEL"
	if ttl > 0 {
		op = "PURGE"
	}
	m.Header.Set("KV-Operation", op)
	var opts []jetstream.PublishOpt
	if rev != 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(rev))
	}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(max(ttl, time.Second).Truncate(time.Second)))
	}
	ack, err := b.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		if isWrongLast(err) {
			return 0, errConflict
		}
		return 0, mapErr(err)
	}
	return ack.Sequence, nil
}

// errConflict means the key was not at the expected revision.
var errConflict = errors.New("key changed meanwhile")

func isWrongLast(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// eventCache keeps values of a bounded number of events, bounded in
// count and bytes too: about as many as deliveries can be in flight at
// once, and no more bytes than a few thousand of the usual kilobyte or
// two, so large payloads cannot hold much memory. A value bigger than
// maxCachedRecord is not kept: reading it again costs little next to
// sending it. Which values go to make room matters little: most are
// used within an attempt's time of being put.
type eventCache[V any] struct {
	mu    sync.Mutex
	m     map[string]cached[V]
	bytes int
}

type cached[V any] struct {
	v    V
	size int
}

const (
	maxCachedEvents = 1024
	maxCachedBytes  = 8 << 20
	maxCachedRecord = 64 << 10
)

// put keeps v, which holds about size bytes, for event id, in place of
// what it held.
func (c *eventCache[V]) put(id string, v V, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
	if size > maxCachedRecord {
		return
	}
	if c.m == nil {
		c.m = make(map[string]cached[V])
	}
	for k := range c.m {
		if len(c.m) < maxCachedEvents && c.bytes+size <= maxCachedBytes {
			break
		}
		c.dropLocked(k)
	}
	c.m[id] = cached[V]{v, size}
	c.bytes += size
}

// get returns the value kept for id.
func (c *eventCache[V]) get(id string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	return e.v, ok
}

// take returns and forgets the value kept for id.
func (c *eventCache[V]) take(id string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	c.dropLocked(id)
	return e.v, ok
}

func (c *eventCache[V]) dropLocked(id string) {
	if e, ok := c.m[id]; ok {
		c.bytes -= e.size
		delete(c.m, id)
	}
}

// recentEvent is an event record as last read, decoded, with its
// revision. Sending a delivery reads its event, and recording the
// outcome updates the event with a compare-and-set that needs the record
// and its revision: taking them from Store.recent saves a read from the
// stream leader, and a decoding, per delivery. A record that changed
// meanwhile only makes the compare-and-set fail and the update read it
// again. Whoever takes one owns it.
type recentEvent struct {
	rev uint64
	rec *eventRecord
}

// ingestedEvent is an event record as this node wrote it at ingest,
// with its revision, and the time the event was received, which its
// deliveries were created at (Store.ingested). The record is shared and
// never changed: whoever needs to change it works on a copy (private).
// It saves a read of the event from the stream leader for a delivery
// loaded from the store (LoadJobs), and for the outcome's count-down of
// a delivery the engine was handed at ingest, whose event Event never
// read.
type ingestedEvent struct {
	rec      *eventRecord
	rev      uint64
	received time.Time
}
