package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"connectrpc.com/connect"

	"github.com/alecrypt/alecrypt/cmd/alebench/internal/loadgen"
	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
)

// alecryptSeries drives alecryptd through the generated client in one
// protocol.
type alecryptSeries struct {
	cfg   Config
	proto string
	key   *alev1.KeyRef
	// envelopes holds, by payload size, messages to decrypt, sealed once.
	envelopes map[int][]*alev1.Envelope
}

func newAlecryptSeries(ctx context.Context, cfg Config, proto string) (*alecryptSeries, error) {
	a := &alecryptSeries{cfg: cfg, proto: proto, envelopes: map[int][]*alev1.Envelope{}}
	if cfg.AlecryptAlias != "" {
		a.key = &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: cfg.AlecryptAlias}}
	}
	// A round trip first, so a wrong URL or key fails here with a clear
	// error rather than as the first measurement's.
	clients, release := a.clients(1)
	defer release()
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	want := []byte(`{"alebench":"round trip"}`)
	env, err := a.seal(ctx, clients[0], want)
	if err != nil {
		return nil, fmt.Errorf("alecrypt at %s (%s): %w", cfg.AlecryptURL, proto, err)
	}
	res, err := clients[0].Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: env}))
	if err != nil {
		return nil, fmt.Errorf("alecrypt at %s (%s): decrypt: %w", cfg.AlecryptURL, proto, err)
	}
	if !bytes.Equal(res.Msg.GetPlaintext(), want) {
		return nil, fmt.Errorf("alecrypt at %s: round trip returned %q, want %q", cfg.AlecryptURL, res.Msg.GetPlaintext(), want)
	}
	return a, nil
}

func (a *alecryptSeries) target() string   { return targetAlecrypt }
func (a *alecryptSeries) protocol() string { return a.proto }
func (a *alecryptSeries) pid() int         { return a.cfg.AlecryptPID }

// supports: bidi streams need HTTP/2.
func (a *alecryptSeries) supports(o op) bool {
	return (o.mode != stream && o.mode != streamBatch) || a.proto != protoConnectHTTP1
}

// clients returns one client per worker. Over HTTP/1.1 they share a
// transport that keeps a connection per worker. Over HTTP/2 each connection
// carries many calls: workers are spread over Config.Conns transports of one
// connection each (one per worker when Conns is 0).
func (a *alecryptSeries) clients(workers int) ([]alev1connect.CryptoServiceClient, func()) {
	var opts []connect.ClientOption
	if a.proto == protoGRPC {
		opts = append(opts, connect.WithGRPC())
	}
	var protocols http.Protocols
	nTransports := 1
	if a.proto == protoConnectHTTP1 {
		protocols.SetHTTP1(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
		nTransports = workers
		if a.cfg.Conns > 0 {
			nTransports = min(a.cfg.Conns, workers)
		}
	}
	transports := make([]*http.Transport, nTransports)
	clients := make([]alev1connect.CryptoServiceClient, workers)
	for i := range transports {
		transports[i] = &http.Transport{Protocols: &protocols, MaxIdleConnsPerHost: workers, MaxIdleConns: workers}
	}
	for i := range clients {
		clients[i] = alev1connect.NewCryptoServiceClient(&http.Client{Transport: transports[i%nTransports]}, a.cfg.AlecryptURL, opts...)
	}
	return clients, func() {
		for _, t := range transports {
			t.CloseIdleConnections()
		}
	}
}

func (a *alecryptSeries) seal(ctx context.Context, c alev1connect.CryptoServiceClient, pt []byte) (*alev1.Envelope, error) {
	res, err := c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: pt, Key: a.key}))
	if err != nil {
		return nil, err
	}
	return res.Msg.GetEnvelope(), nil
}

// sealed returns the envelopes a decrypt measurement of size-byte payloads
// cycles through, sealing them on first use.
func (a *alecryptSeries) sealed(ctx context.Context, c alev1connect.CryptoServiceClient, size int) ([]*alev1.Envelope, error) {
	if envs, ok := a.envelopes[size]; ok {
		return envs, nil
	}
	envs, err := sealPool(ctx, size, func(ctx context.Context, pt []byte) (*alev1.Envelope, error) { return a.seal(ctx, c, pt) })
	if err != nil {
		return nil, err
	}
	a.envelopes[size] = envs
	return envs, nil
}

