package api

import (
	"context"
	"encoding/base64"
	"slices"
	"sort"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/internal/engine"
	"github.com/alecrypt/alecrypt/internal/keyring"
)

// Page sizes for ListKeys.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// keyServer implements ale.v1.KeyService over a keyring.
type keyServer struct {
	ring *keyring.Ring
	eng  *engine.Engine // for authorization
}

var _ alev1connect.KeyServiceHandler = (*keyServer)(nil)

// ListKeys pages through the keys in fingerprint order. The page token is the
// last fingerprint of the previous page, so paging stays consistent across
// reloads: a key added meanwhile appears in its place, none repeats.
func (s *keyServer) ListKeys(ctx context.Context, req *connect.Request[alev1.ListKeysRequest]) (*connect.Response[alev1.ListKeysResponse], error) {
	size := int(req.Msg.GetPageSize())
	switch {
	case size < 0:
		return nil, toConnectError(&engine.FieldError{Field: "page_size", Reason: "must not be negative"})
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, err := base64.RawURLEncoding.DecodeString(req.Msg.GetPageToken())
	if err != nil {
		return nil, toConnectError(&engine.FieldError{Field: "page_token", Reason: "malformed"})
	}
	// Refusals are decided on the caller and the filter's name alone: a
	// caller without the list operation, or filtering by an alias it may
	// not use, is refused whether or not any key matches, and otherwise
	// sees only the keys it may list, never how many others there are.
	if err := s.eng.AuthorizeOp(ctx, engine.OpList); err != nil {
		return nil, toConnectError(err)
	}
	if a := req.Msg.GetAlias(); a != "" {
		if err := s.eng.Authorize(ctx, engine.OpList, engine.Ref{Alias: a}, nil); err != nil {
			return nil, toConnectError(err)
		}
	}
	keys := s.ring.Keys()
	i := 0
	if len(after) > 0 {
		i = sort.Search(len(keys), func(i int) bool { return keys[i].Fingerprint() > string(after) })
	}
	visible := func(k *keyring.Key) bool {
		if a := req.Msg.GetAlias(); a != "" && !k.Record().HasAlias(a) {
			return false
		}
		return s.eng.Authorize(ctx, engine.OpList, engine.Ref{Fingerprint: k.Fingerprint()}, k) == nil
	}
	out := &alev1.ListKeysResponse{}
	for ; i < len(keys) && len(out.Keys) < size; i++ {
		if visible(keys[i]) {
			out.Keys = append(out.Keys, keyInfoWithUsage(keys[i]))
		}
	}
	// A token only if a key the caller may see follows: one issued because
	// other tenants' keys sort after would tell it they exist.
	if len(out.Keys) == size && slices.ContainsFunc(keys[i:], visible) {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Keys[len(out.Keys)-1].Fingerprint))
	}
	return connect.NewResponse(out), nil
}
