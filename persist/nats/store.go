// Package natsstore is hookgate's outbox on NATS JetStream: a
// persist.Store that several Caddy nodes share, so that any node accepts
// events and any node delivers any delivery.
//
// Layout. Every record lives in a JetStream key-value bucket (a stream
// with one message per key) named PREFIX_NAME, replicated Replicas times:
//
//	PREFIX_deliveries  delivery id -> persist.Delivery (JSON)
//	PREFIX_events      event id    -> the event, its payload and its first deliveries
//	PREFIX_attempts    delivery id -> the newest attempts (JSON array)
//	PREFIX_dedupe      idempotency key -> event id and when the window ends
//	PREFIX_routes      route name  -> persist.RouteState
//	PREFIX_claims      delivery id -> the node attempting it (a lease)
//
// Keys are the ids base64url-encoded. Records that expire (final
// deliveries, their attempts, events whose deliveries are all final,
// idempotency keys, claims) carry a per-message TTL; the server removes
// them on its wall clock and leaves a delete marker that every node sees.
//
// The ready index. Each node watches the deliveries and claims buckets
// and keeps what it sees in memory (its mirror): Due, DueFrom, Pending,
// DeadCounts, ListDeliveries and ReplayIDs read it. The mirror is the
// server's state as of the last message the watch delivered, plus this
// node's own writes, applied as soon as the server acknowledged them, so
// a node reads its own writes at once and other nodes' a few
// milliseconds later. Counts therefore cover the whole gateway, not one
// node.
//
// Claims. The Store contract lets the engine claim in memory, which is
// enough for one process and not for several. This store also
// implements persist.Claimer: before an attempt the engine claims the
// delivery with an atomic create of its key in the claims bucket, with a
// TTL longer than the attempt can last. The server decides which node
// wins; the winner re-reads the delivery from the stream leader and keeps
// the claim only if it is still pending at the due time it was listed
// with. Record releases the claim once the outcome is written; a node
// that dies leaves its claims to expire, after which the deliveries are
// due again on every node. Deliveries claimed by another node are not
// listed by Due.
//
// Ingest. An ingest writes, in this order: the idempotency key (an
// atomic create: the first node wins, the others see a duplicate), the
// event record (an atomic create: a stored event is never overwritten),
// then its deliveries, and answers only once the server acknowledged
// every write. The event record also holds the deliveries as first
// written. If a node dies between the event and its deliveries, the
// client got no answer and sends again: the retry finds the key (or the
// event) and, before answering "duplicate", writes the deliveries the
// event record lists that are missing. So an acknowledged event always
// has all its deliveries. An idempotency key whose event never appeared
// (its node died before writing it) is taken over by the next ingest
// once staleAfter has passed. The elements of a batch are stored
// several at a time when none can affect another (Ingest, independent).
package natsstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hookgate/hookgate/persist"
)

// DefaultPrefix names the streams and buckets when Config.Prefix is empty.
const DefaultPrefix = "hookgate"

// opTimeout bounds every call to the server.
const opTimeout = 10 * time.Second

// staleAfter is how long an idempotency key may point at an event that
// is not stored before another ingest takes the key over: longer than
// any ingest takes.
const staleAfter = 30 * time.Second

// Config says where the outbox lives on NATS. It is the `nats` object
// of the webhooks app's JSON config.
type Config struct {
	// Servers are the NATS URLs (nats://host:port, tls://host:port) of
	// one cluster.
	Servers []string `json:"servers,omitempty"`
	// Prefix names the streams and buckets (PREFIX_deliveries, ...), so
	// several gateways can share one NATS cluster; every node of one
	// gateway uses the same. Default "hookgate".
	Prefix string `json:"prefix,omitempty"`
	// Replicas is the number of JetStream replicas of every stream and
	// bucket (1, 3 or 5). Default 1.
	Replicas int `json:"replicas,omitempty"`
	// Credentials is a NATS credentials file (JWT and NKey seed).
	Credentials string `json:"credentials,omitempty"`
	// Token authenticates with a token.
	Token string `json:"token,omitempty"`
	// User and Password authenticate with a user name and password.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// TLS configures TLS to the servers.
	TLS *TLSConfig `json:"tls,omitempty"`
	// Name is the connection name the servers show. Default "hookgate".
	Name string `json:"name,omitempty"`
}

