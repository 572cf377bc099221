package api

import (
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// keyInfo is the metadata of k. It is built field by field from an allow
// list, so nothing secret can reach a response by accident.
func keyInfo(k *keyring.Key) *alev1.KeyInfo {
	r := k.Record()
	info := &alev1.KeyInfo{
		Fingerprint: r.Fingerprint,
		Aliases:     r.Aliases,
		Algorithm:   algorithmToProto(r.Algorithm),
		State:       stateToProto(r.State),
		Version:     r.Version,
		Source:      r.Source,
		Primary:     k.Primary(),
		CounterBits: int32(r.EffectiveCounterBits()),
	}
	if !r.CreatedAt.IsZero() {
		info.CreatedAt = timestamppb.New(r.CreatedAt)
	}
	if !r.NotAfter.IsZero() {
		info.NotAfter = timestamppb.New(r.NotAfter)
	}
	return info
}

// keyInfoWithUsage is keyInfo plus the key's usage on this replica, for
// the metadata RPCs (Resolve, ListKeys); the crypto RPCs leave it out, as
// their callers have no use for it.
func keyInfoWithUsage(k *keyring.Key) *alev1.KeyInfo {
	info := keyInfo(k)
	u := k.Usage().Snapshot()
	info.Usage = &alev1.KeyUsage{EncryptCount: u.Encrypts, DecryptCount: u.Decrypts}
	if !u.LastEncrypt.IsZero() {
		info.Usage.LastEncryptTime = timestamppb.New(u.LastEncrypt)
	}
	if !u.LastDecrypt.IsZero() {
		info.Usage.LastDecryptTime = timestamppb.New(u.LastDecrypt)
	}
	return info
}

func algorithmToProto(a key.Algorithm) alev1.Algorithm {
	switch a {
	case key.AES256CTR:
		return alev1.Algorithm_ALGORITHM_AES_256_CTR
	case key.AES256GCM:
		return alev1.Algorithm_ALGORITHM_AES_256_GCM
	default:
		return alev1.Algorithm_ALGORITHM_UNSPECIFIED
	}
}

func stateToProto(s key.State) alev1.KeyState {
	switch s {
	case key.Active:
		return alev1.KeyState_KEY_STATE_ACTIVE
	case key.DecryptOnly:
		return alev1.KeyState_KEY_STATE_DECRYPT_ONLY
	case key.Disabled:
		return alev1.KeyState_KEY_STATE_DISABLED
	default:
		return alev1.KeyState_KEY_STATE_UNSPECIFIED
	}
}

func refFromProto(r *alev1.KeyRef) engine.Ref {
	return engine.Ref{Fingerprint: r.GetFingerprint(), Alias: r.GetAlias()}
}

func envelopeFromProto(e *alev1.Envelope) engine.Envelope {
	return engine.Envelope{IV: e.GetIv(), Fingerprint: e.GetFingerprint(), Message: e.GetMessage()}
}

func envelopeToProto(e engine.Envelope) *alev1.Envelope {
	return &alev1.Envelope{Iv: e.IV, Fingerprint: e.Fingerprint, Message: e.Message}
}

func formatFromProto(f alev1.PlaintextFormat) (engine.Format, error) {
	switch f {
	case alev1.PlaintextFormat_PLAINTEXT_FORMAT_UNSPECIFIED:
		return engine.FormatAny, nil
	case alev1.PlaintextFormat_PLAINTEXT_FORMAT_UTF8:
		return engine.FormatUTF8, nil
	case alev1.PlaintextFormat_PLAINTEXT_FORMAT_JSON:
		return engine.FormatJSON, nil
	default:
		return 0, &engine.FieldError{Field: "expect", Reason: fmt.Sprintf("unknown plaintext format %d", f)}
	}
}
