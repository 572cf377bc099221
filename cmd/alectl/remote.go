package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/client"
	"github.com/alecrypt/alecrypt/service/secret"
	"github.com/alecrypt/alecrypt/service/wire"
)

// remote holds the flags every command that talks to alecryptd shares.
type remote struct {
	addr      string
	grpc      bool
	timeout   time.Duration
	jsonOut   bool
	alias     string
	fp        string
	ca        string
	cert      string
	key       string
	tokenFile string
	token     string // ALECRYPT_TOKEN
}

func (e env) remoteFlags(fs *flag.FlagSet, withKey bool) *remote {
	r := &remote{}
	addr := e.getenv("ALECRYPT_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8080"
	}
	fs.StringVar(&r.addr, "addr", addr, "alecryptd base URL (env ALECRYPT_ADDR)")
	fs.BoolVar(&r.grpc, "grpc", false, "use the gRPC protocol over h2c instead of Connect over HTTP/1.1")
	fs.DurationVar(&r.timeout, "timeout", 10*time.Second, "deadline for the call")
	fs.BoolVar(&r.jsonOut, "json", false, "print the full response as JSON")
	fs.StringVar(&r.ca, "ca", e.getenv("ALECRYPT_CA"), "PEM CA to trust for an https:// --addr (env ALECRYPT_CA)")
	fs.StringVar(&r.cert, "cert", e.getenv("ALECRYPT_CERT"), "client certificate for mTLS (env ALECRYPT_CERT)")
	fs.StringVar(&r.key, "key", e.getenv("ALECRYPT_KEY"), "client certificate key for mTLS (env ALECRYPT_KEY)")
	fs.StringVar(&r.tokenFile, "token-file", "", "file holding a bearer token (or the token itself in env ALECRYPT_TOKEN)")
	r.token = e.getenv("ALECRYPT_TOKEN")
	if withKey {
		fs.StringVar(&r.alias, "alias", "", "key alias (its primary key is used)")
		fs.StringVar(&r.fp, "fingerprint", "", "exact key fingerprint")
	}
	return r
}

// clients connects to alecryptd: h2c or TLS by the URL's scheme, with the
// client certificate and bearer token given.
func (r *remote) clients() (*client.Clients, error) {
	cfg := client.Config{URL: r.addr, GRPC: r.grpc, HTTP1: !r.grpc, CAFile: r.ca, CertFile: r.cert, KeyFile: r.key}
	switch {
	case r.tokenFile != "":
		tok, err := client.TokenFromFile(r.tokenFile)
		if err != nil {
			return nil, err
		}
		cfg.Token = tok
	case r.token != "":
		cfg.Token = secret.FromString(r.token)
	}
	return client.New(cfg)
}

func (r *remote) crypto() (alev1connect.CryptoServiceClient, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	return c.Crypto, nil
}

func (r *remote) keyRef() (*alev1.KeyRef, error) {
	switch {
	case r.alias != "" && r.fp != "":
		return nil, usageError("give --alias or --fingerprint, not both")
	case r.alias != "":
		return &alev1.KeyRef{Ref: &alev1.KeyRef_Alias{Alias: r.alias}}, nil
	case r.fp != "":
		return &alev1.KeyRef{Ref: &alev1.KeyRef_Fingerprint{Fingerprint: r.fp}}, nil
	default:
		return nil, nil // the service's default key
	}
}

func (r *remote) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.timeout)
}

func (e env) printJSON(m proto.Message) error { return e.printJSONTo(e.stdout, m) }

func (e env) printJSONTo(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: false}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (e env) encrypt(args []string) error {
	fs := e.newFlags("encrypt")
	r := e.remoteFlags(fs, true)
	data := fs.String("data", "", "plaintext: TEXT, @FILE, or - / empty for stdin")
	aad := fs.String("aad", "", "associated data (aes-256-gcm keys only)")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	ref, err := r.keyRef()
	if err != nil {
		return err
	}
	pt, err := e.readData(*data)
	if err != nil {
		return err
	}
	ctx, cancel := r.ctx()
	defer cancel()
	crypto, err := r.crypto()
	if err != nil {
		return err
	}
	res, err := crypto.Encrypt(ctx, connect.NewRequest(&alev1.EncryptRequest{Plaintext: pt, Key: ref, AssociatedData: []byte(*aad)}))
	if err != nil {
		return r.callError(opEncrypt, ref, "", err)
	}
	if r.jsonOut {
		return e.printJSON(res.Msg)
	}
	env := res.Msg.GetEnvelope()
	_, err = fmt.Fprintf(e.stdout, "%s\n", wire.MarshalFrame(wire.Frame{IV: env.GetIv(), Fingerprint: env.GetFingerprint(), Message: env.GetMessage()}))
	return err
}

