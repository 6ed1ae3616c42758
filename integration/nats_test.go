package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookgate/hookgate/persist/nats/natstest"
)

// TestNATSClusterTwoCaddies: two Caddy processes share a 3-node
// JetStream cluster (replicas 3) as one gateway. Events are posted to
// both; an id already taken on one node is a duplicate on the other;
// then one Caddy and one NATS server (all separate processes) are
// killed with SIGKILL while clients keep posting, and every event that
// got a 202 reaches the sink, delivered by the survivors.
func TestNATSClusterTwoCaddies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a NATS cluster and two Caddy processes")
	}
	cluster := natstest.RunClusterProcesses(t, 3)
	var (
		mu       sync.Mutex
		received = make(map[string]int)
	)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) {
		// Slow enough that the killed node has attempts in flight,
		// which the survivor makes again once their claims expire.
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		received[r.Header.Get("Webhook-Id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	cfg := func(addr string) string {
		return fmt.Sprintf(`{
	admin off
	persist_config off
	webhooks {
		storage nats {
			servers %s
			replicas 3
			prefix e2e
		}
		egress default {
			allow 127.0.0.1/32
		}
		route sink {
			topics nats.*
			url %s/in
			timeout 1s
			retry {
				schedule 100ms 200ms 500ms 1s 1s 1s 1s 1s
			}
		}
	}
}
http://%s {
	webhook_ingest /events
}
`, strings.Join(cluster.URLs(), " "), s.URL, addr)
	}
	ports := freePorts(t, 2)
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
	nodes := []*child{startChild(t, cfg(addrs[0]), addrs[0]), startChild(t, cfg(addrs[1]), addrs[1])}
	defer nodes[1].stop(t)

	hc := &http.Client{Timeout: 10 * time.Second}
	post := func(addr, id string) (int, string, error) {
		body := fmt.Sprintf(`{"type":"nats.test","id":%q,"data":{"pad":%q}}`, id, strings.Repeat("x", 200))
		resp, err := hc.Post("http://"+addr+"/events", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	// One id, both nodes: stored once.
	if code, body, err := post(addrs[0], "dup-1"); err != nil || code != http.StatusAccepted {
		t.Fatalf("first post: %d %s %v; log:\n%s", code, body, err, nodes[0].tail())
	}
	if code, body, err := post(addrs[1], "dup-1"); err != nil || code != http.StatusOK || !strings.Contains(body, `"duplicate":true`) {
		t.Fatalf("same id on the other node: %d %s %v, want 200 duplicate", code, body, err)
	}

	var (
		acked   sync.Map
		nAcked  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		posters = 8
	)
	acked.Store("dup-1", true)
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			addr := addrs[p%2]
			for n := 0; n < 100000 && !stop.Load(); n++ {
				id := fmt.Sprintf("n-%d-%d", p, n)
				code, _, err := post(addr, id)
				if err != nil && p%2 == 0 {
					// Node 0 is gone: carry on at node 1.
					addr = addrs[1]
					continue
				}
				if code == http.StatusAccepted {
					acked.Store(id, true)
					nAcked.Add(1)
				}
			}
		}(p)
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(60 * time.Second)
		for nAcked.Load() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(300)
	nodes[0].kill()
	cluster.Servers[2].Kill()
	before := nAcked.Load()
	waitFor(before + 300)
	stop.Store(true)
	wg.Wait()
	total := nAcked.Load()
	if total < before+100 {
		t.Fatalf("only %d events acknowledged after the kills (%d before); log:\n%s", total-before, before, nodes[1].tail())
	}
	t.Logf("acknowledged: %d (%d before SIGKILL of one Caddy and one NATS server)", total, before)

	missing := func() []string {
		var out []string
		mu.Lock()
		defer mu.Unlock()
		acked.Range(func(k, _ any) bool {
			if received[k.(string)] == 0 {
				out = append(out, k.(string))
			}
			return true
		})
		return out
	}
	end := time.Now().Add(120 * time.Second)
	for {
		m := missing()
		if len(m) == 0 {
			break
		}
		if time.Now().After(end) {
			if len(m) > 10 {
				m = m[:10]
			}
			t.Fatalf("%d acknowledged events never delivered, e.g. %v; log:\n%s", len(missing()), m, nodes[1].tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	dups := 0
	for _, n := range received {
		if n > 1 {
			dups++
		}
	}
	mu.Unlock()
	t.Logf("all %d acknowledged events delivered; %d delivered more than once (allowed: at-least-once)", total+1, dups)
}

// TestNATSReloadKeepsConnection: a reload with the same NATS servers
// and prefix keeps the engine, hence its one connection (and watches):
// the server sees the same client before and after, events posted on
// both sides of the reload are delivered, and none is lost.
func TestNATSReloadKeepsConnection(t *testing.T) {
	srv := natstest.Run(t)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	tmpl := func(topics string) string {
		return `{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage nats {
			servers ` + srv.URL() + `
			prefix reload
		}
		egress default {
			allow 127.0.0.1/32
		}
		route sink {
			topics ` + topics + `
			url ` + s.URL + `/in
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`
	}
	g := startGateway(t, tmpl("a.*"))
	clients := func() []uint64 {
		cz, err := srv.Connz(nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint64
		for _, c := range cz.Conns {
			ids = append(ids, c.Cid)
		}
		return ids
	}
	before := clients()
	if len(before) != 1 {
		t.Fatalf("clients before the reload: %v, want one connection", before)
	}
	if code, body := g.post("/events", `{"type":"a.x","id":"r1","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("post before reload: %d %v", code, body)
	}
	g.load(tmpl("a.* b.*"))
	if code, body := g.post("/events", `{"type":"b.x","id":"r2","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("post after reload: %d %v", code, body)
	}
	if code, body := g.post("/events", `{"type":"b.x","id":"r1","data":{}}`); code != http.StatusOK || body["duplicate"] != true {
		t.Fatalf("an id stored before the reload, after it: %d %v, want 200 duplicate", code, body)
	}
	after := clients()
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("clients after the reload: %v, want the same connection %v", after, before)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ids := map[string]bool{}
		for _, r := range s.requests() {
			ids[r.Header.Get("Webhook-Id")] = true
		}
		if ids["r1"] && ids["r2"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered: %v, want r1 and r2", ids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExampleClusterConfigs: the Caddyfiles of examples/cluster adapt,
// and the nats-server configs there parse.
func TestExampleClusterConfigs(t *testing.T) {
	for _, name := range []string{"Caddyfile.node1", "Caddyfile.node2"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", "cluster", name))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(b, map[string]any{"filename": name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(string(cfg), `"replicas":3`) {
			t.Fatalf("%s adapts without replicas 3: %s", name, cfg)
		}
	}
	for i := 1; i <= 3; i++ {
		file := filepath.Join("..", "examples", "cluster", fmt.Sprintf("nats-%d.conf", i))
		opts, err := server.ProcessConfigFile(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !opts.JetStream || opts.Cluster.Name != "hookgate" || len(opts.Routes) != 3 {
			t.Fatalf("%s: jetstream %v, cluster %q, %d routes; want jetstream, cluster hookgate, 3 routes", file, opts.JetStream, opts.Cluster.Name, len(opts.Routes))
		}
	}
}

// TestNATSOutageDuringIngest: with NATS stopped, ingest answers 503
// (with Retry-After) and stores nothing; once NATS is back, ingest and
// delivery resume by themselves, and the event refused meanwhile can be
// sent again.
func TestNATSOutageDuringIngest(t *testing.T) {
	srv := natstest.Run(t)
	s := newSink(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	g := startGateway(t, `{
	admin {ADMIN}
	persist_config off
	webhooks {
		storage nats {
			servers `+srv.URL()+`
			prefix outage
		}
		egress default {
			allow 127.0.0.1/32
		}
		route sink {
			topics o.*
			url `+s.URL+`/in
		}
	}
}
http://127.0.0.1:{PORT} {
	webhook_ingest /events
}
`)
	if code, body := g.post("/events", `{"type":"o.x","id":"o1","data":{}}`); code != http.StatusAccepted {
		t.Fatalf("post before the outage: %d %v", code, body)
	}
	s.waitFor(t, 1, 10*time.Second)
	srv.Shutdown()
	srv.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := g.post("/events", `{"type":"o.x","id":"o2","data":{}}`)
		if code == http.StatusServiceUnavailable {
			if body["error"] != "unavailable" {
				t.Fatalf("during the outage: %d %v, want 503 unavailable", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("during the outage: %d %v, want 503", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Restart(t)
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, body := g.post("/events", `{"type":"o.x","id":"o2","data":{}}`)
		if code == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after NATS is back: %d %v, want 202", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// o1's outcome may have been cut off by the outage, and o1 sent
	// again (at least once): wait for o2 among whatever arrives.
	deadline = time.Now().Add(20 * time.Second)
	for {
		for _, r := range s.requests() {
			if r.Header.Get("Webhook-Id") == "o2" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("o2 not delivered within 20s after NATS came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
