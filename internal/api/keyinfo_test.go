package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
	"github.com/alecrypt/alecrypt/service/secret"
)

var k0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testKey(fp string, state key.State, notAfter time.Time, aliases ...string) key.Record {
	return key.Record{
		Fingerprint: fp, Aliases: aliases, Algorithm: key.AES256GCM, Secret: secret.FromString("s-" + fp),
		KDF:   key.KDF{Name: key.KDFPBKDF2SHA256, Salt: "salt-" + fp, Iterations: key.MinIterations},
		State: state, Version: 3, CreatedAt: k0, NotAfter: notAfter, Source: key.SourceLocal,
	}
}

// TestKeyInfosMatchKeyInfo checks that the cached KeyInfo is what keyInfo
// builds, including whether the key is primary now: a key past not_after
// stops being primary without a reload, and the cache must follow.
func TestKeyInfosMatchKeyInfo(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(k0.Add(time.Hour).UnixNano())
	ring := keyring.New(keyring.WithClock(func() time.Time { return time.Unix(0, now.Load()) }))
	if _, _, err := ring.Replace([]key.Record{
		testKey("aa01", key.Active, k0.Add(2*time.Hour), "a", "quote\"and<tag>&\\"),
		testKey("aa02", key.Active, time.Time{}, "a"),
		testKey("aa03", key.DecryptOnly, time.Time{}),
	}); err != nil {
		t.Fatal(err)
	}
	infos := newKeyInfos()
	check := func(when string) {
		for _, k := range ring.Keys() {
			for range 2 { // the first call fills the cache, the second reads it
				got, want := infos.get(k), keyInfo(k)
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Errorf("%s: keyInfos.get(%s) differs from keyInfo (-want +got):\n%s", when, k.Fingerprint(), diff)
				}
			}
		}
	}
	check("before not_after")
	now.Store(k0.Add(3 * time.Hour).UnixNano()) // aa01 expired: aa02 is the primary of "a" now
	check("after not_after")
}

// TestJSONCodecMatchesProtojson checks that the responses the codec
// assembles from a cached key read back as the same message, with the same
// JSON values, as protojson's own output; and that the codec falls back to
// protojson for a KeyInfo it did not cache.
func TestJSONCodecMatchesProtojson(t *testing.T) {
	t.Parallel()
	ring := keyring.New()
	if _, _, err := ring.Replace([]key.Record{
		testKey("bb01", key.Active, k0.Add(24*365*time.Hour), "b", "x\"y\\z<>"),
		testKey("bb02", key.DecryptOnly, time.Time{}),
	}); err != nil {
		t.Fatal(err)
	}
	infos := newKeyInfos()
	codec := &jsonCodec{name: "json", keys: infos}
	env := &alev1.Envelope{Iv: []byte{1, 2, 3}, Fingerprint: "bb01", Message: []byte("\x00\xff<>&")}
	var msgs []proto.Message
	for _, k := range ring.Keys() {
		for _, info := range []*alev1.KeyInfo{infos.get(k), keyInfo(k)} {
			msgs = append(msgs,
				&alev1.EncryptResponse{Envelope: env, Key: info},
				&alev1.EncryptResponse{Key: info},
				&alev1.EncryptResponse{Envelope: &alev1.Envelope{}, Key: info},
				&alev1.DecryptResponse{Plaintext: []byte(`{"a":1}`), Key: info},
				&alev1.DecryptResponse{Key: info},
				&alev1.RewrapResponse{Envelope: env, Key: info},
				&alev1.RewrapResponse{Key: info},
			)
		}
	}
	msgs = append(msgs, &alev1.EncryptResponse{Envelope: env}, &alev1.EncryptResponse{}, &alev1.DecryptResponse{},
		&alev1.ResolveResponse{Key: infos.get(ring.Keys()[0])})
	for _, m := range msgs {
		got, err := codec.MarshalAppend([]byte("prefix"), m)
		if err != nil {
			t.Fatalf("MarshalAppend(%v): %v", m, err)
		}
		if string(got[:6]) != "prefix" {
			t.Fatalf("MarshalAppend(%v) = %q: lost what it appended to", m, got)
		}
		got = got[6:]
		want, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var gotV, wantV any
		if err := json.Unmarshal(got, &gotV); err != nil {
			t.Fatalf("codec JSON %s does not parse: %v", got, err)
		}
		if err := json.Unmarshal(want, &wantV); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("codec JSON %s, protojson %s", got, want)
		}
		back := m.ProtoReflect().New().Interface()
		if err := codec.Unmarshal(got, back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", got, err)
		}
		if diff := cmp.Diff(m, back, protocmp.Transform()); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", got, diff)
		}
	}
}