func (e env) decrypt(args []string) error {
	fs := e.newFlags("decrypt")
	r := e.remoteFlags(fs, false)
	data := fs.String("data", "", `envelope frame {"iv","fingerprint","message"}: TEXT, @FILE, or - / empty for stdin`)
	aad := fs.String("aad", "", "associated data (aes-256-gcm keys only)")
	expect := fs.String("expect", "", "check the plaintext: json, utf8 or none (the default)")
	binary := fs.Bool("binary", false, "print the plaintext to a terminal even when it is not UTF-8 text")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	format, err := plaintextFormat(*expect)
	if err != nil {
		return err
	}
	raw, err := e.readData(*data)
	if err != nil {
		return err
	}
	frame, err := wire.ParseFrame([]byte(strings.TrimSpace(string(raw))))
	if err != nil {
		return envelopeError(err)
	}
	ctx, cancel := r.ctx()
	defer cancel()
	crypto, err := r.crypto()
	if err != nil {
		return err
	}
	res, err := crypto.Decrypt(ctx, connect.NewRequest(&alev1.DecryptRequest{
		Envelope:       &alev1.Envelope{Iv: frame.IV, Fingerprint: frame.Fingerprint, Message: frame.Message},
		AssociatedData: []byte(*aad),
		Expect:         format,
	}))
	if err != nil {
		return r.callError(opDecrypt, nil, frame.Fingerprint, err)
	}
	if r.jsonOut {
		return e.printJSON(res.Msg)
	}
	return e.writePlaintext(res.Msg.GetPlaintext(), *binary)
}

// envelopeError says what is wrong with a frame given to decrypt or rewrap,
// in wire's words without its ALE code prefix (no peer is told here).
func envelopeError(err error) error {
	if we, ok := wire.AsError(err); ok {
		return fmt.Errorf("reading the envelope: %s", we.Reason)
	}
	return fmt.Errorf("reading the envelope: %w", err)
}

// writePlaintext prints a decrypted payload. A file or a pipe gets the
// bytes exactly. A terminal gets text only, ending with a newline: AES-CTR
// under the wrong key "decrypts" to random bytes, which a terminal would
// take for escape sequences, so those are refused unless --binary asks.
func (e env) writePlaintext(pt []byte, binary bool) error {
	if e.terminal && !binary {
		if !utf8.Valid(pt) {
			return fmt.Errorf("the plaintext (%d bytes) is not UTF-8 text: not printing it to a terminal. "+
				"A frame sealed under another key decrypts to random bytes (--expect json or utf8 refuses those); "+
				"to see the bytes anyway, redirect to a file or pipe, or give --binary", len(pt))
		}
		if len(pt) > 0 && pt[len(pt)-1] != '\n' {
			pt = append(pt[:len(pt):len(pt)], '\n')
		}
	}
	_, err := e.stdout.Write(pt)
	return err
}

func (e env) resolve(args []string) error {
	fs := e.newFlags("resolve")
	r := e.remoteFlags(fs, true)
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	ref, err := r.keyRef()
	if err != nil {
		return err
	}
	ctx, cancel := r.ctx()
	defer cancel()
	crypto, err := r.crypto()
	if err != nil {
		return err
	}
	res, err := crypto.Resolve(ctx, connect.NewRequest(&alev1.ResolveRequest{Key: ref}))
	if err != nil {
		return r.callError(opOther, ref, "", err)
	}
	if r.jsonOut {
		return e.printJSON(res.Msg)
	}
	return e.printKeys([]*alev1.KeyInfo{res.Msg.GetKey()})
}

func (e env) keysList(args []string) error {
	fs := e.newFlags("keys list")
	r := e.remoteFlags(fs, false)
	alias := fs.String("alias", "", "only keys with this alias")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	cl, err := r.clients()
	if err != nil {
		return err
	}
	var all []*alev1.KeyInfo
	token := ""
	for {
		ctx, cancel := r.ctx()
		res, err := cl.Keys.ListKeys(ctx, connect.NewRequest(&alev1.ListKeysRequest{PageToken: token, Alias: *alias}))
		cancel()
		if err != nil {
			return r.callError(opOther, nil, "", err)
		}
		all = append(all, res.Msg.GetKeys()...)
		if token = res.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if r.jsonOut {
		return e.printJSON(&alev1.ListKeysResponse{Keys: all})
	}
	return e.printKeys(all)
}

func (e env) printKeys(keys []*alev1.KeyInfo) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tALIASES\tALGORITHM\tSTATE\tPRIMARY\tVERSION\tCREATED\tSOURCE\tLAST USED")
	for _, k := range keys {
		created := ""
		if k.GetCreatedAt() != nil {
			created = k.GetCreatedAt().AsTime().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%d\t%s\t%s\t%s\n", k.GetFingerprint(), strings.Join(k.GetAliases(), ","),
			shortEnum(k.GetAlgorithm().String(), "ALGORITHM_"), shortEnum(k.GetState().String(), "KEY_STATE_"),
			k.GetPrimary(), k.GetVersion(), created, k.GetSource(), lastUsed(k.GetUsage()))
	}
	return tw.Flush()
}

// lastUsed is when the replica that answered last encrypted or decrypted
// with the key: "never" when it has not since it started, which says
// nothing of other replicas (docs/keys.md, "Is a key still used?").
func lastUsed(u *alev1.KeyUsage) string {
	var last time.Time
	for _, ts := range []*timestamppb.Timestamp{u.GetLastEncryptTime(), u.GetLastDecryptTime()} {
		if ts != nil && ts.AsTime().After(last) {
			last = ts.AsTime()
		}
	}
	if last.IsZero() {
		return "never"
	}
	return last.Format(time.RFC3339)
}

// shortEnum turns ALGORITHM_AES_256_CTR into aes-256-ctr.
func shortEnum(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", "-")
}
