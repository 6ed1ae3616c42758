package ingest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/module"
	"github.com/hookgate/hookgate/module/egress"
	"github.com/hookgate/hookgate/module/rules"
	"github.com/hookgate/hookgate/module/signing"
	"github.com/hookgate/hookgate/persist"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Ingest is the `webhook_ingest` HTTP handler: applications POST events
// to it, and it answers 202 only once each event and its deliveries are
// on disk.
type Handler struct {
	// MaxBody is the largest request body accepted, in bytes; larger ones
	// get 413. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxBatch is the most events one array may hold; more get 413.
	// Default: 1000.
	MaxBatch int `json:"max_batch,omitempty"`

	// Auth, when set, requires a credential on every request (401
	// without one).
	Auth *Auth `json:"auth,omitempty"`

	// Topic turns this endpoint into an inbound one for third-party
	// webhooks: the raw body becomes the event's data (JSON kept as JSON,
	// anything else as a string, its content type recorded) and the event
	// type is this template, e.g. github.{http.request.header.X-GitHub-Event}.
	// Without Topic the endpoint takes hookgate's own event format.
	Topic string `json:"topic,omitempty"`

	// Source names where events come from, for rules (event.source) and
	// metrics. Default: "api", or for inbound endpoints the request path.
	Source string `json:"source,omitempty"`

	// Verify checks an inbound request's signature before anything is
	// stored.
	Verify *VerifyConfig `json:"verify,omitempty"`

	// IDHeader names the request header that carries an inbound
	// sender's message id, e.g. X-GitHub-Delivery. The event id is then
	// "<source>:<that id>", so the sender's retries are answered as
	// duplicates and two senders cannot collide. Default: Webhook-Id when
	// Verify is a Standard Webhooks check, else none (every request is a
	// new event).
	IDHeader string `json:"id_header,omitempty"`

	// IDField names where in an inbound JSON body the sender's message
	// id is, as dot-separated object keys (event_id, data.id): for
	// senders that send none in a header. The value must be a string or
	// a number; without it (or with IDHeader present) it is not used.
	// Default: "id" with `verify stripe`, "event_id" with `verify slack`.
	IDField string `json:"id_field,omitempty"`

	// KeepHeaders lists the request headers an inbound endpoint keeps
	// with the event (rules see them as event.headers; look-ups show
	// them). Default: every header except credentials — Authorization,
	// Proxy-Authorization, Cookie, the auth and verify headers, and any
	// header whose name contains token, secret, key, signature, password,
	// auth, session or credential. Credentials are never kept, even when
	// listed.
	KeepHeaders []string `json:"keep_headers,omitempty"`

	app        *module.App
	logger     *zap.Logger
	tokens     [][]byte
	authHeader string
	authValues [][]byte
	verifier   signing.Verifier
	// keep is KeepHeaders canonicalized; nil keeps all but credentials.
	keep map[string]struct{}
	// idHeader carries the sender's message id on an inbound endpoint
	// (IDHeader, or Webhook-Id for Standard Webhooks senders); "" if none.
	idHeader string
	// idField is IDField split at its dots, or the verify scheme's
	// default; nil if none.
	idField []string
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.webhook_ingest",
		New: func() caddy.Module { return new(Handler) },
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
func (h *Handler) Provision(ctx caddy.Context) error {
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
	expand := func(what string, vals []string) ([][]byte, error) {
		strs, err := module.ExpandNonEmpty(what, vals)
		out := make([][]byte, len(strs))
		for i, v := range strs {
			out[i] = []byte(v)
		}
		return out, err
	}
	if h.Auth != nil {
		var err error
		if h.tokens, err = expand("auth bearer: token", h.Auth.Bearer); err != nil {
			return err
		}
		if ah := h.Auth.Header; ah != nil {
			if ah.Name == "" {
				return errors.New("auth header: no header name")
			}
			h.authHeader = http.CanonicalHeaderKey(ah.Name)
			if h.authValues, err = expand("auth header: value", ah.Values); err != nil {
				return err
			}
		}
		if len(h.tokens) == 0 && len(h.authValues) == 0 {
			return errors.New("auth: no credential configured")
		}
	}
	if v := h.Verify; v != nil {
		secrets, err := module.ExpandNonEmpty("verify: secret", v.Secrets)
		if err != nil {
			return err
		}
		if h.verifier, err = signing.NewVerifier(v.Scheme, secrets, v.Header, v.Encoding, v.Prefix, time.Duration(v.Tolerance)); err != nil {
			return err
		}
	}
	if len(h.KeepHeaders) > 0 {
		h.keep = make(map[string]struct{}, len(h.KeepHeaders))
		for _, name := range h.KeepHeaders {
			if !signing.ValidHeaderName(name) {
				return fmt.Errorf("keep_headers: invalid header name %q", name)
			}
			h.keep[http.CanonicalHeaderKey(name)] = struct{}{}
		}
	}
	switch {
	case h.IDHeader != "":
		if !signing.ValidHeaderName(h.IDHeader) {
			return fmt.Errorf("id_header: invalid header name %q", h.IDHeader)
		}
		h.idHeader = http.CanonicalHeaderKey(h.IDHeader)
		if err := h.CheckIDHeader(); err != nil {
			return err
		}
	case h.Verify != nil && (h.Verify.Scheme == "" || h.Verify.Scheme == "standard"):
		h.idHeader = "Webhook-Id"
	}
	switch {
	case h.IDField != "":
		if err := CheckIDField(h.IDField); err != nil {
			return err
		}
		h.idField = strings.Split(h.IDField, ".")
	case h.IDHeader == "" && h.Verify != nil && h.Verify.Scheme == "stripe":
		h.idField = []string{"id"}
	case h.IDHeader == "" && h.Verify != nil && h.Verify.Scheme == "slack":
		h.idField = []string{"event_id"}
	}
	if h.Topic != "" {
		if err := CheckTopic(h.Topic); err != nil {
			return err
		}
	} else if h.IDHeader != "" || h.IDField != "" || len(h.KeepHeaders) > 0 {
		return errors.New("id_header, id_field and keep_headers apply to inbound endpoints only: add topic, or remove them")
	}
	if h.Source == "" && h.Topic == "" {
		h.Source = "api"
	}
	appIface, err := ctx.App("webhooks")
	if err != nil {
		return fmt.Errorf("loading webhooks app: %v", err)
	}
	h.app = appIface.(*module.App)
	return nil
}

// verifyHeader is the header (canonical) that carries the signature the
// endpoint verifies, or "".
func (h *Handler) verifyHeader() string {
	if h.Verify == nil {
		return ""
	}
	if hdr := signing.SignatureHeader(h.Verify.Scheme, h.Verify.Header); hdr != "" || h.Verify.Header == "" {
		return hdr
	}
	return http.CanonicalHeaderKey(h.Verify.Header)
}

// slackChallenge returns the challenge of Slack's url_verification
// request, if body is one.
func slackChallenge(body []byte) (string, bool) {
	var m struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
	}
	if json.Unmarshal(body, &m) != nil || m.Type != "url_verification" || m.Challenge == "" {
		return "", false
	}
	return m.Challenge, true
}

