// Package tracing owns OpenTelemetry setup for alecrypt's programs: the
// tracer provider and propagator chosen by the standard OTEL_* environment,
// off unless asked for.
//
// Spans carry procedure names, codes and sizes (what otelconnect records),
// never message contents, so neither plaintext nor keys reach a trace.
package tracing

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is a configured tracer provider, or nothing when tracing is off.
type Tracing struct {
	Provider   trace.TracerProvider // nil when off
	Propagator propagation.TextMapPropagator
	Exporter   string // "otlp", "console", or "" when off
	shutdown   func(context.Context) error
}

// Close flushes and stops the exporter, waiting at most five seconds: for a
// deferred call as a program ends.
func (t *Tracing) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.Shutdown(ctx)
}

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// FromEnv reads the standard variables:
//
//   - OTEL_SDK_DISABLED=true turns tracing off.
//   - OTEL_TRACES_EXPORTER: "otlp" (OTLP over HTTP/protobuf, configured by
//     OTEL_EXPORTER_OTLP_* as the exporter documents), "console" (JSON spans
//     on console, for debugging) or "none". Unset means otlp if an
//     OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT is set, else off.
//   - OTEL_SERVICE_NAME overrides serviceName.
//
// Propagation is W3C trace context and baggage, so a trace started in a
// gateway continues in alecryptd.
func FromEnv(ctx context.Context, getenv func(string) string, serviceName string, console io.Writer) (*Tracing, error) {
	t := &Tracing{Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return t, nil
	}
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if exporter == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		exporter = "otlp"
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch exporter {
	case "", "none":
		return t, nil
	case "otlp":
		if p := getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is supported", p)
		}
		exp, err = otlptracehttp.New(ctx)
	case "console":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(console))
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", exporter)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", exporter, err)
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		serviceName = name
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithFromEnv(),
		resource.WithAttributes(semconv.ServiceName(serviceName)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t.Provider, t.Exporter, t.shutdown = tp, exporter, tp.Shutdown
	return t, nil
}
