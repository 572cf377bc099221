// Package keysync owns the rules that bring a keystore in step with the
// Portal's listing: what to add, update, retire or leave alone (Plan), how
// to write it without losing a concurrent update (Apply), and the sync run
// around them (Run): fetch everything first, guard against an empty Portal,
// hold retirements when a record is unreadable, report the run. alesync only
// parses flags and wires a Portal client and a Vault store into Run.
//
// It makes no HTTP or Vault calls of its own: the listing comes from a
// Source and the store is a keystore.CASStore. The rules:
//
//   - A key the Portal lists and the store lacks is added; one whose record
//     differs in any field (the secret compared in constant time) is
//     overwritten with the Portal's record, as is a stored entry that is not
//     a valid record. An identical record is left alone, so an unchanged
//     Portal causes no writes.
//   - A key the Portal no longer lists is retired: made decrypt-only with its
//     version bumped by one, never deleted. A key already decrypt-only or
//     disabled is left alone.
//   - A key the Portal lists but whose record is unusable is skipped and
//     counts as failed; it is never retired for being unreadable. When an
//     unusable record's fingerprint cannot even be read, the caller holds
//     back every retirement (HoldRetirements).
//   - A fingerprint that fails key.ValidateFingerprint is never written,
//     whichever side it comes from (a listed record, a failed one, a stored
//     entry's name): its action is a Skip. A fingerprint names the key's
//     Vault path, and an invalid one could name another key's path or one
//     outside the prefix.
//   - Every write is check-and-set against the version read. When another
//     writer got there first the key is read again and planned once more; a
//     second conflict counts as failed.
//
// Plan never retires because of a failure: the caller must not call it when
// the listing itself failed.
package keysync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/alecrypt/alecrypt/internal/key"
	"github.com/alecrypt/alecrypt/internal/keystore"
)

// Kind is what an action does.
type Kind string

// The kinds of action.
const (
	// Add writes a key the store lacks.
	Add Kind = "add"
	// Update overwrites a stored key with the Portal's record.
	Update Kind = "update"
	// Retire makes a key the Portal no longer lists decrypt-only.
	Retire Kind = "retire"
	// Unchanged writes nothing.
	Unchanged Kind = "unchanged"
	// Skip writes nothing because something is wrong; it counts as failed.
	Skip Kind = "skip"
)

// Action is the plan for one fingerprint.
type Action struct {
	Fingerprint string
	Kind        Kind
	// Record is what Add, Update and Retire write.
	Record key.Record
	// CAS is the stored version the write is conditional on (0 for Add).
	CAS int
	// Reason explains an Update of an invalid entry or a Skip. It never
	// holds key material.
	Reason string
}

// String describes the action for a plan listing: fingerprint, kind and
// reason, never the record's secret. An invalid fingerprint is quoted, so it
// cannot forge lines of the listing.
func (a Action) String() string {
	fp := a.Fingerprint
	if key.ValidateFingerprint(fp) != nil {
		fp = strconv.Quote(fp)
	}
	if a.Reason == "" {
		return fp + " " + string(a.Kind)
	}
	return fp + " " + string(a.Kind) + " (" + a.Reason + ")"
}

// reasonInvalidFP is the Skip reason for a fingerprint that cannot be a path.
const reasonInvalidFP = "not a valid fingerprint (" + key.FingerprintRule + "); nothing is written for it"

