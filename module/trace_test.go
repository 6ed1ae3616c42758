package module

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/hookgate/hookgate/persist"
)

// withMemoryTracing installs an in-memory exporter for the test.
func withMemoryTracing(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tracing.mu.Lock()
	tracing.override = tp
	tracing.mu.Unlock()
	if err := acquireTracing(zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		releaseTracing()
		tracing.mu.Lock()
		tracing.override = nil
		tracing.mu.Unlock()
		tp.Shutdown(t.Context())
	})
	return exp
}

// TestAttemptSpanJoinsTheStoredTrace checks an attempt started from a
// stored event (as after a restart): its span is a child of the stored
// ingest span, the request carries the attempt span's traceparent, and
// trace_propagation off sends none while the trace id is still known.
func TestAttemptSpanJoinsTheStoredTrace(t *testing.T) {
	exp := withMemoryTracing(t)
	const tid, ingestSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Traceparent"))
	}))
	defer srv.Close()
	s := newSender()
	now := time.Now()

	for _, off := range []bool{false, true} {
		rc := &Route{URL: srv.URL}
		if off {
			rc.TracePropagation = "off"
		}
		r := testRoute(t, rc)
		j := testJob(now)
		j.ev.TraceParent = "00-" + tid + "-" + ingestSpan + "-01"
		ctx, span := startAttemptSpan(context.Background(), r, j, 3)
		res := s.attempt(ctx, r, j, now)
		endAttemptSpan(span, res)
		if !res.ok() {
			t.Fatalf("attempt: %+v", res)
		}
		if traceID(ctx) != tid {
			t.Errorf("trace id %q, want %s", traceID(ctx), tid)
		}
	}
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for _, sp := range spans {
		if sp.SpanContext.TraceID().String() != tid || sp.Parent.SpanID().String() != ingestSpan {
			t.Errorf("span %s: trace %s parent %s", sp.Name, sp.SpanContext.TraceID(), sp.Parent.SpanID())
		}
	}
	want := "00-" + tid + "-" + spans[0].SpanContext.SpanID().String() + "-01"
	if len(got) != 2 || got[0] != want {
		t.Errorf("outbound traceparent %q, want %q (the attempt span)", got, want)
	}
	if got[1] != "" {
		t.Errorf("trace_propagation off sent traceparent %q", got[1])
	}
	attrs := map[string]string{}
	for _, kv := range spans[0].Attributes {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	for k, v := range map[string]string{"hookgate.route": "test", "hookgate.attempt": "3", "http.response.status_code": "200", "hookgate.event.type": "task.finished"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
}

// TestNoExporterMeansNoProvider checks that without OTEL_* variables no
// provider is made (tracing costs nothing) and spans are not recorded.
func TestNoExporterMeansNoProvider(t *testing.T) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	if err := acquireTracing(zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	defer releaseTracing()
	tracing.mu.Lock()
	p := tracing.provider
	tracing.mu.Unlock()
	if p != nil {
		t.Fatalf("a tracer provider was made with no exporter configured")
	}
	_, span := Tracer().Start(t.Context(), "x")
	if span.IsRecording() {
		t.Errorf("span records with tracing off")
	}
	span.End()
}

// TestAttemptWithoutTracingKeepsStoredTrace checks the attempt path with
// no exporter configured, which skips starting spans: the request carries
// the stored traceparent and tracestate exactly, the attempt knows the
// trace id, and both match what a span of the no-op tracer would give.
// An event stored without trace context sends none.
func TestAttemptWithoutTracingKeepsStoredTrace(t *testing.T) {
	if TracerLive() {
		t.Fatal("a recording tracer is installed; this test needs the no-op one")
	}
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	const parent, state = "00-" + tid + "-00f067aa0ba902b7-01", "vendor=opaque,other=1"
	var got []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Clone())
	}))
	defer srv.Close()
	s := newSender()
	now := time.Now()
	r := testRoute(t, &Route{URL: srv.URL})
	for i, stored := range []string{parent, ""} {
		j := testJob(now)
		j.ev.TraceParent = stored
		if stored != "" {
			j.ev.TraceState = state
		}
		ctx, span := startAttemptSpan(context.Background(), r, j, 1)
		if span.IsRecording() {
			t.Errorf("case %d: the span records with tracing off", i)
		}
		// What the no-op tracer's Start makes of the same parent.
		pctx := context.Background()
		if stored != "" {
			pctx = propagator.Extract(pctx, propagation.MapCarrier{"traceparent": stored, "tracestate": state})
		}
		_, nspan := noop.NewTracerProvider().Tracer("hookgate").Start(pctx, "x")
		if !span.SpanContext().Equal(nspan.SpanContext()) {
			t.Errorf("case %d: span context %+v, the no-op tracer's is %+v", i, span.SpanContext(), nspan.SpanContext())
		}
		res := s.attempt(ctx, r, j, now)
		endAttemptSpan(span, res)
		if !res.ok() {
			t.Fatalf("attempt: %+v", res)
		}
		wantID := ""
		if stored != "" {
			wantID = tid
		}
		if traceID(ctx) != wantID {
			t.Errorf("case %d: trace id %q, want %q", i, traceID(ctx), wantID)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2", len(got))
	}
	if tp, ts := got[0].Get("Traceparent"), got[0].Get("Tracestate"); tp != parent || ts != state {
		t.Errorf("sent traceparent %q tracestate %q, want %q %q", tp, ts, parent, state)
	}
	if _, ok := got[1]["Traceparent"]; ok {
		t.Errorf("an event without trace context sent traceparent %q", got[1].Get("Traceparent"))
	}
	if _, ok := got[1]["Tracestate"]; ok {
		t.Errorf("an event without trace context sent tracestate %q", got[1].Get("Tracestate"))
	}
}

// TestAcceptKeepsTraceContext checks that Accept stores the trace context
// of its ctx (traceparent and tracestate) with each event, and none when
// ctx has none.
func TestAcceptKeepsTraceContext(t *testing.T) {
	te := startTestEngine(t, "", map[string]*Route{"a": {URL: "http://127.0.0.1:1/"}}, nil)
	const parent, state = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=opaque"
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": parent, "tracestate": state})
	for _, tc := range []struct {
		ctx           context.Context
		parent, state string
	}{{ctx, parent, state}, {context.Background(), "", ""}} {
		res, err := te.Accept(tc.ctx, []*persist.Event{{Type: "test.event", Data: []byte(`1`)}})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := te.store.Event(res[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if ev.TraceParent != tc.parent || ev.TraceState != tc.state {
			t.Errorf("stored traceparent %q tracestate %q, want %q %q", ev.TraceParent, ev.TraceState, tc.parent, tc.state)
		}
	}
}
