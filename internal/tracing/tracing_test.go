package tracing

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string // the exporter chosen, "" for off
		wantErr string
	}{
		{"nothing set: off", nil, "", ""},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none"}, "", ""},
		{"disabled wins over an exporter", map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "console"}, "", ""},
		{"disabled=false is not off", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, "console", ""},
		{"console, any case and spaces", map[string]string{"OTEL_TRACES_EXPORTER": " Console "}, "console", ""},
		{"an endpoint implies otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp", ""},
		{"a traces endpoint implies otlp", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp", ""},
		{"otlp over http/protobuf", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp", ""},
		{"otlp over grpc is refused", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "",
			`OTEL_EXPORTER_OTLP_PROTOCOL="grpc": only http/protobuf is supported`},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", `OTEL_TRACES_EXPORTER="zipkin": want otlp, console or none`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr, err := FromEnv(context.Background(), envOf(tc.env), "alecryptd", io.Discard)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("FromEnv error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if tr.Exporter != tc.want {
				t.Fatalf("exporter %q, want %q", tr.Exporter, tc.want)
			}
			if (tr.Provider != nil) != (tc.want != "") {
				t.Fatalf("provider %v with exporter %q: a provider exactly when tracing is on", tr.Provider, tr.Exporter)
			}
			// Propagation is set either way: a gateway without tracing
			// still passes a caller's trace on.
			fields := tr.Propagator.Fields()
			slices.Sort(fields)
			if got := strings.Join(fields, ","); got != "baggage,traceparent,tracestate" {
				t.Fatalf("propagator fields %q, want W3C trace context and baggage", got)
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

// syncBuffer is the console exporter's writer, read after Shutdown.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestConsoleExporter: spans end up on the console writer, under the
// service name (OTEL_SERVICE_NAME overrides the program's), once Shutdown
// flushes the batch.
func TestConsoleExporter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, serviceEnv, want string
	}{
		{"the program's name", "", "alegate"},
		{"OTEL_SERVICE_NAME", "gate-eu-1", "gate-eu-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out syncBuffer
			tr, err := FromEnv(context.Background(), envOf(map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": tc.serviceEnv}), "alegate", &out)
			if err != nil {
				t.Fatal(err)
			}
			_, span := tr.Provider.Tracer("test").Start(context.Background(), "ale.v1.CryptoService/Encrypt")
			span.End()
			if out.String() != "" {
				t.Fatalf("spans written before the batch was flushed: %s", out.String())
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if !strings.Contains(got, `"Name":"ale.v1.CryptoService/Encrypt"`) {
				t.Fatalf("console output has no span named ale.v1.CryptoService/Encrypt:\n%s", got)
			}
			if !strings.Contains(got, `"Key":"service.name","Value":{"Type":"STRING","Value":"`+tc.want+`"}`) {
				t.Fatalf("console output does not name the service %q:\n%s", tc.want, got)
			}
		})
	}
}

// TestOTLPExporter sends spans over OTLP/HTTP to a collector stand-in,
// configured the standard way (OTEL_EXPORTER_OTLP_ENDPOINT, which the
// exporter reads from the process environment: not parallel).
func TestOTLPExporter(t *testing.T) {
	type post struct {
		path, contentType string
		body              []byte
	}
	var (
		mu    sync.Mutex
		posts []post
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, post{r.URL.Path, r.Header.Get("Content-Type"), b})
		mu.Unlock()
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	tr, err := FromEnv(context.Background(), envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}), "alecryptd", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Exporter != "otlp" {
		t.Fatalf("exporter %q, want otlp", tr.Exporter)
	}
	_, span := tr.Provider.Tracer("test").Start(context.Background(), "ale.v1.CryptoService/Decrypt")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 1 {
		t.Fatalf("the collector got %d posts, want 1", len(posts))
	}
	p := posts[0]
	if p.path != "/v1/traces" || p.contentType != "application/x-protobuf" {
		t.Fatalf("POST %s (%s), want /v1/traces (application/x-protobuf)", p.path, p.contentType)
	}
	for _, s := range []string{"ale.v1.CryptoService/Decrypt", "alecryptd"} {
		if !bytes.Contains(p.body, []byte(s)) {
			t.Fatalf("the exported spans do not hold %q", s)
		}
	}
}

// TestPropagation: a span started in one program (a gateway) continues in
// the next (alecryptd) through the headers the propagator writes and reads,
// with its baggage. The spans are recorded in memory.
func TestPropagation(t *testing.T) {
	t.Parallel()
	tr, err := FromEnv(context.Background(), envOf(nil), "alegate", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	member, err := baggage.NewMember("store", "store-8")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	ctx, parent := tp.Tracer("gateway").Start(ctx, "POST /v1/orders")
	header := http.Header{}
	tr.Propagator.Inject(ctx, propagation.HeaderCarrier(header))
	parent.End()
	if header.Get("traceparent") == "" {
		t.Fatalf("no traceparent header written: %v", header)
	}

	in := tr.Propagator.Extract(context.Background(), propagation.HeaderCarrier(header))
	_, child := tp.Tracer("alecryptd").Start(in, "ale.v1.CryptoService/Encrypt")
	child.End()
	if got := baggage.FromContext(in).Member("store").Value(); got != "store-8" {
		t.Fatalf("baggage store = %q after propagation, want store-8", got)
	}

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans recorded, want 2", len(spans))
	}
	p, c := spans[0], spans[1]
	if c.Parent().SpanID() != p.SpanContext().SpanID() || c.SpanContext().TraceID() != p.SpanContext().TraceID() {
		t.Fatalf("the child span (parent %s, trace %s) does not continue the gateway's (span %s, trace %s)",
			c.Parent().SpanID(), c.SpanContext().TraceID(), p.SpanContext().SpanID(), p.SpanContext().TraceID())
	}
	if !c.Parent().IsRemote() {
		t.Fatal("the child's parent is not marked remote")
	}
}

// TestOffCloses: a Tracing that is off closes and shuts down without error.
func TestOffCloses(t *testing.T) {
	t.Parallel()
	tr, err := FromEnv(context.Background(), envOf(map[string]string{"OTEL_SDK_DISABLED": "true"}), "alesync", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
