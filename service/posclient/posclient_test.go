package posclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/posclient"
	"github.com/alecrypt/alecrypt/service/wire"
)

// fakeCrypto stands in for alecryptd: its "ciphertext" is the plaintext
// reversed, under one fingerprint and a fixed IV, so a test can see what was
// sealed and opened. Only Encrypt and Decrypt are implemented.
type fakeCrypto struct {
	alev1connect.CryptoServiceClient
	keys       []*alev1.KeyRef
	decryptErr error
}

var iv = bytes.Repeat([]byte{7}, 16)

const fp = "fp-pos-1"

func reversed(b []byte) []byte {
	out := slices.Clone(b)
	slices.Reverse(out)
	return out
}

func (f *fakeCrypto) Encrypt(_ context.Context, req *connect.Request[alev1.EncryptRequest]) (*connect.Response[alev1.EncryptResponse], error) {
	f.keys = append(f.keys, req.Msg.GetKey())
	return connect.NewResponse(&alev1.EncryptResponse{Envelope: &alev1.Envelope{Iv: iv, Fingerprint: fp, Message: reversed(req.Msg.GetPlaintext())}}), nil
}

func (f *fakeCrypto) Decrypt(_ context.Context, req *connect.Request[alev1.DecryptRequest]) (*connect.Response[alev1.DecryptResponse], error) {
	if f.decryptErr != nil {
		return nil, f.decryptErr
	}
	env := req.Msg.GetEnvelope()
	if !bytes.Equal(env.GetIv(), iv) || env.GetFingerprint() != fp {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("bad envelope"))
	}
	return connect.NewResponse(&alev1.DecryptResponse{Plaintext: reversed(env.GetMessage())}), nil
}

// kitchen checks that each request arrives sealed and answers with reply,
// sealed when seal is set.
func kitchen(t *testing.T, reply string, seal bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		msg, err := wire.OpenBody(body)
		gotFP, gotIV := r.Header.Get(wire.HeaderFingerprint), r.Header.Get(wire.HeaderIV)
		if err != nil || gotFP != fp || gotIV != wire.EncodeIV(iv) {
			t.Errorf("kitchen: body %q, fingerprint %q, iv %q: want a sealed body under %s (%v)", body, gotFP, gotIV, fp, err)
		}
		w.Header().Set("X-Got", string(reversed(msg)))
		if seal {
			wire.SetHeaders(w.Header(), iv, fp)
			_, _ = w.Write(wire.SealPayload(reversed([]byte(reply))))
			return
		}
		_, _ = w.Write([]byte(reply))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
		seal bool
	}{
		{name: "sealed response is opened", body: `{"order":42}`, seal: true},
		{name: "plain response passes", body: `{"order":42}`},
		{name: "no body still carries ALE headers", seal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := kitchen(t, `{"ok":true}`, tc.seal)
			crypto := &fakeCrypto{}
			alias := &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: "store-1"}}
			hc := &http.Client{Transport: &posclient.Transport{Crypto: crypto, Key: alias}}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/orders", body)
			if err != nil {
				t.Fatal(err)
			}
			res, err := hc.Do(req)
			if err != nil {
				t.Fatalf("Do() err = %v", err)
			}
			defer res.Body.Close()
			got, _ := io.ReadAll(res.Body)
			if string(got) != `{"ok":true}` || res.Header.Get("X-Got") != tc.body {
				t.Errorf("response %q, kitchen got %q; want {\"ok\":true} and %q", got, res.Header.Get("X-Got"), tc.body)
			}
			if res.Header.Get(wire.HeaderIV) != "" || res.Header.Get(wire.HeaderFingerprint) != "" {
				t.Error("the opened response still carries the ALE headers")
			}
			if len(crypto.keys) != 1 || crypto.keys[0].GetAlias() != "store-1" {
				t.Errorf("Encrypt keys = %v, want the alias store-1", crypto.keys)
			}
		})
	}
}

func TestRoundTripResponseErrors(t *testing.T) {
	t.Parallel()
	srv := kitchen(t, strings.Repeat("x", 100), true)
	for _, tc := range []struct {
		name   string
		tr     *posclient.Transport
		target error
	}{
		{name: "over the limit", tr: &posclient.Transport{Crypto: &fakeCrypto{}, MaxResponseBytes: 10}},
		{name: "does not decrypt", tr: &posclient.Transport{Crypto: &fakeCrypto{
			decryptErr: connect.NewError(connect.CodeNotFound, errors.New("unknown key"))}}},
	} {
		res, err := (&http.Client{Transport: tc.tr}).Post(srv.URL, "application/json", strings.NewReader("{}"))
		if err == nil {
			res.Body.Close()
		}
		if !errors.Is(err, posclient.ErrResponse) {
			t.Errorf("%s: err = %v, want ErrResponse", tc.name, err)
		}
	}
}
