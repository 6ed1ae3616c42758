package module

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookgate/hookgate/persist"
)

// Outcome is one attempt's result as the live views (the admin API's
// tail, the console) see it. It carries no URL, header or body, so it
// shows nothing the admin API would not.
type Outcome struct {
	Time       time.Time `json:"time"` // when the attempt started
	Route      string    `json:"route"`
	DeliveryID string    `json:"delivery"`
	EventID    string    `json:"event"`
	EventType  string    `json:"type"`
	Attempt    int       `json:"attempt"`
	// Status is what the delivery became: "delivered", "retry" (pending
	// again, due at Next) or "dead".
	Status     string    `json:"status"`
	HTTPStatus int       `json:"http_status,omitempty"`
	Class      string    `json:"class,omitempty"` // the failure class; empty on success
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
	Next       time.Time `json:"next,omitzero"`
}

// feed hands outcomes to live subscribers. Publishing never blocks the
// delivery path: a subscriber that falls behind loses outcomes (and is
// told how many), and with no subscriber publishing costs an atomic load.
type feed struct {
	n    atomic.Int32
	mu   sync.Mutex
	subs map[*subscription]struct{}
}

type subscription struct {
	ch      chan Outcome
	dropped atomic.Int64
}

// Subscribe returns a channel of outcomes from now on, buffering up to
// buffer of them, a function that reports how many were dropped because
// the buffer was full, and cancel, which ends the subscription and closes
// the channel. Filtering is the subscriber's.
func (e *Engine) Subscribe(buffer int) (outcomes <-chan Outcome, dropped func() int64, cancel func()) {
	s := &subscription{ch: make(chan Outcome, max(buffer, 1))}
	f := &e.feed
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[*subscription]struct{})
	}
	f.subs[s] = struct{}{}
	f.n.Store(int32(len(f.subs)))
	f.mu.Unlock()
	var once sync.Once
	return s.ch, s.dropped.Load, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.n.Store(int32(len(f.subs)))
			close(s.ch)
			f.mu.Unlock()
		})
	}
}

// publish hands o to every subscriber that has room.
func (f *feed) publish(o func() Outcome) {
	if f.n.Load() == 0 {
		return
	}
	out := o()
	f.mu.Lock()
	for s := range f.subs {
		select {
		case s.ch <- out:
		default:
			s.dropped.Add(1)
		}
	}
	f.mu.Unlock()
}

// outcomeOf describes an attempt whose outcome nd records.
func outcomeOf(nd *persist.Delivery, ev *persist.Event, res result) Outcome {
	o := Outcome{
		Time:       nd.LastAttempt,
		Route:      nd.Route,
		DeliveryID: nd.ID,
		EventID:    nd.EventID,
		EventType:  ev.Type,
		Attempt:    nd.Attempts,
		HTTPStatus: res.status,
		Class:      res.class,
		Error:      res.err,
		DurationMS: float64(res.dur) / float64(time.Millisecond),
	}
	switch nd.Status {
	case persist.StatusDelivered:
		o.Status = "delivered"
	case persist.StatusDead:
		o.Status = "dead"
	default:
		o.Status, o.Next = "retry", nd.Due
	}
	return o
}

// Subscribers is how many subscriptions are open (live tails, consoles).
func (e *Engine) Subscribers() int { return int(e.feed.n.Load()) }
