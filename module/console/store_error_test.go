package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	natsstore "github.com/hookgate/hookgate/persist/nats"
)

// While NATS cannot answer, a page or an action is 503 with Retry-After,
// as the admin API answers it, not a 500 "outbox error".
func TestStoreErrorUnavailable(t *testing.T) {
	pg, err := loadPages()
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{pages: pg, logger: zap.NewNop()}
	for _, cause := range []error{natsstore.ErrUnavailable, nats.ErrTimeout, context.DeadlineExceeded} {
		rec := httptest.NewRecorder()
		h.storeError(&request{w: rec, r: httptest.NewRequest("GET", "/webhooks/", nil)}, fmt.Errorf("pausing: %w", cause))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "NATS cannot answer") {
			t.Errorf("%v: %d, Retry-After %q; want 503 saying NATS cannot answer", cause, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
}
