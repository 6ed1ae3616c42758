package module

import (
	"context"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// tracing is the process-wide tracer provider, shared by every config and
// reference counted like Caddy's own: a reload must not start a second
// batch processor, and the last config to go shuts it down (flushing).
var tracing = struct {
	mu       sync.Mutex
	refs     int
	provider *sdktrace.TracerProvider // nil: no exporter configured
	// tracer is read by every ingest and attempt, so without the lock;
	// it is written under mu.
	tracer atomic.Pointer[tracerRef]
	// override is set by tests (an in-memory provider).
	override trace.TracerProvider
}{}

func init() { setTracer(noop.NewTracerProvider().Tracer("hookgate")) }

// tracerRef is the current tracer and whether it records anything.
type tracerRef struct {
	t trace.Tracer
	// live is false for the no-op tracer: its spans only carry the
	// parent's span context, so the span work can be skipped.
	live bool
}

func setTracer(t trace.Tracer) {
	_, isNoop := t.(noop.Tracer)
	tracing.tracer.Store(&tracerRef{t: t, live: !isNoop})
}

// propagator reads and writes W3C traceparent/tracestate.
var propagator = propagation.TraceContext{}

// exporterConfigured reports whether the standard OTEL_* variables ask
// for a trace exporter. With none, tracing is a no-op and costs nothing.
func exporterConfigured() bool {
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" {
		return !strings.EqualFold(v, "none")
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

func acquireTracing(logger *zap.Logger) error {
	tracing.mu.Lock()
	defer tracing.mu.Unlock()
	tracing.refs++
	if tracing.refs > 1 {
		return nil
	}
	setTracer(noop.NewTracerProvider().Tracer("hookgate"))
	switch {
	case tracing.override != nil:
		setTracer(tracing.override.Tracer("hookgate"))
	case exporterConfigured():
		exp, err := autoexport.NewSpanExporter(context.Background())
		if err != nil {
			tracing.refs--
			return err
		}
		if autoexport.IsNoneSpanExporter(exp) {
			return nil
		}
		res, _ := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", "hookgate")))
		tracing.provider = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		setTracer(tracing.provider.Tracer("hookgate"))
		logger.Info("tracing enabled (OTEL_* environment)")
	}
	return nil
}

func releaseTracing() error {
	tracing.mu.Lock()
	defer tracing.mu.Unlock()
	if tracing.refs > 0 {
		tracing.refs--
	}
	if tracing.refs > 0 {
		return nil
	}
	setTracer(noop.NewTracerProvider().Tracer("hookgate"))
	p := tracing.provider
	tracing.provider = nil
	if p == nil {
		return nil
	}
	_ = p.ForceFlush(context.Background())
	return p.Shutdown(context.Background())
}

// Tracer is hookgate's tracer: a no-op unless the standard OTEL_*
// variables configure an exporter. The ingest handler starts its span
// with it, so attempts made later are children of that span.
func Tracer() trace.Tracer { return tracing.tracer.Load().t }

// TracerLive reports whether Tracer records spans. When it does not (no
// exporter configured), a span started with it carries only its
// parent's span context: callers may skip starting one, and pass the
// parent's context on instead.
func TracerLive() bool { return tracing.tracer.Load().live }

// traceCarrier carries the W3C trace context as stored with an event,
// without the map of a propagation.MapCarrier.
type traceCarrier struct{ parent, state string }

func (c *traceCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c *traceCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.parent = value
	case "tracestate":
		c.state = value
	}
}

func (c *traceCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// startAttemptSpan starts the span of one delivery attempt as a child of
// the ingest span stored with the event, so retries hours later, and after
// restarts, join the original trace. The context it returns is also
// parent's: cancelling parent cuts the attempt.
func startAttemptSpan(parent context.Context, r *route, j *job, attempt int) (context.Context, trace.Span) {
	if j.ev.TraceParent != "" {
		parent = propagator.Extract(parent, &traceCarrier{parent: j.ev.TraceParent, state: j.ev.TraceState})
	}
	tr := tracing.tracer.Load()
	if !tr.live {
		// What the no-op tracer's Start returns, without the options.
		return parent, trace.SpanFromContext(parent)
	}
	return tr.t.Start(parent, "webhook delivery "+r.name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("hookgate.route", r.name),
			attribute.String("hookgate.event.id", j.ev.ID),
			attribute.String("hookgate.event.type", j.ev.Type),
			attribute.String("hookgate.delivery.id", j.d.ID),
			attribute.Int("hookgate.attempt", attempt),
			attribute.String("http.request.method", "POST"),
		))
}

// endAttemptSpan records an attempt's result on its span.
func endAttemptSpan(span trace.Span, res result) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if res.status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", res.status))
	}
	if res.class != "" {
		span.SetAttributes(attribute.String("error.type", res.class))
		span.SetStatus(codes.Error, res.class)
	}
	span.End()
}

// traceID is the trace id of ctx's span, or "" without a valid one.
func traceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}