// CheckIDHeader refuses an IDHeader that names the endpoint's auth or
// verify header: its value, a credential, would become the event id,
// sent to every receiver as webhook-id and shown by the admin API.
func (h *Handler) CheckIDHeader() error {
	if h.IDHeader == "" {
		return nil
	}
	id := http.CanonicalHeaderKey(h.IDHeader)
	if h.Auth != nil && h.Auth.Header != nil && http.CanonicalHeaderKey(h.Auth.Header.Name) == id ||
		h.verifyHeader() == id {
		return fmt.Errorf("id_header %s is the header of this endpoint's auth or verify: its value is a credential, not a message id", id)
	}
	return nil
}

// CheckTopic reports whether topic can make valid event types: with
// every placeholder given a value, it must be one. A topic that cannot
// ("a b", or text around a placeholder that no value can mend) would
// refuse every request.
func CheckTopic(topic string) error {
	// Caddy's own scan of placeholders, each given the value "x" (an
	// empty replacer knows none, so nothing is read).
	var unknown string
	typ, err := caddy.NewEmptyReplacer().ReplaceFunc(topic, func(key string, _ any) (any, error) {
		if unknown == "" && !knownRequestPlaceholder(key) {
			unknown = key
		}
		return "x", nil
	})
	if err != nil || !rules.ValidType(typ) {
		return fmt.Errorf("topic %q cannot make a valid event type: expected 1-200 characters of A-Z a-z 0-9 . _ - : / around its placeholders", topic)
	}
	if unknown != "" {
		// Caddy would answer every request with "unrecognized
		// placeholder": only the first webhook would tell.
		return fmt.Errorf("topic %q: {%s} is not a placeholder Caddy has for a request (a header is {http.request.header.NAME})", topic, unknown)
	}
	return nil
}

