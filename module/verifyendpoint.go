package module

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/persist"
)

// defaultVerifyEvery is how long a route waits after a failed
// verify_endpoint check before it tries again.
const defaultVerifyEvery = 30 * time.Second

// maybeVerify starts a verify_endpoint check of r unless one is running
// or the last failed too recently, and returns when to look again. A
// route with nothing to deliver is not checked yet: the check comes
// before the first delivery, not at every start.
func (d *dispatcher) maybeVerify(r *route, now time.Time) time.Time {
	if d.pending.Load() <= 0 {
		return time.Time{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.verifying {
		return time.Time{}
	}
	if now.Before(d.verifyNext) {
		return d.verifyNext
	}
	d.verifying = true
	d.e.wg.Add(1)
	go d.verify(r)
	return time.Time{}
}

// verify runs one check and keeps a success in the outbox.
func (d *dispatcher) verify(r *route) {
	defer d.e.wg.Done()
	log := d.e.logger()
	err := errors.New("verification did not finish")
	defer func() {
		if v := recover(); v != nil {
			logPanic(log, "endpoint verification panic", v, zap.String("route", d.name))
		}
		d.mu.Lock()
		d.verifying = false
		if err != nil {
			d.verifyNext = d.e.now().Add(d.e.verifyEvery)
			if d.e.attemptCtx.Err() == nil {
				d.verifyErr = "endpoint verification failed: " + err.Error()
			}
		} else {
			d.verifyErr = ""
		}
		d.mu.Unlock()
		d.signal()
	}()
	err = d.e.sender.verifyEndpoint(d.e.attemptCtx, r)
	if err != nil {
		if d.e.attemptCtx.Err() == nil {
			log.Warn("endpoint verification failed; deliveries wait until it passes",
				zap.String("route", d.name), zap.Duration("retry_in", d.e.verifyEvery), zap.Error(err))
		}
		return
	}
	if _, err = d.updateState(func(st *persist.RouteState) { st.VerifiedURL = r.rawURL }); err != nil {
		log.Error("recording the endpoint verification", zap.String("route", d.name), zap.Error(err))
		return
	}
	log.Info("endpoint verified", zap.String("route", d.name))
}

// verifyEndpoint makes one verify_endpoint check: GET the route's URL
// with a random `check` query parameter, through the route's client
// (its egress policy), and expect a 2xx answer whose body is exactly
// that value. Errors never quote the URL, which may hold a secret.
func (s *sender) verifyEndpoint(ctx context.Context, r *route) error {
	// The URL holds no {event.*} placeholders (compileRoute checks), so
	// an empty event expands it.
	u, err := r.endpointURL(rules.NewEvent(&persist.Event{Data: []byte("null")}))
	if err != nil {
		return err
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	check := hex.EncodeToString(raw[:])
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "check=" + check

	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	ctx, connAttempted := traceConnAttempt(ctx)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return errors.New("cannot build the request")
	}
	req.Header.Set("User-Agent", userAgent)
	client := s.client
	if r.client != nil {
		client = r.client
	}
	resp, err := client.Do(req)
	if err != nil {
		class, _ := classifyError(err, connAttempted.Load())
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("GET failed (%s): %v", class, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("endpoint answered %d, want 2xx with the check value as the body", resp.StatusCode)
	case string(body) != check:
		hint := ""
		if strings.TrimSpace(string(body)) == check {
			hint = " (it has extra white space)"
		}
		return fmt.Errorf("endpoint answered %d with a body of %d bytes that is not the check value%s", resp.StatusCode, len(body), hint)
	}
	return nil
}
