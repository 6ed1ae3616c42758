package persist

import (
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestLoadJobs(t *testing.T) {
	s := openStore(t, Options{})
	ingest(t, s, oneIngest("e1", t0, "r"), oneIngest("e2", t0, "r"), oneIngest("e3", t0, "r"))
	// e2's delivery is delivered; e3's event record is gone from under
	// its pending delivery (as an outbox from before events were kept).
	d2, err := s.Delivery("e2/r")
	if err != nil {
		t.Fatal(err)
	}
	d2.Status, d2.Attempts, d2.Done = StatusDelivered, 1, t0
	done := make(chan error, 1)
	s.Record(Outcome{Delivery: d2, ClaimedDue: t0, Attempt: &Attempt{N: 1, Start: t0, Status: 200}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(eventKey("e3")) }); err != nil {
		t.Fatal(err)
	}

	jobs, err := s.LoadJobs([]string{"e1/r", "e2/r", "nope", "e3/r"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 4 {
		t.Fatalf("%d jobs for 4 ids", len(jobs))
	}
	if j := jobs[0]; j.Err != nil || j.Delivery == nil || j.Delivery.ID != "e1/r" || j.Event == nil || j.Event.ID != "e1" || string(j.Event.Data) != `{"n":1}` {
		t.Errorf("pending delivery: %+v", j)
	}
	if j := jobs[1]; j.Err != nil || j.Delivery == nil || j.Delivery.Status != StatusDelivered || j.Event != nil {
		t.Errorf("delivered delivery: %+v (want the delivery, no event, no error)", j)
	}
	if j := jobs[2]; !errors.Is(j.Err, ErrNotFound) || j.Delivery != nil {
		t.Errorf("unknown id: %+v (want ErrNotFound)", j)
	}
	if j := jobs[3]; !errors.Is(j.Err, ErrNotFound) || j.Delivery == nil || j.Event != nil {
		t.Errorf("pending delivery without its event: %+v (want the delivery and ErrNotFound)", j)
	}
	// The event as Event returns it.
	ev, err := s.Event("e1")
	if err != nil {
		t.Fatal(err)
	}
	if got := jobs[0].Event; got.Type != ev.Type || !got.Time.Equal(ev.Time) || got.Source != ev.Source {
		t.Errorf("LoadJobs event %+v, Event %+v", got, ev)
	}

	s.Close()
	if _, err := s.LoadJobs([]string{"e1/r"}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