func (a *alecryptSeries) prepare(ctx context.Context, sp spec, sched *loadgen.Schedule) (func(int) (loadgen.Worker, error), func(), error) {
	clients, release := a.clients(sp.concurrency)
	var envs []*alev1.Envelope
	if sp.op.decrypt {
		var err error
		if envs, err = a.sealed(ctx, clients[0], sp.size); err != nil {
			release()
			return nil, nil, err
		}
	}
	pt := payload(sp.size)
	newWorker := func(i int) (loadgen.Worker, error) {
		// Workers start at different messages of the pool.
		w := &alecryptWorker{c: clients[i], key: a.key, sp: sp, plaintext: pt, envelopes: envs, next: i}
		switch sp.op.mode {
		case unary:
			return loop(sched, w.unary()), nil
		case batch:
			return loop(sched, w.batch()), nil
		default:
			if sched != nil {
				return nil, errors.New("a stream has no open-loop mode")
			}
			if sp.op.mode == streamBatch {
				return w.streamBatch(), nil
			}
			return w.stream(), nil
		}
	}
	return newWorker, release, nil
}

// alecryptWorker is one worker's client and inputs.
type alecryptWorker struct {
	c         alev1connect.CryptoServiceClient
	key       *alev1.KeyRef
	sp        spec
	plaintext []byte
	envelopes []*alev1.Envelope
	next      int
}

func (w *alecryptWorker) nextEnvelope() *alev1.Envelope {
	w.next++
	return w.envelopes[w.next%len(w.envelopes)]
}

func (w *alecryptWorker) unary() loadgen.Op {
	if w.sp.op.decrypt {
		return func(ctx context.Context) (int, error) {
			res, err := w.c.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{Envelope: w.nextEnvelope()}))
			if err != nil {
				return 0, err
			}
			return 1, checkPlaintext(res.Msg.GetPlaintext(), w.sp.size)
		}
	}
	return func(ctx context.Context) (int, error) {
		res, err := w.c.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: w.plaintext, Key: w.key}))
		if err != nil {
			return 0, err
		}
		return 1, checkEnvelope(res.Msg.GetEnvelope(), w.sp.size)
	}
}

// batch sends the same batch on every call; every item's result is checked.
func (w *alecryptWorker) batch() loadgen.Op {
	n := w.sp.batchItems
	if w.sp.op.decrypt {
		req := &alev1.DecryptBatchRequest{Items: make([]*alev1.DecryptRequest, n)}
		for j := range req.Items {
			req.Items[j] = &alev1.DecryptRequest{Envelope: w.nextEnvelope()}
		}
		return func(ctx context.Context) (int, error) {
			res, err := w.c.DecryptBatch(ctx, connect.NewRequest(req))
			if err != nil {
				return 0, err
			}
			for _, r := range res.Msg.GetResults() {
				if err := errors.Join(itemError(r.GetError()), checkPlaintext(r.GetResponse().GetPlaintext(), w.sp.size)); err != nil {
					return 0, err
				}
			}
			return checkCount(len(res.Msg.GetResults()), n)
		}
	}
	req := &alev1.EncryptBatchRequest{Items: make([]*alev1.EncryptRequest, n)}
	for j := range req.Items {
		req.Items[j] = &alev1.EncryptRequest{Plaintext: w.plaintext, Key: w.key}
	}
	return func(ctx context.Context) (int, error) {
		res, err := w.c.EncryptBatch(ctx, connect.NewRequest(req))
		if err != nil {
			return 0, err
		}
		for _, r := range res.Msg.GetResults() {
			if err := errors.Join(itemError(r.GetError()), checkEnvelope(r.GetResponse().GetEnvelope(), w.sp.size)); err != nil {
				return 0, err
			}
		}
		return checkCount(len(res.Msg.GetResults()), n)
	}
}

func (w *alecryptWorker) stream() loadgen.Worker {
	req := &alev1.StreamRequest{}
	fill := func() {} // the same encrypt request every time
	if w.sp.op.decrypt {
		fill = func() {
			req.Operation = &alev1.StreamRequest_Decrypt{Decrypt: &alev1.DecryptRequest{Envelope: w.nextEnvelope()}}
		}
	} else {
		req.Operation = &alev1.StreamRequest_Encrypt{Encrypt: &alev1.EncryptRequest{Plaintext: w.plaintext, Key: w.key}}
	}
	check := func(res *alev1.StreamResponse) error {
		if err := itemError(res.GetError()); err != nil {
			return err
		}
		if w.sp.op.decrypt {
			return checkPlaintext(res.GetDecrypt().GetPlaintext(), w.sp.size)
		}
		return checkEnvelope(res.GetEncrypt().GetEnvelope(), w.sp.size)
	}
	return streamWorker(w.c, w.sp.window, 1, req, fill, check)
}

