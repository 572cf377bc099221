package api

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"weak"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// keyInfos hands out the KeyInfo every Encrypt, Decrypt and Rewrap response
// carries, built once per key, and its JSON. Building the message (two
// timestamps) and marshalling it with protojson (reflection, a field sort)
// was a fifth of a unary Connect-JSON call's marshalling; the message and its
// JSON only change with the key, and keyring Keys are immutable (a reload
// makes new ones). Whether a key is primary depends on the clock, so it is
// asked on every call and picks one of two cached messages.
//
// The cached messages are shared by every response: nothing may modify a
// KeyInfo obtained here (keyInfoWithUsage builds its own).
type keyInfos struct {
	// m maps a fingerprint to its *cachedKey, and each cached
	// *alev1.KeyInfo to its JSON. An entry names the Key it was built for
	// by a weak pointer: a Key holds its whole snapshot (secrets included),
	// and a cache keyed by *keyring.Key kept every replaced snapshot alive.
	// A reload's new Key replaces its fingerprint's entry at its first
	// call. The map is replaced by an empty one when it has held
	// maxCachedKeys fingerprints (removed keys' entries do not pile up).
	m atomic.Pointer[sync.Map]
	n atomic.Int64
}

const maxCachedKeys = 4096

type cachedKey struct {
	key  weak.Pointer[keyring.Key] // the Key the entry was built for; pins nothing
	info [2]*alev1.KeyInfo         // by primary: [0] false, [1] true
}

func newKeyInfos() *keyInfos {
	c := &keyInfos{}
	c.m.Store(new(sync.Map))
	return c
}

// get returns k's KeyInfo as keyInfo builds it, from the cache.
func (c *keyInfos) get(k *keyring.Key) *alev1.KeyInfo {
	primary := k.Primary()
	m := c.m.Load()
	fp := k.Fingerprint()
	var stale *cachedKey
	if v, ok := m.Load(fp); ok {
		ck := v.(*cachedKey)
		if ck.key.Value() == k {
			return ck.info[b2i(primary)]
		}
		stale = ck // a Key of an older snapshot: replaced below
	}
	ck := &cachedKey{key: weak.Make(k)}
	for i := range ck.info {
		info := keyInfo(k)
		info.Primary = i == 1
		ck.info[i] = info
		if j, err := (protojson.MarshalOptions{}).Marshal(info); err == nil {
			m.Store(info, j)
		}
	}
	m.Store(fp, ck)
	if stale != nil {
		for _, info := range stale.info {
			m.Delete(info) // a response still holding it is marshalled as usual
		}
	} else if c.n.Add(1) >= maxCachedKeys {
		c.n.Store(0)
		c.m.Store(new(sync.Map))
	}
	return ck.info[b2i(primary)]
}

// json returns the JSON of a KeyInfo get returned, or nil.
func (c *keyInfos) json(info *alev1.KeyInfo) []byte {
	if info == nil {
		return nil
	}
	if v, ok := c.m.Load().Load(info); ok {
		return v.([]byte)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// jsonCodec is connect-go's JSON codec (protojson, the same options and
// errors) except for the responses that carry a KeyInfo from keyInfos:
// those are marshalled without it, and the key's cached JSON is appended as
// their last field ("key" is field 2, after the envelope or plaintext, which
// is where protojson puts it too).
type jsonCodec struct {
	name string
	keys *keyInfos
}

func (c *jsonCodec) Name() string { return c.name }

func (c *jsonCodec) Marshal(message any) ([]byte, error) { return c.MarshalAppend(nil, message) }

func (c *jsonCodec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, errNotProto(message)
	}
	var rest proto.Message
	var key []byte
	switch m := m.(type) {
	case *alev1.EncryptResponse:
		if key = c.keys.json(m.GetKey()); key != nil {
			rest = &alev1.EncryptResponse{Envelope: m.GetEnvelope()}
		}
	case *alev1.DecryptResponse:
		if key = c.keys.json(m.GetKey()); key != nil {
			rest = &alev1.DecryptResponse{Plaintext: m.GetPlaintext()}
		}
	case *alev1.RewrapResponse:
		if key = c.keys.json(m.GetKey()); key != nil {
			rest = &alev1.RewrapResponse{Envelope: m.GetEnvelope()}
		}
	}
	if rest == nil {
		return protojson.MarshalOptions{}.MarshalAppend(dst, m)
	}
	start := len(dst)
	out, err := protojson.MarshalOptions{}.MarshalAppend(dst, rest)
	if err != nil {
		return nil, err
	}
	// out ends with the object's closing brace; "{}" when the other field
	// is empty.
	body := bytes.TrimRight(out[start:], " ")
	if len(body) < 2 || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("marshal %T: unexpected JSON %q", message, body)
	}
	empty := len(bytes.TrimSpace(body[1:len(body)-1])) == 0
	out = out[:start+len(body)-1]
	if !empty {
		out = append(out, ',')
	}
	out = append(out, `"key":`...)
	out = append(out, key...)
	return append(out, '}'), nil
}

func (c *jsonCodec) Unmarshal(data []byte, message any) error {
	m, ok := message.(proto.Message)
	if !ok {
		return errNotProto(message)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	// As connect-go: unknown fields are discarded, so clients and servers
	// need not use exactly the same version of the schema.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", message, err)
	}
	return nil
}

func (c *jsonCodec) IsBinary() bool { return false }

func errNotProto(message any) error {
	return fmt.Errorf("%T doesn't implement proto.Message", message)
}
