package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/alecrypt/alecrypt/service/secret"
)

// A chained trail: every line ends in
//
//	,"seq":N,"chain":"<link>"}
//
// where link = HMAC-SHA256(key, previous link || the line's bytes up to and
// including the seq field). The MAC covers the exact bytes, not a parsed
// form, so verifying never depends on how JSON is re-encoded. seq numbers
// the links: a gap whose MAC verifies can only be the writer's (lines it
// dropped), a gap whose MAC fails is an edit.
//
// Every file, and every start of a writer, begins with a chain_start line
// naming the key's id and the previous link (all zeros at the very start),
// so a rotated file names the last link of the one before it and a reader
// sees which key verifies the lines that follow.

// linkSize is the size of a link: a full HMAC-SHA256. Truncating it would
// save 32 bytes a line and weaken forgery resistance for no real gain.
const linkSize = sha256.Size

// chainKeySize is the MAC key size: as long as the HMAC-SHA256 output,
// the most a longer key could add.
const chainKeySize = 32

type link [linkSize]byte

// chainSuffix opens the field every chained line ends with; the link's 64
// hex digits and `"}` follow it.
const chainSuffix = `,"chain":"`

// chainTailLen is the length of what a line has after its MAC'd body.
const chainTailLen = len(chainSuffix) + 2*linkSize + len(`"}`)

// keyIDLabel separates the key id's hash from any other use of SHA-256 of
// the key.
const keyIDLabel = "alecrypt audit chain key id\x00"

// ChainKey is the MAC key of a chained trail. Anyone holding it can rewrite
// the trail undetectably: it must not be readable by whoever can write (or
// merely read) the audit files.
type ChainKey struct {
	b  secret.Bytes
	id string
}

// NewChainKey holds a 32-byte key.
func NewChainKey(b []byte) (ChainKey, error) {
	if len(b) != chainKeySize {
		return ChainKey{}, fmt.Errorf("audit chain key: %d bytes, want %d", len(b), chainKeySize)
	}
	h := sha256.New()
	h.Write([]byte(keyIDLabel))
	h.Write(b)
	// 64 bits of a hash of the key: enough to tell keys apart, nothing to
	// recover the key from.
	return ChainKey{b: secret.New(b), id: hex.EncodeToString(h.Sum(nil)[:8])}, nil
}

// ID names the key without revealing it: the first 8 bytes of a SHA-256 of
// the key, in hex. chain_start lines carry it so a verifier can say "wrong
// key" rather than "every line changed".
func (k ChainKey) ID() string { return k.id }

// IsZero reports whether k holds no key.
func (k ChainKey) IsZero() bool { return k.b.IsZero() }

// ErrChainKeyMode is returned for a key file that others (beyond its owner
// and group) may access: anyone who can read the key can forge the trail.
var ErrChainKeyMode = errors.New("audit chain key file is accessible to others")

// LoadChainKey reads a key file: 64 hex digits, surrounding white space
// allowed. The file must not be accessible to others. Group access is
// allowed, because a Kubernetes Secret mounted for a pod's fsGroup is
// group-readable; the group must hold no reader of the trail.
func LoadChainKey(path string) (ChainKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return ChainKey{}, fmt.Errorf("audit chain key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ChainKey{}, fmt.Errorf("audit chain key: %w", err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return ChainKey{}, fmt.Errorf("%s has mode %v: %w (chmod 600)", path, fi.Mode().Perm(), ErrChainKeyMode)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return ChainKey{}, fmt.Errorf("audit chain key: %w", err)
	}
	raw, err := hex.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil || len(raw) != chainKeySize {
		// The decoding error would quote key bytes: say only what is wrong.
		return ChainKey{}, fmt.Errorf("audit chain key %s: want %d hex digits", path, 2*chainKeySize)
	}
	return NewChainKey(raw)
}

// LoadOrCreateChainKey reads the key file at path or, if there is none,
// creates it (mode 0600, its directory 0700 if missing) with a fresh key
// from rand. created says which happened.
func LoadOrCreateChainKey(path string, rand io.Reader) (k ChainKey, created bool, err error) {
	k, err = LoadChainKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return k, false, err
	}
	raw := make([]byte, chainKeySize)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return ChainKey{}, false, fmt.Errorf("audit chain key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return ChainKey{}, false, fmt.Errorf("audit chain key: %w", err)
	}
	// O_EXCL: two processes starting at once must not each write a key and
	// chain under different ones.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		k, err = LoadChainKey(path)
		return k, false, err
	}
	if err != nil {
		return ChainKey{}, false, fmt.Errorf("audit chain key: %w", err)
	}
	_, werr := f.Write([]byte(hex.EncodeToString(raw) + "\n"))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return ChainKey{}, false, fmt.Errorf("audit chain key: %w", werr)
	}
	k, err = NewChainKey(raw)
	return k, err == nil, err
}

