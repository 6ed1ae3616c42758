package module

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookgate/hookgate/persist"
)

func TestBackfill(t *testing.T) {
	sink := newCountingSink(t, nil)
	dir := t.TempDir()
	// The first config has only "old"; events come in.
	te := startTestEngine(t, dir, map[string]*Route{"old": {Topics: []string{"task.*"}, URL: sink.URL}}, nil)
	post := func(typ, data string) string {
		res, err := te.Accept(context.Background(), []*persist.Event{{Type: typ, Data: []byte(data)}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].ID
	}
	post("task.finished", `{"priority":"High"}`)
	post("task.finished", `{"priority":"Low"}`)
	post("task.created", `{"priority":"High"}`)
	post("other.thing", `{"priority":"High"}`) // matches nothing: not stored
	waitUntil(t, "the old route's deliveries", func() bool { return sink.posts.Load() == 4-1 })
	// A route that was not there: the high-priority finished tasks.
	newSink := newCountingSink(t, nil)
	cfg := te.cfg.Load()
	rt, err := compileRoute("new", &Route{Topics: []string{"task.finished"}, URL: newSink.URL, When: `event.data.priority == "High"`})
	if err != nil {
		t.Fatal(err)
	}
	next := *cfg
	next.routes = map[string]*route{"old": cfg.routes["old"], "new": rt}
	next.order = []string{"new", "old"}
	te.mu.Lock()
	te.apply(&next)
	te.mu.Unlock()

	ctx := context.Background()
	if _, err := te.Backfill(ctx, "new", BackfillOptions{Since: te.Now(), Until: te.Now().Add(-time.Hour)}); !errors.Is(err, ErrBadWindow) {
		t.Errorf("bad window: %v", err)
	}
	if _, err := te.Backfill(ctx, "nope", BackfillOptions{Since: te.Now().Add(-time.Hour)}); !errors.Is(err, ErrUnknownRoute) {
		t.Errorf("unknown route: %v", err)
	}
	since := te.Now().Add(-time.Hour)
	dry, err := te.Backfill(ctx, "new", BackfillOptions{Since: since, DryRun: true})
	if err != nil || dry != (BackfillResult{Route: "new", Offered: 3, Matched: 1, Queued: 1, DryRun: true}) {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	res, err := te.Backfill(ctx, "new", BackfillOptions{Since: since})
	if err != nil || res != (BackfillResult{Route: "new", Offered: 3, Matched: 1, Queued: 1}) {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	waitUntil(t, "the backfilled delivery", func() bool { return newSink.posts.Load() == 1 })
	again, err := te.Backfill(ctx, "new", BackfillOptions{Since: since})
	if err != nil || again != (BackfillResult{Route: "new", Offered: 3, Matched: 1, Skipped: 1}) {
		t.Fatalf("second backfill: %+v %v", again, err)
	}
	// The old route already has its deliveries; --redeliver sends again.
	res, err = te.Backfill(ctx, "old", BackfillOptions{Since: since})
	if err != nil || res.Queued != 0 || res.Skipped != 3 {
		t.Fatalf("old route: %+v %v", res, err)
	}
	res, err = te.Backfill(ctx, "old", BackfillOptions{Since: since, Redeliver: true})
	if err != nil || res.Queued != 3 {
		t.Fatalf("redeliver: %+v %v", res, err)
	}
	waitUntil(t, "the redeliveries", func() bool { return sink.posts.Load() == 6 })
	if st := te.stats("new"); st.Delivered != 1 || st.Pending != 0 {
		t.Errorf("new route stats: %+v", st)
	}

	// The admin API.
	a := adminFor(te.Engine)
	call := func(target string) (*httptest.ResponseRecorder, apiErrorBody) {
		return callAdmin(t, a, "POST", target, nil)
	}
	rec, _ := call("/webhooks/routes/new/backfill?since=1h&dry_run=true")
	var ans BackfillResult
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || rec.Code != 200 || ans.Offered != 3 || ans.Skipped != 1 || !ans.DryRun {
		t.Errorf("admin backfill: %d %s", rec.Code, rec.Body)
	}
	for target, want := range map[string]string{
		"/webhooks/routes/new/backfill":                        "bad_request",
		"/webhooks/routes/new/backfill?since=yesterday":        "bad_request",
		"/webhooks/routes/new/backfill?since=1h&until=2h":      "bad_request",
		"/webhooks/routes/new/backfill?since=1h&dry_run=maybe": "bad_request",
		"/webhooks/routes/nope/backfill?since=1h":              "unknown_route",
	} {
		rec, body := call(target)
		if body.Error != want || (want == "bad_request") != (rec.Code == 400) {
			t.Errorf("%s: %d %+v, want %s", target, rec.Code, body, want)
		}
	}
}