// streamBatch sends batches of encryptions as single stream messages.
func (w *alecryptWorker) streamBatch() loadgen.Worker {
	n := w.sp.batchItems
	items := make([]*alev1.EncryptRequest, n)
	for i := range items {
		items[i] = &alev1.EncryptRequest{Plaintext: w.plaintext, Key: w.key}
	}
	req := &alev1.StreamRequest{Operation: &alev1.StreamRequest_EncryptBatch{EncryptBatch: &alev1.EncryptBatchRequest{Items: items}}}
	check := func(res *alev1.StreamResponse) error {
		if err := itemError(res.GetError()); err != nil {
			return err
		}
		for _, r := range res.GetEncryptBatch().GetResults() {
			if err := errors.Join(itemError(r.GetError()), checkEnvelope(r.GetResponse().GetEnvelope(), w.sp.size)); err != nil {
				return err
			}
		}
		_, err := checkCount(len(res.GetEncryptBatch().GetResults()), n)
		return err
	}
	return streamWorker(w.c, w.sp.window, n, req, func() {}, check)
}

// streamWorker keeps one bidi stream busy with up to window messages in
// flight. The sender stamps each message's send time into a channel of
// window slots, which the receiver drains in order (the service answers in
// order): the channel is both the window and the record of send times.
func streamWorker(c alev1connect.CryptoServiceClient, window, items int, req *alev1.StreamRequest, fill func(), check func(*alev1.StreamResponse) error) loadgen.Worker {
	return func(ctx context.Context, rec *loadgen.Recorder) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st := c.Stream(sctx)
		sent := make(chan int64, window)
		received := make(chan error, 1)
		go func() {
			received <- func() error {
				for seq := 0; ; seq++ {
					res, err := st.Receive()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if err != nil {
						return err
					}
					if id := strconv.Itoa(seq); res.GetRequestId() != id {
						return fmt.Errorf("stream answered %q, want %q: out of order", res.GetRequestId(), id)
					}
					if err := check(res); err != nil {
						return err
					}
					rec.Done(<-sent, items)
				}
			}()
		}()
		var sendErr error
	send:
		for seq := 0; ; seq++ {
			select {
			case sent <- rec.Clock().Now():
			case <-ctx.Done():
				break send
			case err := <-received: // the receiver stopped early
				received <- err
				break send
			}
			fill()
			req.RequestId = strconv.Itoa(seq)
			if sendErr = st.Send(req); sendErr != nil {
				break
			}
		}
		// Close the request side before anything else: the HTTP/2 transport
		// does not watch the context while a request body is still open, so
		// a cancelled stream with an open body would leave the receiver
		// waiting forever. Closed, the server ends the stream (or the
		// cancelled context aborts it), and after a failed Send the receiver
		// reads the server's reason, which says more than Send's io.EOF.
		_ = st.CloseRequest()
		recvErr := <-received
		cancel()
		_ = st.CloseResponse()
		if ctx.Err() != nil {
			return nil // the run is over; errors from cutting the stream are expected
		}
		if recvErr != nil {
			return recvErr
		}
		return sendErr
	}
}

func checkEnvelope(env *alev1.Envelope, size int) error {
	if env == nil || len(env.GetIv()) == 0 || len(env.GetMessage()) < size {
		return errors.New("response without a complete envelope")
	}
	return nil
}

func checkPlaintext(pt []byte, size int) error {
	if len(pt) != size {
		return fmt.Errorf("decrypted %d bytes, want %d", len(pt), size)
	}
	return nil
}

func checkCount(got, want int) (int, error) {
	if got != want {
		return 0, fmt.Errorf("batch answered %d items, want %d", got, want)
	}
	return got, nil
}

func itemError(e *alev1.ItemError) error {
	if e == nil {
		return nil
	}
	return fmt.Errorf("item failed: %s: %s", e.GetCode(), e.GetMessage())
}