// Plan decides what to do for every fingerprint that is listed, failed or
// stored. listed are the Portal's valid records; failedFingerprints are keys
// the Portal lists with an unusable record; current is the store's content.
// Actions come sorted by fingerprint.
func Plan(listed []key.Record, failedFingerprints []string, current map[string]keystore.Entry) []Action {
	failed := make(map[string]bool, len(failedFingerprints))
	for _, fp := range failedFingerprints {
		failed[fp] = true
	}
	byFP := make(map[string]key.Record, len(listed))
	invalidFP := map[string]bool{}
	for _, r := range listed {
		if key.ValidateFingerprint(r.Fingerprint) != nil {
			invalidFP[r.Fingerprint] = true
			continue
		}
		if _, dup := byFP[r.Fingerprint]; dup {
			failed[r.Fingerprint] = true // which copy is right is unknowable
		}
		byFP[r.Fingerprint] = r
	}
	for fp := range failed {
		if key.ValidateFingerprint(fp) != nil {
			delete(failed, fp)
			invalidFP[fp] = true
		}
	}
	var actions []Action
	for fp := range invalidFP {
		actions = append(actions, Action{Fingerprint: fp, Kind: Skip, Reason: reasonInvalidFP})
	}
	for fp := range failed {
		actions = append(actions, Action{Fingerprint: fp, Kind: Skip, Reason: "the Portal's record is unusable; the stored key is left as it is"})
	}
	for fp, r := range byFP {
		if failed[fp] {
			continue
		}
		e, found := current[fp]
		actions = append(actions, planListed(r, e, found))
	}
	for fp, e := range current {
		if _, ok := byFP[fp]; ok || failed[fp] || invalidFP[fp] {
			continue
		}
		actions = append(actions, planUnlisted(fp, e, true))
	}
	slices.SortFunc(actions, func(a, b Action) int { return cmp.Compare(a.Fingerprint, b.Fingerprint) })
	return actions
}

// HoldRetirements turns every Retire in actions into a Skip for reason. A
// caller uses it when the listing held a record whose fingerprint could not
// be read: that record may be any stored key, so no absence can be trusted.
func HoldRetirements(actions []Action, reason string) []Action {
	out := slices.Clone(actions)
	for i, a := range out {
		if a.Kind == Retire {
			out[i] = Action{Fingerprint: a.Fingerprint, Kind: Skip, Reason: "not retired: " + reason}
		}
	}
	return out
}

// planListed plans a key the Portal lists with a valid record.
func planListed(r key.Record, e keystore.Entry, found bool) Action {
	a := Action{Fingerprint: r.Fingerprint, Record: r}
	switch {
	case !found:
		a.Kind = Add
	case e.Err != nil:
		a.Kind, a.CAS, a.Reason = Update, e.Version, "the stored entry is not a valid record"
	case r.Equal(e.Record):
		a.Kind, a.Record = Unchanged, key.Record{}
	default:
		a.Kind, a.CAS = Update, e.Version
	}
	return a
}

// planUnlisted plans a key the Portal does not list.
func planUnlisted(fp string, e keystore.Entry, found bool) Action {
	a := Action{Fingerprint: fp}
	switch {
	case key.ValidateFingerprint(fp) != nil:
		// Stored under a name that is not a fingerprint: retiring it would
		// write to a path derived from that name.
		a.Kind, a.Reason = Skip, "stored under a name that is "+reasonInvalidFP+"; fix or remove it by hand"
	case !found:
		a.Kind, a.Reason = Unchanged, "no longer stored"
	case e.Err != nil:
		// There is no record to retire, and deleting is never allowed.
		a.Kind, a.Reason = Skip, "the stored entry is not a valid record and the Portal no longer lists the key; fix or remove it by hand"
	case e.Record.State != key.Active:
		a.Kind = Unchanged
	default:
		r := e.Record.Clone()
		r.State = key.DecryptOnly
		r.Version++
		a.Kind, a.Record, a.CAS = Retire, r, e.Version
	}
	return a
}

// Summary is the outcome of one Apply.
type Summary struct {
	Added, Updated, Retired, Unchanged, Failed int
	// DryRun is set when nothing was written: the counts are the plan's.
	DryRun bool
	// Outcomes has one entry per action, in order.
	Outcomes []Outcome
}

// Outcome is what happened to one fingerprint.
type Outcome struct {
	// Action is what was finally attempted: after a check-and-set conflict,
	// the action re-planned from a fresh read.
	Action Action
	// Version is the stored version after a successful write.
	Version int
	// Retried is set when a check-and-set conflict forced a re-plan.
	Retried bool
	// Err is why the action failed; nil on success.
	Err error
}

