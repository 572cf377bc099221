package gateway

import (
	"net/http/httputil"
	"sync"
)

// BufferPool lends the reverse proxy its 32 KiB copy buffers: without one,
// httputil.ReverseProxy allocates a fresh buffer for every response, half
// of the bytes alegate allocates per request. The plain-proxy floor of the
// benchmarks uses it too, so the two compare like for like.
var BufferPool httputil.BufferPool = &bufferPool{}

type bufferPool struct{ p sync.Pool }

// proxyBufferBytes is httputil.ReverseProxy's own copy buffer size.
const proxyBufferBytes = 32 << 10

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, proxyBufferBytes)
}

// Put keeps only buffers of the pool's own size, so a caller's odd-sized
// slice never comes back out of Get.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == proxyBufferBytes {
		buf = buf[:proxyBufferBytes]
		b.p.Put(&buf)
	}
}