// TLSConfig is TLS to the NATS servers.
type TLSConfig struct {
	// CA is a PEM file of the CAs that sign the servers' certificates;
	// default: the system's.
	CA string `json:"ca,omitempty"`
	// ClientCert and ClientKey are a PEM certificate and its key,
	// presented to the servers.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the config as a user wrote it.
func (c *Config) Validate() error {
	if len(c.Servers) == 0 {
		return errors.New("nats storage: no servers given; expected at least one nats:// URL")
	}
	if c.Prefix != "" && !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("nats storage: prefix %q: expected 1 to 64 letters, digits, '-' or '_'", c.Prefix)
	}
	switch c.Replicas {
	case 0, 1, 3, 5:
	default:
		return fmt.Errorf("nats storage: replicas %d: expected 1, 3 or 5", c.Replicas)
	}
	n := 0
	for _, set := range []bool{c.Credentials != "", c.Token != "", c.User != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("nats storage: give one of credentials, token or user, not several")
	}
	if c.TLS != nil && (c.TLS.ClientCert == "") != (c.TLS.ClientKey == "") {
		return errors.New("nats storage: client_cert needs both a certificate and a key file")
	}
	return nil
}

// Key identifies the backend: two configs with the same key share one
// connection and engine.
func (c *Config) Key() string {
	return "nats:" + strings.Join(c.Servers, ",") + "|" + c.prefix()
}

// Redacted returns the server URLs with any password in them replaced
// by "xxxxx", for logs and errors.
func (c *Config) Redacted() []string {
	out := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		out[i] = s
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx") // a token
			}
			out[i] = u.String()
		}
	}
	return out
}

func (c *Config) prefix() string {
	if c.Prefix == "" {
		return DefaultPrefix
	}
	return c.Prefix
}

