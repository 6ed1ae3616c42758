package module

import (
	"bytes"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

func init() {
	caddy.RegisterModule(Ingest{})
}

// Ingest is the `webhook_ingest` HTTP handler: applications POST events
// to it, and it answers 202 only once each event and its deliveries are
// on disk.
type Ingest struct {
	// MaxBody is the largest request body accepted, in bytes; larger ones
	// get 413. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxBatch is the most events one array may hold; more get 413.
	// Default: 1000.
	MaxBatch int `json:"max_batch,omitempty"`

	// Auth, when set, requires a credential on every request (401
	// without one).
	Auth *IngestAuth `json:"auth,omitempty"`

	app    *App
	logger *zap.Logger
	tokens [][]byte
}

// CaddyModule returns the Caddy module information.
func (Ingest) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_ingest",
		New: func() caddy.Module { return new(Ingest) },
	}
}

const (
	defaultMaxBody  = 1 << 20
	defaultMaxBatch = 1000
	// retryAfterBusy is the Retry-After sent with 503.
	retryAfterBusy = "5"
)

// Provision loads the webhooks app (configuring it with defaults if the
// config has none) and prepares the credentials.
func (h *Ingest) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxBody == 0 {
		h.MaxBody = defaultMaxBody
	}
	if h.MaxBatch == 0 {
		h.MaxBatch = defaultMaxBatch
	}
	if h.MaxBody < 0 || h.MaxBatch < 0 {
		return errors.New("max_body and max_batch must be positive")
	}
	if h.Auth != nil {
		repl := caddy.NewReplacer()
		for _, t := range h.Auth.Bearer {
			t = repl.ReplaceKnown(t, "")
			if t == "" {
				return errors.New("auth bearer: a token is empty (is its environment variable set?)")
			}
			h.tokens = append(h.tokens, []byte(t))
		}
		if len(h.tokens) == 0 {
			return errors.New("auth: no credential configured")
		}
	}
	appIface, err := ctx.App("webhooks")
	if err != nil {
		return fmt.Errorf("loading webhooks app: %v", err)
	}
	h.app = appIface.(*App)
	return nil
}

// incoming is one event as applications send it.
type incoming struct {
	Type      *string
	Data      json.RawMessage
	ID        *string
	Timestamp *string
}

// decodeString reads a JSON string; null leaves dst nil (absent).
func decodeString(raw json.RawMessage, dst **string) error {
	if string(raw) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	*dst = &s
	return nil
}

// ingestError is an answer other than success.
type ingestError struct {
	status  int
	code    string
	message string
	index   int // -1: not about one element
}

func (e *ingestError) Error() string { return e.message }

func badRequest(index int, format string, a ...any) *ingestError {
	return &ingestError{status: http.StatusBadRequest, code: "invalid_event", message: fmt.Sprintf(format, a...), index: index}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It never calls next:
// the ingest endpoint answers every request itself.
func (h *Ingest) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if ierr := h.serve(w, r); ierr != nil {
		writeError(w, ierr)
	}
	return nil
}

