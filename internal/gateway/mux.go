package gateway

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
)

// cryptoMux carries the crypto calls of every request and WebSocket of a
// gateway on a few long-lived Stream RPCs, coalescing the calls that arrive
// while a stream is busy into one batch message. A unary call costs
// alecryptd an HTTP request, its guard, interceptors and a response, and
// costs alegate an HTTP round trip; a batch item costs a fraction of that
// (BENCHMARKS.md, "The gateway path"). Under light load a call goes out
// alone at once, so nothing waits for a batch to fill.
//
// Each item keeps the answer it would get from a unary call: its own result
// or ItemError (the ALE detail included), and, when alecryptd ends a stream,
// the rules of cryptoSession (sent again once on a new stream when alecryptd
// did not execute it; ResourceExhausted is the answer of the items of the
// message it refused).
type cryptoMux struct {
	queue chan *muxItem
	ctx   context.Context // ends with close
	stop  context.CancelFunc
	wg    sync.WaitGroup
	// metrics, when set, records the items per message.
	metrics *Metrics
}

// Coalescing limits. One stream with one message in flight: the calls that
// arrive while alecryptd answers it form the next batch, so batches grow
// with the load by themselves (self-clocking, no timer). Every message
// wakes alecryptd, and on a core alegate shares with it the wake-ups were
// the cost: two streams sent 3.4 items a message with 16 POS clients on the
// reference machine, half of them alone; one stream sends 6
// (BENCHMARKS.md, "The gateway path"). Before a message goes, the loop
// yields (maxMuxYields times at most, while calls keep arriving) so that
// requests already read queue their calls first. Items over
// maxMuxItemBytes are not coalesced (the caller makes a unary call): one
// large payload must not hold up the small ones behind it in a stream, and
// alone it gets exactly the unary answer.
const (
	muxStreams      = 1
	maxMuxItems     = 64
	maxMuxItemBytes = 64 << 10
	maxMuxBatch     = 256 << 10
	maxMuxYields    = 4
)

type muxItem struct {
	ctx  context.Context
	dec  *alev1.DecryptRequest // one of dec, enc
	enc  *alev1.EncryptRequest
	done chan muxResult // buffered
}

type muxResult struct {
	dec *alev1.DecryptResponse
	enc *alev1.EncryptResponse
	err error // a *connect.Error, as a unary call would return
}

func newCryptoMux(crypto alev1connect.CryptoServiceClient, log *slog.Logger, metrics *Metrics) *cryptoMux {
	m := newIdleMux()
	m.metrics = metrics
	for range muxStreams {
		m.start(openSession(m.ctx, crypto, log))
	}
	return m
}

// newIdleMux is a mux with no stream yet: start gives it its streams.
func newIdleMux() *cryptoMux {
	ctx, stop := context.WithCancel(context.Background())
	return &cryptoMux{queue: make(chan *muxItem, 4*maxMuxItems), ctx: ctx, stop: stop}
}

// start runs a stream's loop on sess until close.
func (m *cryptoMux) start(sess *cryptoSession) {
	m.wg.Go(func() {
		defer sess.close()
		m.run(m.ctx, sess)
	})
}

// errMuxClosed answers the calls a closed mux will never send.
var errMuxClosed = connect.NewError(connect.CodeUnavailable, errors.New("crypto streams closed"))

// close ends the streams; calls in progress fail, and calls still queued
// or arriving later are answered Unavailable rather than left waiting.
func (m *cryptoMux) close() {
	m.stop()
	m.wg.Wait()
	for {
		select {
		case it := <-m.queue:
			it.done <- muxResult{err: errMuxClosed}
		default:
			return
		}
	}
}

// fits says whether a payload of n bytes goes through the mux.
func fits(n int) bool { return n <= maxMuxItemBytes }

// muxItems recycles items with their channels, two allocations per call
// otherwise. An item goes back only once its caller has taken its answer:
// every item is answered at most once, so no late answer can reach the
// item's next caller. An item whose caller gave up is left to the GC.
var muxItems = sync.Pool{New: func() any { return &muxItem{done: make(chan muxResult, 1)} }}

func newMuxItem(ctx context.Context) *muxItem {
	it := muxItems.Get().(*muxItem)
	it.ctx = ctx
	return it
}

func (it *muxItem) recycle() {
	*it = muxItem{done: it.done}
	muxItems.Put(it)
}

func (m *cryptoMux) decrypt(ctx context.Context, req *alev1.DecryptRequest) (*alev1.DecryptResponse, error) {
	it := newMuxItem(ctx)
	it.dec = req
	r, err := m.do(ctx, it)
	return r.dec, err
}

