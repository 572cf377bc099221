package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"

	"connectrpc.com/connect"

	alev1 "github.com/alecrypt/alecrypt/gen/ale/v1"
	"github.com/alecrypt/alecrypt/gen/ale/v1/alev1connect"
	"github.com/alecrypt/alecrypt/service/engine"
	"github.com/alecrypt/alecrypt/service/keyring"
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
	keys := s.ring.Keys()
	i := 0
	if len(after) > 0 {
		i = sort.Search(len(keys), func(i int) bool { return keys[i].Fingerprint() > string(after) })
	}
	out := &alev1.ListKeysResponse{}
	denied := 0
	for ; i < len(keys) && len(out.Keys) < size; i++ {
		if a := req.Msg.GetAlias(); a != "" && !keys[i].Record().HasAlias(a) {
			continue
		}
		// A caller sees only the keys it may list.
		if s.eng.Authorize(ctx, engine.OpList, keys[i]) != nil {
			denied++
			continue
		}
		out.Keys = append(out.Keys, keyInfo(keys[i]))
	}
	if len(out.Keys) == 0 && denied > 0 && req.Msg.GetPageToken() == "" {
		return nil, toConnectError(fmt.Errorf("list: %w", engine.ErrPermissionDenied))
	}
	if i < len(keys) && len(out.Keys) == size {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Keys[len(out.Keys)-1].Fingerprint))
	}
	return connect.NewResponse(out), nil
}