func (h *Ingest) serve(w http.ResponseWriter, r *http.Request) *ingestError {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return &ingestError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			message: "use POST", index: -1}
	}
	if len(h.tokens) > 0 && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hookgate"`)
		return &ingestError{status: http.StatusUnauthorized, code: "unauthorized",
			message: "missing or invalid credentials", index: -1}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &ingestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: "Content-Type must be application/json", index: -1}
	}
	if r.ContentLength > h.MaxBody {
		return tooLarge(h.MaxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(h.MaxBody)
		}
		return &ingestError{status: http.StatusBadRequest, code: "read_error",
			message: "reading the request body failed", index: -1}
	}

	batch, isBatch, ierr := h.decode(body)
	if ierr != nil {
		return ierr
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if idemKey != "" {
		if isBatch {
			return badRequest(-1, "Idempotency-Key applies to a single event; give each element of a batch an \"id\"")
		}
		if !validID(idemKey) {
			return badRequest(-1, "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 _ - :")
		}
		if batch[0].Event.ID != "" && batch[0].Event.ID != idemKey {
			return badRequest(0, "id and Idempotency-Key differ")
		}
		batch[0].Event.ID = idemKey
		batch[0].Dedupe = idemKey
	}

	eng := h.app.engine.Load()
	if eng == nil {
		return unavailable("the webhooks app is not running")
	}
	cfg := eng.cfg.Load()
	if cfg == nil {
		return unavailable("the webhooks app is not running")
	}
	now := eng.now()
	var newDeliveries int64
	for i := range batch {
		in := &batch[i]
		ev := in.Event
		ev.Received = now
		if ev.Time.IsZero() {
			ev.Time = now
		}
		if ev.ID == "" {
			ev.ID = newID("evt_", now)
		} else {
			in.Dedupe = ev.ID
		}
		for _, name := range h.app.routeOrder {
			rt := h.app.routes[name]
			if !rt.matches(ev.Type) {
				continue
			}
			ev.Routes = append(ev.Routes, name)
			in.Deliveries = append(in.Deliveries, &persist.Delivery{
				ID:      newID("dlv_", now),
				EventID: ev.ID,
				Route:   name,
				Status:  persist.StatusPending,
				Created: now,
				Due:     now,
			})
		}
		in.Keep = cfg.keepUnmatched
		newDeliveries += int64(len(in.Deliveries))
	}
	if newDeliveries > 0 && eng.pending.Load()+newDeliveries > cfg.maxPending {
		return unavailable("too many pending deliveries (max_pending)")
	}

	results, err := eng.store.Ingest(r.Context(), batch)
	if err != nil {
		if errors.Is(err, persist.ErrTooLarge) {
			return &ingestError{status: http.StatusRequestEntityTooLarge, code: "too_large",
				message: "the request's events and deliveries do not fit in one outbox transaction; send a smaller batch", index: -1}
		}
		h.logger.Error("storing events", zap.Error(err))
		return unavailable("the outbox cannot store events right now")
	}
	stored := 0
	for i, res := range results {
		if res.Duplicate {
			continue
		}
		stored++
		eng.enqueue(batch[i])
	}
	ingestedTotal.Add(uint64(stored))

	w.Header().Set("Content-Type", "application/json")
	status := http.StatusAccepted
	if stored == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	w.Write(answer(batch, results, isBatch))
	return nil
}

// ingestedTotal counts accepted (non-duplicate) events.
var ingestedTotal atomic.Uint64

func answer(batch []persist.Ingest, results []persist.IngestResult, isBatch bool) []byte {
	var b bytes.Buffer
	if !isBatch {
		res := results[0]
		b.WriteString(`{"id":`)
		b.WriteString(strconv.Quote(res.ID))
		if res.Duplicate {
			b.WriteString(`,"duplicate":true}`)
			return b.Bytes()
		}
		b.WriteString(`,"routes":[`)
		for i, name := range batch[0].Event.Routes {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(name))
		}
		b.WriteString("]}")
		return b.Bytes()
	}
	b.WriteString(`{"ids":[`)
	var dups []int
	for i, res := range results {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(res.ID))
		if res.Duplicate {
			dups = append(dups, i)
		}
	}
	b.WriteByte(']')
	if len(dups) > 0 {
		b.WriteString(`,"duplicates":[`)
		for i, n := range dups {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(n))
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes()
}

func (h *Ingest) authorized(r *http.Request) bool {
	const prefix = "Bearer "
	auth := r.Header.Get("Authorization")
	if len(auth) <= len(prefix) || !equalFoldASCII(auth[:len(prefix)], prefix) {
		return false
	}
	got := []byte(auth[len(prefix):])
	ok := 0
	for _, t := range h.tokens {
		ok |= subtle.ConstantTimeCompare(got, t)
	}
	return ok == 1
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// decode parses one event or an array of them, strictly.
func (h *Ingest) decode(body []byte) ([]persist.Ingest, bool, *ingestError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, badRequest(-1, "empty body: expected an event object or an array of events")
	}
	switch trimmed[0] {
	case '{':
		in, ierr := decodeEvent(body, -1)
		if ierr != nil {
			return nil, false, ierr
		}
		return []persist.Ingest{in}, false, nil
	case '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, true, badRequest(-1, "malformed JSON: %v", err)
		}
		if len(raws) == 0 {
			return nil, true, badRequest(-1, "empty batch: send at least one event")
		}
		if len(raws) > h.MaxBatch {
			return nil, true, &ingestError{status: http.StatusRequestEntityTooLarge, code: "batch_too_large",
				message: fmt.Sprintf("batch of %d events is over max_batch (%d)", len(raws), h.MaxBatch), index: -1}
		}
		out := make([]persist.Ingest, len(raws))
		seen := make(map[string]int, len(raws))
		for i, raw := range raws {
			in, ierr := decodeEvent(raw, i)
			if ierr != nil {
				return nil, true, ierr
			}
			if id := in.Event.ID; id != "" {
				if j, dup := seen[id]; dup {
					return nil, true, badRequest(i, "id %q repeats element %d of this batch", id, j)
				}
				seen[id] = i
			}
			out[i] = in
		}
		return out, true, nil
	}
	return nil, false, badRequest(-1, "malformed JSON: expected an event object or an array of events")
}