// knownRequestPlaceholder reports whether key, under http.request., is
// one of Caddy's request placeholders (modules/caddyhttp/replacer.go);
// placeholders of other namespaces ({http.vars.*}, {env.*}, …) depend on
// other modules and are taken as they are.
func knownRequestPlaceholder(key string) bool {
	rest, ok := strings.CutPrefix(key, "http.request.")
	if !ok {
		return true
	}
	switch rest {
	case "body", "duration", "duration_ms", "host", "hostport", "local", "local.host", "local.port",
		"method", "orig_method", "orig_uri", "orig_uri.path", "orig_uri.path.dir", "orig_uri.path.file",
		"orig_uri.path.file_escaped", "orig_uri.prefixed_query", "orig_uri.query", "port", "proto",
		"proto_name", "remote", "remote.host", "remote.port", "scheme", "uri", "uri.path", "uri.path.dir",
		"uri.path.file", "uri.path.file.base", "uri.path.file.ext", "uri.path_escaped", "uri.prefixed_query",
		"uri.query", "uri.query_escaped", "uri_escaped", "uuid":
		return true
	}
	for _, p := range []string{"cookie.", "header.", "host.labels.", "orig_uri.path.", "tls.", "uri.path.", "uri.query."} {
		if len(rest) > len(p) && strings.HasPrefix(rest, p) {
			return true
		}
	}
	return false
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
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// The ingest span is a child of Caddy's own server span when the
	// `tracing` directive made one, else of the request's traceparent.
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	if !module.TracerLive() {
		// No span is recorded: the request's trace context, if any, is
		// what the event keeps, as it would be through a no-op span.
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		if ierr := h.serve(w, r); ierr != nil {
			writeError(w, ierr)
		}
		return nil
	}
	ctx, span := module.Tracer().Start(ctx, "webhook ingest", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	defer span.End()
	if ierr := h.serve(w, r.WithContext(ctx)); ierr != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", ierr.status), attribute.String("error.type", ierr.code))
		if ierr.status >= 500 {
			span.SetStatus(codes.Error, ierr.code)
		}
		writeError(w, ierr)
	}
	return nil
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) *ingestError {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return &ingestError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
			message: "use POST", index: -1}
	}
	if h.Auth != nil && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hookgate"`)
		return &ingestError{status: http.StatusUnauthorized, code: "unauthorized",
			message: "missing or invalid credentials", index: -1}
	}
	if h.Topic == "" {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" && !isJSONMediaType(ct) {
			return &ingestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
				message: "Content-Type must be application/json (UTF-8, the only charset JSON has)", index: -1}
		}
	}
	body, ierr := h.readChecked(w, r)
	if ierr != nil {
		return ierr
	}
	if h.verifier != nil && h.Verify.Scheme == "slack" {
		if challenge, ok := slackChallenge(body); ok {
			// Slack's handshake when an Events API URL is set: it
			// wants its challenge back, and it is not an event.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			json.NewEncoder(w).Encode(map[string]string{"challenge": challenge})
			return nil
		}
	}

	var (
		batch   []persist.Ingest
		isBatch bool
	)
	if h.Topic != "" {
		batch, ierr = h.inbound(r, body)
	} else {
		batch, isBatch, ierr = h.decode(body)
	}
	if ierr != nil {
		return ierr
	}
	idemKeys, sentKey := r.Header["Idempotency-Key"]
	idemKey := r.Header.Get("Idempotency-Key")
	if sentKey && h.Topic == "" {
		// Sent but empty, or twice: the client meant something this
		// would not do (an empty one would store a new event each time).
		if len(idemKeys) > 1 {
			return badRequest(-1, "Idempotency-Key is sent %d times: send it once", len(idemKeys))
		}
		if isBatch {
			return badRequest(-1, "Idempotency-Key applies to a single event; give each element of a batch an \"id\"")
		}
		if !module.ValidID(idemKey) {
			return badRequest(-1, "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 _ - :")
		}
		if batch[0].Event.ID != "" && batch[0].Event.ID != idemKey {
			return badRequest(-1, "id and Idempotency-Key differ")
		}
		batch[0].Event.ID = idemKey
	}

	eng := h.app.Engine(r.Context())
	if eng == nil {
		return unavailable("the webhooks app is not running")
	}
	events := make([]*persist.Event, len(batch))
	for i := range batch {
		events[i] = batch[i].Event
		if events[i].Source == "" {
			events[i].Source = h.Source
		}
	}
	results, err := eng.Accept(r.Context(), events)
	if err != nil {
		return h.acceptError(err)
	}
	stored := 0
	for _, res := range results {
		if !res.Duplicate {
			stored++
		}
	}

	w.Header().Set("Content-Type", "application/json")
	status := http.StatusAccepted
	if stored == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	w.Write(answer(results, isBatch))
	return nil
}