// Head is the newest link written: what alecryptd publishes so that an
// external record can show a removed tail, which the files alone cannot.
type Head struct {
	Seq  uint64
	Link string // hex; empty before the first line
}

// String is the form logged and accepted by alectl audit verify --head.
func (h Head) String() string { return strconv.FormatUint(h.Seq, 10) + ":" + h.Link }

// ParseHead reads "SEQ" or "SEQ:LINK" (what Head.String prints).
func ParseHead(s string) (Head, error) {
	seqText, linkText, hasLink := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil || seq == 0 {
		return Head{}, fmt.Errorf("head %q: want SEQ or SEQ:LINK (seq from 1)", s)
	}
	h := Head{Seq: seq}
	if hasLink {
		if b, err := hex.DecodeString(linkText); err != nil || len(b) != linkSize {
			return Head{}, fmt.Errorf("head %q: the link must be %d hex digits", s, 2*linkSize)
		}
		h.Link = strings.ToLower(linkText)
	}
	return h, nil
}

// chainLine is a chained line taken apart.
type chainLine struct {
	body  []byte // what the MAC covers: the line up to the chain field
	link  link
	seq   uint64
	start bool // a chain_start line
	keyID string
	prev  link
}

// chainFields are the fields of a line the chain reads; the rest of the
// entry is covered by the MAC as bytes.
type chainFields struct {
	Seq   *uint64 `json:"seq"`
	Event string  `json:"event"`
	KeyID string  `json:"key_id"`
	Prev  string  `json:"prev"`
}

// eventChainStart marks the line that starts a chain segment.
const eventChainStart = "chain_start"

// parseChainLine takes apart one line without its newline.
func parseChainLine(line []byte) (chainLine, error) {
	var c chainLine
	if len(line) < chainTailLen+2 || !bytes.HasSuffix(line, []byte(`"}`)) {
		return c, errors.New("not a chained audit line")
	}
	tail := line[len(line)-chainTailLen:]
	if !bytes.HasPrefix(tail, []byte(chainSuffix)) {
		return c, errors.New("not a chained audit line")
	}
	if _, err := hex.Decode(c.link[:], tail[len(chainSuffix):len(chainSuffix)+2*linkSize]); err != nil {
		return c, errors.New("chain field is not hex")
	}
	c.body = line[:len(line)-chainTailLen]
	var f chainFields
	obj := append(append(make([]byte, 0, len(c.body)+1), c.body...), '}')
	if err := json.Unmarshal(obj, &f); err != nil {
		return c, errors.New("not a JSON object")
	}
	if f.Seq == nil || *f.Seq == 0 {
		return c, errors.New("no seq")
	}
	c.seq = *f.Seq
	if f.Event == eventChainStart {
		c.start = true
		c.keyID = f.KeyID
		if len(f.Prev) != 2*linkSize {
			return c, errors.New("chain_start without a valid prev")
		}
		if _, err := hex.Decode(c.prev[:], []byte(f.Prev)); err != nil {
			return c, errors.New("chain_start without a valid prev")
		}
	}
	return c, nil
}

// chainStart is the body of a chain_start line, before its seq.
type chainStart struct {
	Time  string `json:"time"`
	Event string `json:"event"`
	KeyID string `json:"key_id"`
	Prev  string `json:"prev"`
}

// readChainHead finds the head of a trail file written before: the seq and
// link of its last whole line, and whether the file ends in a fragment (a
// crash in the middle of a write), which must stay a line of its own.
// found is false when the last line is not a chained one (an empty file,
// or one written unchained).
func readChainHead(f *os.File) (seq uint64, l link, found, torn bool, err error) {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return 0, l, false, false, err
	}
	// Entries are far below this; a last line longer than it is not one
	// of ours and starts a new chain.
	const maxTail = 1 << 20
	n := min(fi.Size(), maxTail)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, fi.Size()-n); err != nil && !errors.Is(err, io.EOF) {
		return 0, l, false, false, fmt.Errorf("audit log: reading its last line: %w", err)
	}
	torn = buf[len(buf)-1] != '\n'
	end := bytes.LastIndexByte(buf, '\n')
	if end < 0 {
		return 0, l, false, torn, nil
	}
	line := buf[bytes.LastIndexByte(buf[:end], '\n')+1 : end]
	c, perr := parseChainLine(line)
	if perr != nil {
		return 0, l, false, torn, nil
	}
	return c.seq, c.link, true, torn, nil
}
