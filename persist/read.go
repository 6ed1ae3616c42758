package persist

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// This file is the outbox's look-ups: the ready index the dispatcher
// scans, records by id and the pending counts. Each runs in a read
// transaction of its own, guarded against Close (see view).

// Due implements Store.
func (s *Badger) Due(route string, now time.Time, limit int, skip func(string) bool) ([]Ref, time.Time, error) {
	refs, next, _, err := s.DueFrom(route, time.Time{}, now, limit, skip)
	return refs, next, err
}

// DueFrom implements Store.
func (s *Badger) DueFrom(route string, from, now time.Time, limit int, skip func(string) bool) ([]Ref, time.Time, time.Time, error) {
	var (
		refs       []Ref
		next, last time.Time
	)
	if err := checkRoute(route); err != nil {
		return nil, next, last, err
	}
	err := s.view(func(txn *badger.Txn) error {
		prefix := routePrefix(pReady, route)
		start := prefix
		if !from.IsZero() {
			start = readyKey(route, from, "")
		}
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			_, due, id, ok := parseTimedKey(it.Item().Key())
			if !ok {
				continue
			}
			if due.After(now) || len(refs) >= limit {
				if skip == nil || !skip(id) {
					next = due
					return nil
				}
				continue
			}
			last = due
			if skip != nil && skip(id) {
				continue
			}
			refs = append(refs, Ref{ID: id, Due: due})
		}
		return nil
	})
	return refs, next, last, err
}

// Delivery implements Store.
func (s *Badger) Delivery(id string) (*Delivery, error) {
	var d Delivery
	if err := s.get(deliveryKey(id), func(v []byte) error { return decodeDelivery(v, &d) }); err != nil {
		return nil, err
	}
	return &d, nil
}

// LoadJobs implements JobLoader. A pending delivery's event is never
// past its expiry (it expires once none of its deliveries is pending), so
// its record is read without the state record Event consults.
func (s *Badger) LoadJobs(ids []string) ([]Job, error) {
	out := make([]Job, len(ids))
	err := s.view(func(txn *badger.Txn) error {
		for i, id := range ids {
			d, err := txnDelivery(txn, id)
			if err != nil {
				out[i].Err = err
				continue
			}
			out[i].Delivery = d
			if d.Status != StatusPending {
				continue
			}
			item, err := txn.Get(eventKey(d.EventID))
			if errors.Is(err, badger.ErrKeyNotFound) {
				out[i].Err = ErrNotFound
				continue
			}
			if err != nil {
				out[i].Err = err
				continue
			}
			err = item.Value(func(v []byte) error {
				ev, err := decodeEvent(v)
				out[i].Event = ev
				return err
			})
			if err != nil {
				out[i].Event, out[i].Err = nil, fmt.Errorf("event %s: %w", d.EventID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

var _ JobLoader = (*Badger)(nil)

// Event implements Store.
func (s *Badger) Event(id string) (*Event, error) {
	var ev *Event
	err := s.view(func(txn *badger.Txn) error {
		se, err := lookupEvent(txn, id)
		if se == nil || err != nil {
			if err == nil {
				err = ErrNotFound
			}
			return err
		}
		ev, err = se.event()
		return err
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
}

func (s *Badger) get(key []byte, fn func([]byte) error) error {
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(fn)
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return ErrNotFound
	case errors.Is(err, badger.ErrDBClosed):
		return ErrClosed
	}
	return err
}

// Attempts implements Store.
func (s *Badger) Attempts(deliveryID string) ([]Attempt, error) {
	var out []Attempt
	err := s.view(func(txn *badger.Txn) error {
		// A delivery whose first attempt was its last holds it in its
		// own record, and has no other.
		switch d, err := txnDelivery(txn, deliveryID); {
		case err == nil && d.attempt != nil:
			out = append(out, *d.attempt)
			return nil
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		prefix := attemptPrefix(deliveryID)
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			var a Attempt
			if err := it.Item().Value(func(v []byte) error { return decodeAttempt(v, &a) }); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	return out, err
}

// Pending implements Store.
func (s *Badger) Pending() (map[string]int, error) {
	counts := make(map[string]int)
	err := s.view(func(txn *badger.Txn) error {
		if err := countByRoute(txn, pReady, counts, nil); err != nil {
			return err
		}
		// Deliveries waiting behind an earlier one of their order key
		// are pending too, though not in the ready index.
		return countByRoute(txn, pOrder, counts, isWaiting)
	})
	return counts, err
}