// isJSONMediaType reports whether a Content-Type names application/json
// (any case, with parameters). The exact "application/json" is checked
// before, without parsing.
func isJSONMediaType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") &&
		!strings.EqualFold(cs, "utf8") && !strings.EqualFold(cs, "us-ascii") {
		return false
	}
	return err == nil && mt == "application/json"
}

// acceptError turns an error of Accept into an answer. Accept's doc says
// what may have been stored.
func (h *Handler) acceptError(err error) *ingestError {
	switch {
	case errors.Is(err, module.ErrNotRunning), errors.Is(err, persist.ErrClosed):
		return unavailable("the webhooks app is not running")
	case errors.Is(err, module.ErrOverloaded):
		return unavailable("too many pending deliveries (max_pending)")
	case errors.Is(err, persist.ErrTooLarge):
		return &ingestError{status: http.StatusRequestEntityTooLarge, code: "too_large",
			message: "an event and its deliveries do not fit in one outbox transaction (too many matching routes); other events of the batch may have been stored", index: -1}
	case errors.Is(err, persist.ErrStorageFull):
		// Logged by the engine when it starts and stops (storage.go).
		return &ingestError{status: http.StatusServiceUnavailable, code: "storage_full",
			message: "the outbox is short of disk space; retry later, with the same ids (any event already stored is then answered as a duplicate)", index: -1}
	}
	h.logger.Error("storing events", zap.Error(err))
	return unavailable("the outbox cannot store events right now")
}

