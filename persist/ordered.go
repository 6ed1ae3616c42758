package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Ordered deliveries.
//
// The pending deliveries of one route that share an OrderKey form a
// sequence, kept in the order index o|route|key|deliveryID in id order.
// Delivery ids are time-ordered, so that is ingest order. Exactly one
// delivery of a sequence is in the ready index (its o| value is
// orderActive); the others wait (orderWaiting, Delivery.Waiting set) and
// are not in the ready index at all. The dispatcher reads only the ready
// index, so it cannot send a delivery while an earlier one of its key is
// unfinished: not after a failed attempt moved the active one's due time
// behind its successors, and not after a restart. When the active
// delivery becomes final (delivered or dead), the same transaction drops
// it from the sequence and puts the next one in the ready index, due at
// once. A rescheduled delivery stays active, and its key waits for it.
//
// A delivery with an OrderKey but no o| entry (one made pending again by
// hand, unless the requeue called orderEnter) is neither held back nor
// holds others back.

const (
	orderActive  = 'a'
	orderWaiting = 'w'

	// MaxOrderKeyLen is the longest OrderKey the outbox takes; the engine
	// hashes longer keys.
	MaxOrderKeyLen = 512
)

// orderPrefix is o|len(route)route len16(key)key: the range of one
// sequence. The key's length keeps one key's range from holding another's.
func orderPrefix(route, key string) []byte {
	k := routePrefix(pOrder, route)
	k = binary.BigEndian.AppendUint16(k, uint16(len(key)))
	return append(k, key...)
}

func orderIndexKey(route, key, id string) []byte {
	return append(orderPrefix(route, key), id...)
}

// orderTxn is what the current write transaction changed in the order
// index. Range look-ups read the committed index from a snapshot and
// apply these changes, rather than iterate the write transaction: Badger
// sorts all of a transaction's pending writes each time an iterator is
// opened on it, so a group commit of N ordered ingests would cost N
// sorts of the whole group. Only the committer goroutine uses it, and
// only the committer writes o| keys, so the snapshot holds what the
// write transaction started from.
type orderTxn struct {
	txn      *badger.Txn
	inserted map[string][]string // sequence prefix → keys inserted
	deleted  map[string]bool     // keys deleted
}

// orderTxnFor returns the changes of txn, starting afresh for a new
// transaction (including one that re-applies a split group).
func (s *Badger) orderTxnFor(txn *badger.Txn) *orderTxn {
	if s.ord == nil || s.ord.txn != txn {
		s.ord = &orderTxn{txn: txn, inserted: make(map[string][]string), deleted: make(map[string]bool)}
	}
	return s.ord
}

// first returns the first key of the sequence at prefix and its value
// as txn sees it; ok is false for an empty sequence. With anyKey, any key
// of the sequence will do (an existence check).
func (o *orderTxn) first(s *Badger, prefix []byte, anyKey bool) (key []byte, val byte, ok bool, err error) {
	var best []byte
	for _, k := range o.inserted[string(prefix)] {
		if !o.deleted[k] && (best == nil || k < string(best)) {
			best = []byte(k)
		}
	}
	if best == nil || !anyKey {
		err = s.db.View(func(view *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = prefix
			it := view.NewIterator(opts)
			defer it.Close()
			for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
				k := it.Item().Key()
				if o.deleted[string(k)] {
					continue
				}
				if best == nil || bytes.Compare(k, best) < 0 {
					best = it.Item().KeyCopy(nil)
				}
				return nil
			}
			return nil
		})
		if err != nil {
			return nil, 0, false, err
		}
	}
	if best == nil {
		return nil, 0, false, nil
	}
	if anyKey {
		return best, 0, true, nil
	}
	item, err := o.txn.Get(best)
	if err != nil {
		return nil, 0, false, fmt.Errorf("order index entry: %w", err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, 0, false, err
	}
	if len(v) == 1 {
		val = v[0]
	}
	return best, val, true, nil
}