func (c *Config) natsOptions() ([]nats.Option, error) {
	name := c.Name
	if name == "" {
		name = "hookgate"
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	switch {
	case c.Credentials != "":
		opts = append(opts, nats.UserCredentials(c.Credentials))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if t := c.TLS; t != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if t.CA != "" {
			pem, err := os.ReadFile(t.CA)
			if err != nil {
				return nil, fmt.Errorf("nats storage: reading CA file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("nats storage: %s holds no PEM certificate", t.CA)
			}
			tc.RootCAs = pool
		}
		if t.ClientCert != "" {
			cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
			if err != nil {
				return nil, fmt.Errorf("nats storage: loading client certificate: %v", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// Store is the outbox on JetStream. It implements persist.Store and
// persist.Claimer.
type Store struct {
	cfg  Config
	opts persist.Options
	now  func() time.Time
	node string // this process's id, the value of its claims

	nc    *nats.Conn
	js    jetstream.JetStream
	shown string // the servers, redacted, for errors

	deliveries, events, attempts, dedupe, routes, claims *bucket

	mirror *mirror
	ret    atomic.Pointer[persist.Retention]
	// recent holds event records Event read, for the outcome that
	// counts a delivery off its event next; ingested holds those this
	// node wrote, for LoadJobs.
	recent   eventCache[recentEvent]
	ingested eventCache[ingestedEvent]

	shards []chan func()
	// ops counts calls in progress, so Close waits for them.
	ops     sync.WaitGroup
	closeMu sync.RWMutex
	closed  bool
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

var (
	_ persist.Store     = (*Store)(nil)
	_ persist.Claimer   = (*Store)(nil)
	_ persist.JobLoader = (*Store)(nil)
)

// recordShards is how many writers apply outcomes; outcomes of one
// delivery always go to the same one, in the order they were made.
const recordShards = 64

// Open connects to the servers, creates or updates the streams and
// buckets under the prefix, and loads the mirror. A server that cannot
// be reached fails with an error naming the servers.
func Open(cfg Config, opts persist.Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = 24 * time.Hour
	}
	if opts.Retention <= 0 {
		opts.Retention = 72 * time.Hour
	}
	if opts.DeadRetention <= 0 {
		opts.DeadRetention = 30 * 24 * time.Hour
	}
	if opts.AttemptLog <= 0 {
		opts.AttemptLog = 50
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	nopts, err := cfg.natsOptions()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(strings.Join(cfg.Servers, ","), nopts...)
	// The servers as errors and logs may show them: without passwords.
	servers := strings.Join(cfg.Redacted(), ",")
	if err != nil {
		return nil, fmt.Errorf("nats storage: connecting to %s: %w", servers, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats storage: %w", err)
	}
	s := &Store{cfg: cfg, opts: opts, now: opts.Now, node: nuid.Next(), nc: nc, js: js, shown: servers}
	s.ret.Store(&persist.Retention{Dedupe: opts.DedupeWindow, Delivered: opts.Retention, Dead: opts.DeadRetention})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := cfg.prefix()
	for _, b := range []struct {
		to   **bucket
		name string
	}{
		{&s.deliveries, "deliveries"}, {&s.events, "events"}, {&s.attempts, "attempts"},
		{&s.dedupe, "dedupe"}, {&s.routes, "routes"}, {&s.claims, "claims"},
	} {
		bk, err := openBucket(ctx, js, p+"_"+b.name, cfg.Replicas)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("nats storage at %s: %w%s", servers, err, quorumHint(err, cfg.Replicas))
		}
		*b.to = bk
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.mirror = newMirror()
	if err := s.mirror.start(ctx, wctx, s, &s.wg); err != nil {
		stop()
		nc.Close()
		return nil, fmt.Errorf("nats storage at %s: loading deliveries: %w%s", servers, err, quorumHint(err, cfg.Replicas))
	}
	nc.SetReconnectHandler(func(*nats.Conn) {
		s.closeMu.RLock()
		defer s.closeMu.RUnlock()
		if s.closed {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.mirror.rewatch(wctx, s, &s.wg)
		}()
	})
	s.shards = make([]chan func(), recordShards)
	for i := range s.shards {
		ch := make(chan func(), 256)
		s.shards[i] = ch
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for fn := range ch {
				fn()
			}
		}()
	}
	return s, nil
}

// begin guards a call against Close; end must follow a nil error.
func (s *Store) begin() error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return persist.ErrClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) end() { s.ops.Done() }

// Close implements persist.Store: it waits for outcomes submitted and
// calls in progress, then drains the connection.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	s.ops.Wait()
	for _, ch := range s.shards {
		close(ch)
	}
	s.stop()
	s.wg.Wait()
	s.mirror.stopWatch()
	return s.nc.Drain()
}

// Abandon drops the connection as a killed process would: no waiting,
// nothing flushed. Tests use it to simulate a crash; the store is
// unusable afterwards.
func (s *Store) Abandon() {
	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
	s.nc.Close()
	s.stop()
	s.mirror.stopWatch()
}

// SetRetention implements persist.Store.
func (s *Store) SetRetention(dedupe, delivered, dead time.Duration) {
	cur := s.ret.Load().With(dedupe, delivered, dead)
	s.ret.Store(&cur)
}

// connected returns ErrUnavailable at once while nc has no server: a
// read sent then would wait opTimeout for an answer that cannot come (an
// operator's look-up would hang, a worker's load would stall).
func connected(nc *nats.Conn) error {
	if nc.IsConnected() {
		return nil
	}
	return fmt.Errorf("%w: not connected to any server", ErrUnavailable)
}

// Health reports whether the store can reach NATS now (ErrUnavailable
// when no server is connected).
func (s *Store) Health() error { return connected(s.nc) }

func ctxOp() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// ErrUnavailable is returned by Ingest while the store has no
// connection to any NATS server: nothing was stored.
var ErrUnavailable = errors.New("NATS is unavailable")

// quorumHint is what to check when opening the store timed out: the
// servers answered the connection but JetStream did not answer in time.
func quorumHint(err error, replicas int) string {
	if !Unavailable(err) {
		return ""
	}
	if replicas > 1 {
		return fmt.Sprintf(" (is JetStream up, with a quorum? replicas %d needs a majority of the cluster's servers running and routed to each other)", replicas)
	}
	return " (is JetStream enabled on the servers, and reachable?)"
}

// Unavailable reports whether err says NATS could not answer now (no
// connection, no quorum or leader, a timeout), as opposed to a refusal
// or a bug: the admin API answers 503 with Retry-After for these.
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503
	}
	return false
}

// mapErr turns the server's refusals into the outbox's errors: a
// stream or account that is full is persist.ErrStorageFull (ingest
// answers 503 storage_full); anything else (no quorum, no connection)
// stays as it is (ingest answers 503 unavailable).
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10002, 10023, 10047, 10077:
			// Account resource limits exceeded, insufficient resources,
			// insufficient storage, a stream's limits reached.
			return fmt.Errorf("%w: NATS JetStream refused the write: %v", persist.ErrStorageFull, err)
		}
	}
	return err
}