func (m *cryptoMux) encrypt(ctx context.Context, req *alev1.EncryptRequest) (*alev1.EncryptResponse, error) {
	it := newMuxItem(ctx)
	it.enc = req
	r, err := m.do(ctx, it)
	return r.enc, err
}

func (m *cryptoMux) do(ctx context.Context, it *muxItem) (muxResult, error) {
	if m.ctx.Err() != nil {
		return muxResult{}, errMuxClosed
	}
	select {
	case m.queue <- it:
	case <-ctx.Done():
		return muxResult{}, connect.NewError(connect.CodeCanceled, ctx.Err())
	case <-m.ctx.Done():
		return muxResult{}, errMuxClosed
	}
	// An item queued as the mux closes may be taken by nobody: the mux's
	// end answers it too.
	select {
	case r := <-it.done:
		it.recycle()
		return r, r.err
	case <-ctx.Done():
		return muxResult{}, connect.NewError(connect.CodeCanceled, ctx.Err())
	case <-m.ctx.Done():
		select {
		case r := <-it.done: // answered as the streams ended
			it.recycle()
			return r, r.err
		default:
			return muxResult{}, errMuxClosed
		}
	}
}

// run is one stream's loop: take what is queued (waiting for the first
// item), send it as one message per operation, hand out the results.
func (m *cryptoMux) run(ctx context.Context, sess *cryptoSession) {
	var decs, encs []*muxItem
	for {
		decs, encs = decs[:0], encs[:0]
		select {
		case it := <-m.queue:
			decs, encs = sortItem(it, decs, encs)
		case <-ctx.Done():
			return
		}
		// Let the goroutines that are ready to run first (requests and
		// frames already read, about to queue their calls) do so before
		// the message goes: without this, on a busy core the first item
		// went alone and alecryptd was woken once per call.
		bytes := itemSize(decs, encs)
		for yields := 0; yields < maxMuxYields; yields++ {
			runtime.Gosched()
			n := len(decs) + len(encs)
		more:
			for len(decs)+len(encs) < maxMuxItems && bytes < maxMuxBatch {
				select {
				case it := <-m.queue:
					decs, encs = sortItem(it, decs, encs)
					bytes += payloadSize(it)
				default:
					break more
				}
			}
			if len(decs)+len(encs) == n {
				break
			}
		}
		decs, encs = live(decs), live(encs)
		m.metrics.batch(len(decs))
		m.metrics.batch(len(encs))
		switch {
		case len(decs) > 0 && len(encs) > 0:
			var wg sync.WaitGroup
			wg.Go(func() { send(ctx, sess, encs, encryptOp) })
			send(ctx, sess, decs, decryptOp)
			wg.Wait()
		case len(decs) > 0:
			send(ctx, sess, decs, decryptOp)
		case len(encs) > 0:
			send(ctx, sess, encs, encryptOp)
		}
	}
}

func sortItem(it *muxItem, decs, encs []*muxItem) ([]*muxItem, []*muxItem) {
	if it.dec != nil {
		return append(decs, it), encs
	}
	return decs, append(encs, it)
}

func payloadSize(it *muxItem) int {
	if it.dec != nil {
		return len(it.dec.GetEnvelope().GetMessage())
	}
	return len(it.enc.GetPlaintext())
}

func itemSize(decs, encs []*muxItem) int {
	n := 0
	for _, it := range decs {
		n += payloadSize(it)
	}
	for _, it := range encs {
		n += payloadSize(it)
	}
	return n
}

// live drops the items whose caller has gone: nobody would read the answer.
func live(items []*muxItem) []*muxItem {
	out := items[:0]
	for _, it := range items {
		if it.ctx.Err() == nil {
			out = append(out, it)
		}
	}
	return out
}

// muxOp is what differs between coalescing Decrypts and Encrypts: the
// message for a run of items and how its answer splits back into theirs.
type muxOp struct {
	request func(items []*muxItem) *alev1.StreamRequest
	single  func(res *alev1.StreamResponse) muxResult
	batch   func(res *alev1.StreamResponse) []muxResult
}

