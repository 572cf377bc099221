package filestore

import (
	"errors"
	"fmt"
	"slices"

	"github.com/alecrypt/alecrypt/internal/key"
)

// ErrConflict means an imported record has the fingerprint of an existing
// one but different content.
var ErrConflict = errors.New("fingerprint already holds a different key")

// ImportResult counts what Import did.
type ImportResult struct {
	Added, Replaced, Unchanged int
}

// Import merges records into the keystore, creating it if needed. A record
// whose fingerprint is new is added; one identical to the stored record is
// left alone; one that differs is a conflict unless replace is set, and then
// it must carry a higher version. Import is all or nothing: any conflict or
// invalid record leaves the file untouched.
func (s *Store) Import(incoming []key.Record, replace bool) (ImportResult, error) {
	var res ImportResult
	err := s.Update(true, func(recs []key.Record) ([]key.Record, error) {
		res = ImportResult{}
		index := make(map[string]int, len(recs))
		for i, r := range recs {
			index[r.Fingerprint] = i
		}
		out := slices.Clone(recs)
		for _, in := range incoming {
			if err := in.Validate(); err != nil {
				return nil, err
			}
			i, exists := index[in.Fingerprint]
			switch {
			case !exists:
				index[in.Fingerprint] = len(out)
				out = append(out, in)
				res.Added++
			case out[i].Equal(in):
				res.Unchanged++
			case !replace:
				return nil, fmt.Errorf("%w: %q (use replace to overwrite)", ErrConflict, in.Fingerprint)
			case in.Version <= out[i].Version:
				return nil, fmt.Errorf("%w: %q: replacement must have a version above %d", ErrConflict, in.Fingerprint, out[i].Version)
			default:
				out[i] = in
				res.Replaced++
			}
		}
		return out, nil
	})
	return res, err
}

// SetState changes a stored key's state and bumps its version, the step of a
// rotation (demote to decrypt-only, later disable).
func (s *Store) SetState(fingerprint string, state key.State) (key.Record, error) {
	var updated key.Record
	err := s.Update(false, func(recs []key.Record) ([]key.Record, error) {
		i := slices.IndexFunc(recs, func(r key.Record) bool { return r.Fingerprint == fingerprint })
		if i < 0 {
			return nil, fmt.Errorf("no key with fingerprint %q", fingerprint)
		}
		recs[i].State = state
		recs[i].Version++
		if err := recs[i].Validate(); err != nil {
			return nil, err
		}
		updated = recs[i]
		return recs, nil
	})
	return updated, err
}