func (h *Handler) authorized(r *http.Request) bool {
	ok := 0
	const prefix = "Bearer "
	if auth := r.Header.Get("Authorization"); len(h.tokens) > 0 &&
		len(auth) > len(prefix) && equalFoldASCII(auth[:len(prefix)], prefix) {
		got := []byte(auth[len(prefix):])
		for _, t := range h.tokens {
			ok |= subtle.ConstantTimeCompare(got, t)
		}
	}
	if h.authHeader != "" {
		if got := r.Header.Get(h.authHeader); got != "" {
			for _, v := range h.authValues {
				ok |= subtle.ConstantTimeCompare([]byte(got), v)
			}
		}
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

// inbound wraps a third-party webhook as one event: the type comes from
// the Topic template, the raw body becomes data.
func (h *Handler) inbound(r *http.Request, body []byte) ([]persist.Ingest, *ingestError) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	// A placeholder with no value (a header the sender did not send)
	// refuses the request: left empty, "github.{...}" would become the
	// valid type "github." and be routed as if it were one.
	typ, err := repl.ReplaceOrErr(h.Topic, true, true)
	if err != nil {
		return nil, badRequest(-1, "the event type cannot be built from topic %q: %v (is a header it uses missing?)", h.Topic, err)
	}
	if !rules.ValidType(typ) {
		return nil, badRequest(-1, "the event type %q built from topic is not valid: expected 1-200 characters of A-Z a-z 0-9 . _ - : / (is a header it uses missing?)", typ)
	}
	ev := &persist.Event{Type: typ, Source: h.Source, Headers: make(map[string]string, len(r.Header))}
	if ev.Source == "" {
		ev.Source = r.URL.Path
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	// JSON is UTF-8 (RFC 8259): other bytes in a "JSON" body would reach
	// receivers as they came and rules as U+FFFD, so such a body is kept
	// byte for byte like any other that is not text.
	if (mt == "application/json" || strings.HasSuffix(mt, "+json")) && utf8.Valid(body) && validJSON(body) {
		ev.Data = body
	} else {
		if utf8.Valid(body) {
			ev.Data = jsonString(body)
		} else {
			// A JSON string cannot hold these bytes (encoding would turn
			// them into U+FFFD, and a receiver re-checking the sender's
			// signature would fail): keep them as they are.
			ev.Data, ev.DataBase64 = body, true
		}
		ev.ContentType = ct
		if ev.ContentType == "" {
			ev.ContentType = "application/octet-stream"
		}
	}
	skip := map[string]struct{}{}
	if h.authHeader != "" {
		skip[h.authHeader] = struct{}{}
	}
	if hdr := h.verifyHeader(); hdr != "" {
		skip[hdr] = struct{}{}
	}
	if r.Header.Get("Content-Encoding") != "" {
		// The body is kept decoded (contentEncoding): these describe
		// what was sent, not what is kept.
		skip["Content-Encoding"], skip["Content-Length"] = struct{}{}, struct{}{}
	}
	for k, vs := range r.Header {
		if _, ok := skip[k]; ok || egress.SensitiveHeader(k) {
			continue
		}
		if _, ok := h.keep[k]; h.keep != nil && !ok {
			continue
		}
		ev.Headers[strings.ToLower(k)] = vs[0]
	}
	// The sender's message id is its idempotency key, within this
	// endpoint's namespace: two senders may well use the same ids.
	id := ""
	if h.idHeader != "" {
		id = r.Header.Get(h.idHeader)
	}
	if id == "" && h.idField != nil {
		id = jsonField(body, h.idField)
	}
	if id != "" {
		ev.ID = inboundID(h.namespace(r), id)
	}
	return []persist.Ingest{{Event: ev}}, nil
}

// CheckIDField reports whether path can name a field: dot-separated,
// non-empty keys.
func CheckIDField(path string) error {
	if path == "" || slices.Contains(strings.Split(path, "."), "") {
		return fmt.Errorf("id_field %q: expected object keys separated by dots, such as event_id or data.id", path)
	}
	return nil
}

// jsonField returns the string or number at path in a JSON body, or ""
// if the body is not JSON or holds no such value.
func jsonField(body []byte, path []string) string {
	raw := json.RawMessage(body)
	for _, key := range path {
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		var ok bool
		if raw, ok = obj[key]; !ok {
			return ""
		}
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return str
	}
	var num json.Number // as sent, not rounded through a float
	if json.Unmarshal(raw, &num) == nil {
		return num.String()
	}
	return ""
}

// namespace is where an inbound endpoint's sender ids live: its source,
// or the path the request came with, before handle_path or a rewrite
// changed it (two endpoints of one site must not share one, and an
// endpoint reached with its whole path stripped would have none).
func (h *Handler) namespace(r *http.Request) string {
	if h.Source != "" {
		return h.Source
	}
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		return or.URL.Path
	}
	return r.URL.Path
}

// inboundID is the event id of an inbound message whose sender gave it
// senderID: "<source>:<senderID>", so that a sender's retries are
// duplicates while the same id from another endpoint is not. The source
// has the characters an id may not hold turned into "_" (it comes from
// the config). A sender id with such characters, or too long for an id,
// becomes a hash of itself instead: turning them into "_" too would make
// "d.2" and "d/2" one id, and drop the second message as a duplicate.
func inboundID(source, senderID string) string {
	ns := []byte(strings.TrimLeft(source, "/"))
	for i, c := range ns {
		if !module.ValidID(string(c)) {
			ns[i] = '_'
		}
	}
	if len(ns)+1+len(senderID) <= maxIDLen && module.ValidID(senderID) {
		return string(ns) + ":" + senderID
	}
	sum := sha256.Sum256([]byte(senderID))
	return string(ns[:min(len(ns), maxIDLen-1-2*16)]) + ":" + hex.EncodeToString(sum[:16])
}

// maxIDLen is the longest event id.
const maxIDLen = 128

// decode parses one event or an array of them, strictly.
func (h *Handler) decode(body []byte) ([]persist.Ingest, bool, *ingestError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, badRequest(-1, "empty body: expected an event object or an array of events")
	}
	if !utf8.Valid(body) {
		// JSON is UTF-8 (RFC 8259): other bytes would reach endpoints
		// as they came, and placeholders as U+FFFD.
		return nil, false, badRequest(-1, "malformed JSON: the body is not valid UTF-8")
	}
	// Valid JSON (the common case) is scanned once here and then walked
	// without decoding again; anything else takes encoding/json's path for
	// its precise error messages.
	valid := validJSON(body)
	var err error
	switch trimmed[0] {
	case '{':
		decodeOne := decodeEvent
		if valid {
			decodeOne = decodeValidEvent
		}
		in, ierr := decodeOne(body, -1)
		if ierr != nil {
			return nil, false, ierr
		}
		return []persist.Ingest{in}, false, nil
	case '[':
		var raws []json.RawMessage
		if valid {
			raws = splitArray(body, h.MaxBatch+1)
		} else if raws, err = splitInvalidArray(body, h.MaxBatch+1); err != nil {
			return nil, true, badRequest(-1, "malformed JSON: %v", err)
		}
		if len(raws) == 0 {
			return nil, true, badRequest(-1, "empty batch: send at least one event")
		}
		if len(raws) > h.MaxBatch {
			return nil, true, &ingestError{status: http.StatusRequestEntityTooLarge, code: "batch_too_large",
				message: fmt.Sprintf("batch of more than %d events is over max_batch (%d)", h.MaxBatch, h.MaxBatch), index: -1}
		}
		out := make([]persist.Ingest, len(raws))
		seen := make(map[string]int, len(raws))
		decodeOne := decodeEvent
		if valid {
			decodeOne = decodeValidEvent
		}
		for i, raw := range raws {
			in, ierr := decodeOne(raw, i)
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

// splitInvalidArray reads the elements of an array that is not valid JSON
// with encoding/json, for its precise error, stopping after limit
// elements so that the cost stays bounded whatever the body holds.
func splitInvalidArray(body []byte, limit int) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // '['
		return nil, err
	}
	var raws []json.RawMessage
	for dec.More() && len(raws) < limit {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		raws = append(raws, raw)
	}
	if len(raws) == limit {
		return raws, nil
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the array")
	}
	return raws, nil
}

// repeatedKey returns a name the JSON object raw (already decoded once)
// holds twice, or "".
func repeatedKey(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		k, ok := t.(string)
		if err != nil || !ok {
			return ""
		}
		if seen[k] {
			return k
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// decodeEvent decodes one event with encoding/json: the reference path,
// used for input that is not valid JSON (for its precise messages) and
// by tests that check the fast path against it.
func decodeEvent(raw []byte, index int) (persist.Ingest, *ingestError) {
	// Decoding into a map keeps key case exact: encoding/json would match
	// "Type" or "DATA" to the struct's fields, and SPEC §1 rejects unknown
	// fields so that typos surface.
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&fields); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return persist.Ingest{}, badRequest(index, "malformed event: an event must be a JSON object, not a %s", te.Value)
		}
		return persist.Ingest{}, badRequest(index, "malformed event: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return persist.Ingest{}, badRequest(index, "malformed JSON: data after the event object")
	}
	if k := repeatedKey(raw); k != "" {
		return persist.Ingest{}, badRequest(index, "field %q appears twice", k)
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
	return finishEvent(m, index)
}

// finishEvent checks the decoded fields and builds the event.
func finishEvent(m incoming, index int) (persist.Ingest, *ingestError) {
	if m.Type == nil {
		return persist.Ingest{}, badRequest(index, "missing \"type\"")
	}
	if !rules.ValidType(*m.Type) {
		return persist.Ingest{}, badRequest(index, "invalid \"type\": expected 1-200 characters of A-Z a-z 0-9 . _ - : /")
	}
	if len(m.Data) == 0 {
		return persist.Ingest{}, badRequest(index, "missing \"data\"")
	}
	ev := &persist.Event{Type: *m.Type, Data: m.Data}
	if m.ID != nil {
		if !module.ValidID(*m.ID) {
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

// readBody reads at most limit bytes of the request body. With a
// Content-Length it reads into a buffer of exactly that size; without
// one, into a buffer grown as needed.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit {
		// One byte more than the length, to see the body's end in.
		buf := make([]byte, n, n+1)
		if _, err := io.ReadFull(body, buf); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		// The server's body ends at Content-Length: this sees its end.
		if m, err := body.Read(buf[n : n+1]); m > 0 || err != io.EOF {
			if err == nil || err == io.EOF {
				err = errors.New("body longer than its Content-Length")
			}
			return nil, err
		}
		return buf, nil
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(body)
	return buf.Bytes(), err
}

// readChecked reads the body (decoding an inbound gzip body) within
// max_body and verifies the sender's signature, if the endpoint has one.
func (h *Handler) readChecked(w http.ResponseWriter, r *http.Request) ([]byte, *ingestError) {
	gzipped, ierr := h.contentEncoding(r.Header)
	if ierr != nil {
		return nil, ierr
	}
	if r.ContentLength > h.MaxBody {
		return nil, tooLarge(h.MaxBody)
	}
	body, err := readBody(w, r, h.MaxBody)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(h.MaxBody)
		}
		return nil, &ingestError{status: http.StatusBadRequest, code: "read_error",
			message: "reading the request body failed", index: -1}
	}
	sent := body
	if gzipped {
		if body, err = gunzip(sent, h.MaxBody); err != nil {
			if errors.Is(err, errGunzipTooLarge) {
				return nil, &ingestError{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
					message: fmt.Sprintf("request body decompressed is over max_body (%d bytes)", h.MaxBody), index: -1}
			}
			return nil, &ingestError{status: http.StatusBadRequest, code: "bad_encoding",
				message: "the body is not valid gzip: " + err.Error(), index: -1}
		}
	}
	if h.verifier != nil {
		err := h.verifier.Verify(r.Header, body, time.Now())
		if err != nil && gzipped && h.verifier.Verify(r.Header, sent, time.Now()) == nil {
			// Signed as sent rather than as decompressed: either is
			// the sender's.
			err = nil
		}
		if err != nil {
			return nil, &ingestError{status: http.StatusUnauthorized, code: "verification_failed",
				message: "signature verification failed: " + err.Error(), index: -1}
		}
	}
	return body, nil
}

// contentEncoding checks a request's Content-Encoding. The ingest API
// takes none (or identity). An inbound endpoint also takes gzip, which is
// decoded before the body is verified and kept: senders that compress
// use gzip; anything else, or encodings stacked, gets a 415 rather than
// be kept as opaque bytes a receiver could not read.
func (h *Handler) contentEncoding(hdr http.Header) (gzipped bool, ierr *ingestError) {
	if h.Topic == "" {
		if ce := hdr.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			return false, &ingestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
				message: fmt.Sprintf("Content-Encoding %q is not accepted: send the body uncompressed", ce), index: -1}
		}
		return false, nil
	}
	switch ce := strings.ToLower(strings.TrimSpace(strings.Join(hdr.Values("Content-Encoding"), ","))); ce {
	case "", "identity":
		return false, nil
	case "gzip", "x-gzip":
		return true, nil
	default:
		return false, &ingestError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: fmt.Sprintf("Content-Encoding %q is not accepted: send the body uncompressed or as gzip", ce), index: -1}
	}
}

var errGunzipTooLarge = errors.New("decompressed body too large")

// gunzip decodes a gzip body, at most limit bytes of it: a small body
// that inflates past max_body is refused as a large one would be.
func gunzip(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, errGunzipTooLarge
	}
	return out, nil
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

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
)

// jsonString is body as a JSON string, with its text as it came: "<",
// ">" and "&" are not turned into \u003c and the like (json.Marshal's
// HTML escaping), which receivers and the console would show as such.
func jsonString(body []byte) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(body)) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