// orderEnter adds d, a delivery becoming pending, to its sequence if it
// has an OrderKey: active when the sequence is empty, waiting behind it
// otherwise. It sets d.Waiting; the caller puts d in the ready index only
// if it is not waiting. Ingest calls it; so may a requeue of a final
// delivery, which then goes after the delivery now active (its old id
// sorts it before those still waiting).
func (s *Badger) orderEnter(txn *badger.Txn, d *Delivery) error {
	d.Waiting = false
	if d.OrderKey == "" {
		return nil
	}
	if len(d.OrderKey) > MaxOrderKeyLen {
		return fmt.Errorf("delivery %s: order key of %d bytes is longer than the %d the outbox allows", d.ID, len(d.OrderKey), MaxOrderKeyLen)
	}
	o := s.orderTxnFor(txn)
	prefix := orderPrefix(d.Route, d.OrderKey)
	_, _, busy, err := o.first(s, prefix, true)
	if err != nil {
		return err
	}
	val := byte(orderActive)
	if busy {
		val = orderWaiting
		d.Waiting = true
	}
	k := orderIndexKey(d.Route, d.OrderKey, d.ID)
	if err := txn.Set(k, []byte{val}); err != nil {
		return err
	}
	o.inserted[string(prefix)] = append(o.inserted[string(prefix)], string(k))
	delete(o.deleted, string(k))
	return nil
}

// orderFinish drops d, a delivery that became final, from its sequence;
// if it was the active one, the next delivery of its key becomes active
// and due now.
func (s *Badger) orderFinish(txn *badger.Txn, d *Delivery) error {
	if d.OrderKey == "" {
		return nil
	}
	k := orderIndexKey(d.Route, d.OrderKey, d.ID)
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	if err := txn.Delete(k); err != nil {
		return err
	}
	o := s.orderTxnFor(txn)
	o.deleted[string(k)] = true
	if len(v) != 1 || v[0] != orderActive {
		return nil
	}
	return s.orderPromote(txn, o, d.Route, d.OrderKey)
}

// orderPromote makes the first delivery of a sequence active.
func (s *Badger) orderPromote(txn *badger.Txn, o *orderTxn, route, key string) error {
	prefix := orderPrefix(route, key)
	now := s.now()
	for {
		k, v, ok, err := o.first(s, prefix, false)
		if err != nil || !ok {
			return err
		}
		if v == orderActive {
			return nil
		}
		id := string(k[len(prefix):])
		next, err := txnDelivery(txn, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if next == nil || next.Status != StatusPending {
			// A stale entry (the record expired or was finished some
			// other way): drop it and look further.
			if err := txn.Delete(k); err != nil {
				return err
			}
			o.deleted[string(k)] = true
			continue
		}
		if err := txn.Set(k, []byte{orderActive}); err != nil {
			return err
		}
		if !next.Waiting {
			// Already in the ready index (moved there by hand).
			return nil
		}
		next.Waiting = false
		if next.Due.Before(now) {
			// Due now, not at its ingest time: the dispatcher's scan
			// cursor may have passed that.
			next.Due = now
		}
		if err := s.putDelivery(txn, next, 0); err != nil {
			return err
		}
		return txn.Set(readyKey(route, next.Due, id), nil)
	}
}

// txnDelivery reads a delivery record as txn sees it.
func txnDelivery(txn *badger.Txn, id string) (*Delivery, error) {
	item, err := txn.Get(deliveryKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var d Delivery
	if err := item.Value(func(v []byte) error { return decodeDelivery(v, &d) }); err != nil {
		return nil, fmt.Errorf("delivery %s: %w", id, err)
	}
	return &d, nil
}

// isWaiting tells, from an o| value, a delivery that is not in the ready
// index (Pending counts those too).
func isWaiting(v []byte) bool { return len(v) == 1 && v[0] == orderWaiting }