var decryptOp = muxOp{
	request: func(items []*muxItem) *alev1.StreamRequest {
		if len(items) == 1 {
			return &alev1.StreamRequest{Operation: &alev1.StreamRequest_Decrypt{Decrypt: items[0].dec}}
		}
		b := &alev1.DecryptBatchRequest{Items: make([]*alev1.DecryptRequest, len(items))}
		for i, it := range items {
			b.Items[i] = it.dec
		}
		return &alev1.StreamRequest{Operation: &alev1.StreamRequest_DecryptBatch{DecryptBatch: b}}
	},
	single: func(res *alev1.StreamResponse) muxResult { return muxResult{dec: res.GetDecrypt()} },
	batch: func(res *alev1.StreamResponse) []muxResult {
		results := res.GetDecryptBatch().GetResults()
		out := make([]muxResult, len(results))
		for i, r := range results {
			if ie := r.GetError(); ie != nil {
				out[i] = muxResult{err: itemError(ie)}
			} else {
				out[i] = muxResult{dec: r.GetResponse()}
			}
		}
		return out
	},
}

var encryptOp = muxOp{
	request: func(items []*muxItem) *alev1.StreamRequest {
		if len(items) == 1 {
			return &alev1.StreamRequest{Operation: &alev1.StreamRequest_Encrypt{Encrypt: items[0].enc}}
		}
		b := &alev1.EncryptBatchRequest{Items: make([]*alev1.EncryptRequest, len(items))}
		for i, it := range items {
			b.Items[i] = it.enc
		}
		return &alev1.StreamRequest{Operation: &alev1.StreamRequest_EncryptBatch{EncryptBatch: b}}
	},
	single: func(res *alev1.StreamResponse) muxResult { return muxResult{enc: res.GetEncrypt()} },
	batch: func(res *alev1.StreamResponse) []muxResult {
		results := res.GetEncryptBatch().GetResults()
		out := make([]muxResult, len(results))
		for i, r := range results {
			if ie := r.GetError(); ie != nil {
				out[i] = muxResult{err: itemError(ie)}
			} else {
				out[i] = muxResult{enc: r.GetResponse()}
			}
		}
		return out
	},
}

// send sends items as one message (one call, or a batch) and answers each.
// A batch refused as a whole as too large or busy is sent again one item a
// message, so that only an item refused alone gets that answer.
func send(ctx context.Context, sess *cryptoSession, items []*muxItem, op muxOp) {
	res, err := sess.call(ctx, op.request(items))
	if err == nil && res.GetError() != nil {
		err = itemError(res.GetError())
	}
	if err != nil {
		if refusedBatch(items, err) {
			for _, it := range live(items) {
				send(ctx, sess, []*muxItem{it}, op)
			}
			return
		}
		failAll(items, err)
		return
	}
	if len(items) == 1 {
		items[0].done <- op.single(res)
		return
	}
	results := op.batch(res)
	for i, it := range items {
		if i >= len(results) {
			it.done <- muxResult{err: errShortBatch}
			continue
		}
		it.done <- results[i]
	}
}

// refusedBatch says that alecryptd refused a batch message as a whole as
// too large or too busy (ResourceExhausted: over its --max-request-bytes or
// in-flight budget). Coalescing is alegate's choice, not its callers': an
// item that would fit alone must not fail because others were sent with
// it, so the items go again one message each, and only an item refused
// alone gets the too-large answer.
func refusedBatch(items []*muxItem, err error) bool {
	return len(items) > 1 && connect.CodeOf(err) == connect.CodeResourceExhausted
}

var errShortBatch = connect.NewError(connect.CodeInternal, errors.New("crypto stream: a batch answer is missing items"))

// failAll answers every item with the failure of their message: a stream
// that ended (ResourceExhausted is the refusal of this message, as a unary
// call's would be), or an error for the message as a whole.
func failAll(items []*muxItem, err error) {
	if ie := refusedItem(err); ie != nil {
		err = itemError(ie)
	} else if _, ok := asConnectError(err); !ok {
		err = connect.NewError(connect.CodeUnavailable, err)
	}
	for _, it := range items {
		it.done <- muxResult{err: err}
	}
}

func asConnectError(err error) (*connect.Error, bool) {
	var ce *connect.Error
	ok := errors.As(err, &ce)
	return ce, ok
}

// itemError is the *connect.Error a unary call would have returned for an
// item's failure: its code, message and ALE detail, so one mapping
// (classify) serves both.
func itemError(ie *alev1.ItemError) error {
	var code connect.Code
	if err := code.UnmarshalText([]byte(ie.GetCode())); err != nil {
		code = connect.CodeUnknown
	}
	err := connect.NewError(code, errors.New(ie.GetMessage()))
	if d := ie.GetDetail(); d != nil {
		if detail, derr := connect.NewErrorDetail(d); derr == nil {
			err.AddDetail(detail)
		}
	}
	return err
}