func decodeEvent(raw []byte, index int) (persist.Ingest, *ingestError) {
	// Decoding into a map keeps key case exact: encoding/json would match
	// "Type" or "DATA" to the struct's fields, and SPEC §1 rejects unknown
	// fields so that typos surface.
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&fields); err != nil {
		return persist.Ingest{}, badRequest(index, "malformed event: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return persist.Ingest{}, badRequest(index, "malformed JSON: data after the event object")
	}
	var m incoming
	for k, v := range fields {
		var err error
		switch k {
		case "type":
			err = decodeString(v, &m.Type)
		case "id":
			err = decodeString(v, &m.ID)
		case "timestamp":
			err = decodeString(v, &m.Timestamp)
		case "data":
			m.Data = v
		default:
			return persist.Ingest{}, badRequest(index, "unknown field %q: an event has type, data, id and timestamp", k)
		}
		if err != nil {
			return persist.Ingest{}, badRequest(index, "malformed event: %q must be a string", k)
		}
	}
	if m.Type == nil {
		return persist.Ingest{}, badRequest(index, "missing \"type\"")
	}
	if !validType(*m.Type) {
		return persist.Ingest{}, badRequest(index, "invalid \"type\": expected 1-200 characters of A-Z a-z 0-9 . _ - : /")
	}
	if len(m.Data) == 0 {
		return persist.Ingest{}, badRequest(index, "missing \"data\"")
	}
	ev := &persist.Event{Type: *m.Type, Data: m.Data}
	if m.ID != nil {
		if !validID(*m.ID) {
			return persist.Ingest{}, badRequest(index, "invalid \"id\": expected 1-128 characters of A-Z a-z 0-9 _ - :")
		}
		ev.ID = *m.ID
	}
	if m.Timestamp != nil {
		t, err := time.Parse(time.RFC3339Nano, *m.Timestamp)
		if err != nil {
			return persist.Ingest{}, badRequest(index, "invalid \"timestamp\": expected RFC 3339, like 2026-11-23T10:00:00Z")
		}
		ev.Time = t
	}
	return persist.Ingest{Event: ev}, nil
}

// validType: 1–200 characters of A-Z a-z 0-9 . _ - : /
func validType(s string) bool {
	if len(s) == 0 || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) && s[i] != '.' && s[i] != '/' {
			return false
		}
	}
	return true
}

// validID: 1–128 characters of A-Z a-z 0-9 _ - : (no `.`: the id is part
// of the signed "id.timestamp.body" content).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !idChar(s[i]) {
			return false
		}
	}
	return true
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':'
}

// idEncoding is Crockford's base32 alphabet in lower case: it sorts like
// the bytes it encodes, so ids sort by time.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// newID returns prefix + 26 characters: 8 bytes of Unix nanoseconds and
// 8 random bytes, so ids are unique and ordered by creation time.
func newID(prefix string, now time.Time) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(raw[8:], rand.Uint64())
	buf := make([]byte, len(prefix)+idEncoding.EncodedLen(16))
	copy(buf, prefix)
	idEncoding.Encode(buf[len(prefix):], raw[:])
	return string(buf)
}

func tooLarge(limit int64) *ingestError {
	return &ingestError{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
		message: fmt.Sprintf("request body is over max_body (%d bytes)", limit), index: -1}
}

func unavailable(msg string) *ingestError {
	return &ingestError{status: http.StatusServiceUnavailable, code: "unavailable", message: msg, index: -1}
}

func writeError(w http.ResponseWriter, e *ingestError) {
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterBusy)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	body := struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Index   *int   `json:"index,omitempty"`
	}{Error: e.code, Message: e.message}
	if e.index >= 0 {
		body.Index = &e.index
	}
	json.NewEncoder(w).Encode(body)
}

// enqueue offers a stored event's deliveries to their dispatchers and
// counts them as pending.
func (e *engine) enqueue(in persist.Ingest) {
	if len(in.Deliveries) == 0 {
		return
	}
	for _, dl := range in.Deliveries {
		d := e.dispatcherFor(dl.Route)
		d.pending.Add(1)
		e.pending.Add(1)
		d.offer(&job{d: dl, ev: in.Event})
	}
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Ingest)(nil)
	_ caddy.Provisioner           = (*Ingest)(nil)
)
