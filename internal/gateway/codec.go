package gateway

import (
	"errors"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
)

// ClientCodec is the codec alegate's client of alecryptd uses: connect-go's
// binary protobuf codec, except that Stream answers are decoded without the
// KeyInfo of their results. The gateway reads a result's plaintext or
// envelope and never its key; decoding the KeyInfo (a message, a timestamp
// and four strings per item) was half of the allocations of unmarshalling a
// batch answer, and the gateway's stream receive loop was its largest cost
// of the crypto hop. The bytes on the wire are unchanged; a result's Key is
// nil, everything else (errors and their details included) as sent.
func ClientCodec() connect.ClientOption { return connect.WithCodec(streamCodec{}) }

type streamCodec struct{}

func (streamCodec) Name() string { return "proto" }

func (streamCodec) Marshal(m any) ([]byte, error) {
	return streamCodec{}.MarshalAppend(nil, m)
}

func (streamCodec) MarshalAppend(b []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, errNotProto
	}
	return proto.MarshalOptions{}.MarshalAppend(b, pm)
}

var errNotProto = errors.New("codec: not a protobuf message")

func (streamCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return errNotProto
	}
	res, ok := m.(*alev1.StreamResponse)
	if !ok {
		return proto.Unmarshal(data, pm)
	}
	bp := stripBufs.Get().(*[]byte)
	defer stripBufs.Put(bp)
	stripped, ok := appendStripped((*bp)[:0], data, streamResponseFields)
	if cap(stripped) <= maxStripBuf {
		*bp = stripped[:0]
	}
	if !ok { // not well-formed: let protobuf say why
		return proto.Unmarshal(data, pm)
	}
	// Bytes and strings are copied out of stripped: it is reused.
	return proto.Unmarshal(stripped, res)
}

var stripBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxStripBuf bounds the buffers kept for reuse.
const maxStripBuf = 1 << 20

// fields says what to do with the fields of a message: drop them (drop),
// or rewrite a nested message by its own fields. Others are copied.
type fields struct {
	drop   protowire.Number
	nested map[protowire.Number]*fields
}

// The messages down to EncryptResponse.key and DecryptResponse.key (both
// field 2) in a StreamResponse: directly (encrypt 2, decrypt 3), or in a
// batch's results (encrypt_batch 5, decrypt_batch 6 → results 1 → response 1).
var (
	responseFields       = &fields{drop: 2}
	batchFields          = &fields{nested: map[protowire.Number]*fields{1: {nested: map[protowire.Number]*fields{1: responseFields}}}}
	streamResponseFields = &fields{nested: map[protowire.Number]*fields{2: responseFields, 3: responseFields, 5: batchFields, 6: batchFields}}
)

// appendStripped appends msg without the fields f drops; false when msg is
// not well-formed protobuf.
func appendStripped(dst, msg []byte, f *fields) ([]byte, bool) {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return dst, false
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return dst, false
		}
		field := msg[:n+m]
		msg = msg[n+m:]
		switch sub := f.nested[num]; {
		case num == f.drop:
		case sub != nil && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(field[n:])
			dst = protowire.AppendTag(dst, num, typ)
			dst = protowire.AppendVarint(dst, uint64(strippedSize(v, sub)))
			var ok bool
			if dst, ok = appendStripped(dst, v, sub); !ok {
				return dst, false
			}
		default:
			dst = append(dst, field...)
		}
	}
	return dst, true
}

// strippedSize is the length appendStripped gives msg (msg's own for one
// that is not well-formed: appendStripped reports that).
func strippedSize(msg []byte, f *fields) int {
	size := 0
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return size
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return size
		}
		field := msg[:n+m]
		msg = msg[n+m:]
		switch sub := f.nested[num]; {
		case num == f.drop:
		case sub != nil && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(field[n:])
			s := strippedSize(v, sub)
			size += n + protowire.SizeVarint(uint64(s)) + s
		default:
			size += len(field)
		}
	}
	return size
}
