package persist

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The event time index (t|received_ns eventID) and the writes that add
// deliveries to stored events: what a backfill walks and writes.

// MaxEventsPage is the most events one EventsReceived call returns.
const MaxEventsPage = 1000

// EventsReceived implements Store.
func (s *Badger) EventsReceived(since, until time.Time, cursor string, limit int) ([]*Event, string, error) {
	if limit <= 0 || limit > MaxEventsPage {
		return nil, "", fmt.Errorf("%w: limit %d is not between 1 and %d", ErrBadFilter, limit, MaxEventsPage)
	}
	seek := receivedKey(since, "")
	if cursor != "" {
		k, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("%w: not one of EventsReceived's", ErrBadCursor)
		}
		if _, _, ok := parseReceivedKey(k); !ok {
			return nil, "", fmt.Errorf("%w: not one of EventsReceived's", ErrBadCursor)
		}
		if a := after(k); string(a) > string(seek) {
			seek = a
		}
	}
	var (
		out  []*Event
		next string
		last []byte // the key of the last event taken
	)
	err := s.view(func(txn *badger.Txn) error {
		prefix := []byte{pReceived, '|'}
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			at, id, ok := parseReceivedKey(k)
			if !ok {
				continue
			}
			if !until.IsZero() && !at.Before(until) {
				break
			}
			if len(out) == limit {
				next = base64.RawURLEncoding.EncodeToString(last)
				break
			}
			se, err := lookupEvent(txn, id)
			if err != nil {
				return err
			}
			if se == nil {
				// Expired; its entry is deleted with it by the sweeper
				// (or, for a record with a TTL, expires with it).
				continue
			}
			ev, err := se.event()
			if err != nil {
				return err
			}
			out = append(out, ev)
			last = append(last[:0], k...)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// AddDeliveries implements Store. The writes go through the committer,
// ordered with outcomes, in one transaction.
func (s *Badger) AddDeliveries(ds []*Delivery, skipRouted bool) ([]bool, error) {
	for _, d := range ds {
		if d == nil {
			return nil, errors.New("nil delivery")
		}
		if err := checkRoute(d.Route); err != nil {
			return nil, fmt.Errorf("delivery %s: %w", d.ID, err)
		}
	}
	var (
		added []bool
		werr  error
		done  = make(chan struct{})
	)
	req := recordReq{
		apply: func(txn *badger.Txn) error {
			var err error
			added, err = s.applyAddDeliveries(txn, ds, skipRouted)
			return err
		},
		done: func(err error) {
			werr = err
			close(done)
		},
		size:    len(ds) * 2048,
		durable: true,
	}
	if !s.submit(req) {
		return nil, ErrClosed
	}
	<-done
	if werr != nil {
		return nil, werr
	}
	return added, nil
}

func (s *Badger) applyAddDeliveries(txn *badger.Txn, ds []*Delivery, skipRouted bool) ([]bool, error) {
	added := make([]bool, len(ds))
	for i, d := range ds {
		se, err := lookupEvent(txn, d.EventID)
		if err != nil {
			return nil, err
		}
		if se == nil {
			continue
		}
		rec, err := se.record()
		if err != nil {
			return nil, err
		}
		routed := slices.Contains(rec.Routes, d.Route) || slices.Contains(se.st.routes, d.Route)
		if skipRouted && routed {
			continue
		}
		// The event record is not rewritten: its state lists what was
		// added (see evstate.go).
		if !routed {
			se.st.routes = append(se.st.routes, d.Route)
		}
		se.st.deliveries = append(se.st.deliveries, d.ID)
		se.st.remaining++
		se.st.keepUntil = 0
		if err := se.reopen(s, txn); err != nil {
			return nil, err
		}
		d.Status, d.Waiting = StatusPending, false
		if err := s.orderEnter(txn, d); err != nil {
			return nil, err
		}
		if err := s.putDelivery(txn, d, 0); err != nil {
			return nil, err
		}
		if !d.Waiting {
			if err := txn.Set(readyKey(d.Route, d.Due, d.ID), nil); err != nil {
				return nil, err
			}
		}
		added[i] = true
	}
	return added, nil
}