// TestJSONCodecShortcutFields fails when a response the codec assembles
// gains a field: the shortcut copies every field but the key, and would
// drop a new one.
func TestJSONCodecShortcutFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg   proto.Message
		other protoreflect.Name
	}{
		{&alev1.EncryptResponse{}, "envelope"},
		{&alev1.DecryptResponse{}, "plaintext"},
		{&alev1.RewrapResponse{}, "envelope"},
	} {
		fields := tc.msg.ProtoReflect().Descriptor().Fields()
		if fields.Len() != 2 || fields.Get(0).Name() != tc.other || fields.Get(1).Name() != "key" || fields.Get(1).Number() <= fields.Get(0).Number() {
			t.Errorf("%T has fields %v; jsonCodec.MarshalAppend copies only %s and appends key last: update it", tc.msg, fields, tc.other)
		}
	}
}

func TestJSONCodecErrors(t *testing.T) {
	t.Parallel()
	codec := &jsonCodec{name: "json", keys: newKeyInfos()}
	if _, err := codec.Marshal("not a message"); err == nil {
		t.Error("Marshal(string) = nil error")
	}
	if err := codec.Unmarshal(nil, &alev1.EncryptRequest{}); err == nil || err.Error() != "zero-length payload is not a valid JSON object" {
		t.Errorf("Unmarshal(empty) = %v", err)
	}
	if err := codec.Unmarshal([]byte(`{"plaintext":1}`), &alev1.EncryptRequest{}); err == nil {
		t.Error("Unmarshal(bad) = nil error")
	}
	if err := codec.Unmarshal([]byte(`{"unknownField":1,"plaintext":"AA=="}`), &alev1.EncryptRequest{}); err != nil {
		t.Errorf("Unmarshal(unknown field) = %v, want it discarded", err)
	}
}

// TestKeyInfosBounded checks that the cache starts afresh once it holds
// maxCachedKeys keys (keys of old snapshots must not pile up), and that a
// KeyInfo handed out before is still marshalled, by protojson.
func TestKeyInfosBounded(t *testing.T) {
	t.Parallel()
	recs := make([]key.Record, maxCachedKeys+1)
	for i := range recs {
		recs[i] = testKey(fmt.Sprintf("cc%04x", i), key.Active, time.Time{})
	}
	ring := keyring.New()
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	infos := newKeyInfos()
	codec := &jsonCodec{name: "json", keys: infos}
	keys := ring.Keys()
	first := infos.get(keys[0])
	for _, k := range keys[1:] {
		infos.get(k)
	}
	if n := infos.n.Load(); n >= maxCachedKeys {
		t.Errorf("cache counts %d keys, want fewer than %d after starting afresh", n, maxCachedKeys)
	}
	if infos.json(first) != nil {
		t.Error("the first key's JSON is still cached after the cache started afresh")
	}
	got, err := codec.Marshal(&alev1.EncryptResponse{Key: first})
	if err != nil {
		t.Fatal(err)
	}
	back := &alev1.EncryptResponse{}
	if err := protojson.Unmarshal(got, back); err != nil || !proto.Equal(back.GetKey(), keyInfo(keys[0])) {
		t.Errorf("after the cache started afresh, the codec wrote %s (%v)", got, err)
	}
}

// TestKeyInfosDoNotPinReplacedKeys: a reload makes new Keys, and each Key
// holds its whole snapshot, secrets included. The cache must not keep a
// replaced Key reachable: when it was keyed by *keyring.Key, every reload
// followed by one call held a whole old snapshot until 4,096 had piled up
// (about 330 KiB per reload with 1,000 keys).
func TestKeyInfosDoNotPinReplacedKeys(t *testing.T) {
	recs := make([]key.Record, 100)
	for i := range recs {
		recs[i] = testKey(fmt.Sprintf("fp%05d", i), key.Active, time.Time{}, "a")
	}
	ring := keyring.New()
	infos := newKeyInfos()
	if _, _, err := ring.Replace(recs); err != nil {
		t.Fatal(err)
	}
	first, _ := ring.Lookup("fp00000")
	freed := make(chan struct{})
	runtime.AddCleanup(first, func(ch chan struct{}) { close(ch) }, freed)
	before := infos.get(first)
	first = nil
	for range 3 { // reloads of the same records, each followed by a call
		if _, _, err := ring.Replace(recs); err != nil {
			t.Fatal(err)
		}
		k, _ := ring.Lookup("fp00000")
		if got := infos.get(k); !proto.Equal(got, before) {
			t.Fatalf("KeyInfo after a reload = %v, want %v", got, before)
		}
	}
	deadline := time.After(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-freed:
			runtime.KeepAlive(infos)
			return
		case <-deadline:
			t.Fatal("a Key of a replaced snapshot is still reachable: the KeyInfo cache pins it, and its snapshot")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