// Failed reports whether the outcome counts as failed.
func (o Outcome) Failed() bool { return o.Err != nil || o.Action.Kind == Skip }

// OK reports whether nothing failed.
func (s Summary) OK() bool { return s.Failed == 0 }

// String is the run's summary line.
func (s Summary) String() string {
	return fmt.Sprintf("added=%d updated=%d retired=%d unchanged=%d failed=%d",
		s.Added, s.Updated, s.Retired, s.Unchanged, s.Failed)
}

func (s *Summary) count(o Outcome) {
	s.Outcomes = append(s.Outcomes, o)
	if o.Failed() {
		s.Failed++
		return
	}
	switch o.Action.Kind {
	case Add:
		s.Added++
	case Update:
		s.Updated++
	case Retire:
		s.Retired++
	case Unchanged:
		s.Unchanged++
	}
}

// errSkipped is the error of a Skip's outcome, so every failed outcome
// carries an error saying why.
var errSkipped = errors.New("skipped")

// Apply carries out actions against t, in order. With dryRun it writes
// nothing and counts the plan. A check-and-set conflict makes Apply read the
// store again (once, after the first pass) and re-plan each conflicting key
// from what it finds; a second conflict counts as failed. A failed write
// affects only its own key.
func Apply(ctx context.Context, t keystore.CASStore, actions []Action, dryRun bool) Summary {
	s := Summary{DryRun: dryRun}
	if dryRun {
		for _, a := range actions {
			o := Outcome{Action: a}
			if a.Kind == Skip {
				o.Err = skipError(a)
			}
			s.count(o)
		}
		return s
	}
	var conflicts []int // positions in s.Outcomes awaiting a re-plan
	for _, a := range actions {
		o := write(ctx, t, a)
		if errors.Is(o.Err, keystore.ErrCASMismatch) {
			conflicts = append(conflicts, len(s.Outcomes))
			s.Outcomes = append(s.Outcomes, o) // counted after the retry
			continue
		}
		s.count(o)
	}
	if len(conflicts) == 0 {
		return s
	}
	fresh, err := t.Entries(ctx)
	retried := make([]Outcome, 0, len(conflicts))
	for _, i := range conflicts {
		first := s.Outcomes[i]
		o := first
		if err != nil {
			o.Err = fmt.Errorf("%w; re-reading the store failed: %w", first.Err, err)
		} else {
			o = write(ctx, t, replan(first.Action, fresh))
		}
		o.Retried = true
		retried = append(retried, o)
	}
	// Rebuild the outcomes in the original order, counting each once.
	outcomes := s.Outcomes
	s = Summary{}
	next := 0
	for i, o := range outcomes {
		if next < len(conflicts) && conflicts[next] == i {
			o = retried[next]
			next++
		}
		s.count(o)
	}
	return s
}

// replan plans a conflicting key again from a fresh read. Whether the Portal
// lists it is known from the first plan: Add and Update carry its record.
func replan(a Action, fresh map[string]keystore.Entry) Action {
	e, found := fresh[a.Fingerprint]
	if a.Kind == Add || a.Kind == Update {
		return planListed(a.Record, e, found)
	}
	return planUnlisted(a.Fingerprint, e, found)
}

// write carries out one action.
func write(ctx context.Context, t keystore.CASStore, a Action) Outcome {
	o := Outcome{Action: a}
	switch a.Kind {
	case Add, Update, Retire:
		if err := ctx.Err(); err != nil {
			o.Err = fmt.Errorf("%s %s: not attempted: %w", a.Kind, a.Fingerprint, err)
			return o
		}
		v, err := t.Put(ctx, a.Record, a.CAS)
		if err != nil {
			o.Err = fmt.Errorf("%s %s: %w", a.Kind, a.Fingerprint, err)
			return o
		}
		o.Version = v
	case Skip:
		o.Err = skipError(a)
	}
	return o
}

func skipError(a Action) error {
	return fmt.Errorf("%s: %w: %s", a.Fingerprint, errSkipped, a.Reason)
}
