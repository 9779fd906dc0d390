package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// hashVersion opens every hashed encoding, so that a future encoding can
// never collide with this one.
const hashVersion = "tenantd.audit.v1"

// genesis is the prev_hash of a chain's first event.
var genesis = make([]byte, sha256.Size)

// computeHash returns SHA-256(prev_hash || encoding), where the encoding is
// hashVersion and then the fields below, in this order, each as a 4-byte
// big-endian length and its UTF-8 bytes: tenant id and event id (lowercase
// hyphenated), seq and status (decimal), occurred_at (UTC, RFC 3339 with
// nanoseconds, trailing zeros dropped), actor, action, resource, summary
// (canonical JSON, see canonicalJSON), request id, ip (canonical text, ""
// for none), user agent. Anyone can recompute it from the API's fields.
func (e Event) computeHash() []byte {
	h := sha256.New()
	h.Write(e.PrevHash)
	var n [4]byte
	for _, f := range []string{
		hashVersion,
		e.TenantID.String(),
		strconv.FormatInt(e.Seq, 10),
		e.ID.String(),
		e.OccurredAt.UTC().Format(time.RFC3339Nano),
		e.Actor,
		e.Action,
		e.Resource,
		strconv.Itoa(e.Status),
		string(e.Summary),
		e.RequestID,
		e.IP,
		e.UserAgent,
	} {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		io.WriteString(h, f)
	}
	return h.Sum(nil)
}

// decodeJSON decodes one JSON value, keeping numbers as written.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// canonicalJSON encodes v (as decodeJSON returns it) in the one form the
// chain hashes, which PostgreSQL's jsonb gives back unchanged up to this
// same canonicalisation: object keys sorted bytewise, no insignificant
// space, strings escaped as encoding/json does (without HTML escaping) and
// stripped of U+0000 (which jsonb refuses), numbers in plain decimal
// notation without exponent, leading or trailing zeros.
func canonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := writeCanonical(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeCanonical(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		s, err := canonicalNumber(string(x))
		if err != nil {
			return err
		}
		b.WriteString(s)
	case string:
		writeString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			if err := writeCanonical(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("canonical JSON: unexpected %T", v)
	}
	return nil
}

func writeString(b *bytes.Buffer, s string) {
	s = strings.ReplaceAll(s, "\x00", "")
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	// Encoding a string cannot fail.
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	b.Truncate(b.Len() - 1) // Encode's newline
}

// maxExponent bounds the magnitude of numbers in summaries.
const maxExponent = 400

// canonicalNumber rewrites a JSON number literal in plain decimal notation
// with no exponent, no leading zeros, no trailing fractional zeros, and "0"
// for zero of either sign.
func canonicalNumber(lit string) (string, error) {
	bad := fmt.Errorf("canonical JSON: bad number %q", lit)
	s, neg := strings.CutPrefix(lit, "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expPart)
		if err != nil || e > maxExponent || e < -maxExponent {
			return "", bad
		}
		exp = e
	}
	digits := intPart + frac
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", bad
		}
	}
	exp -= len(frac)
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", nil
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	digits = trimmed
	var out string
	switch {
	case exp >= 0:
		out = digits + strings.Repeat("0", exp)
	case -exp < len(digits):
		out = digits[:len(digits)+exp] + "." + digits[len(digits)+exp:]
	default:
		out = "0." + strings.Repeat("0", -exp-len(digits)) + digits
	}
	if neg {
		out = "-" + out
	}
	return out, nil
}

// Break says where and why a chain is broken.
type Break struct {
	Seq    int64  // the first seq at which the chain does not hold
	Reason string // ReasonHashMismatch, ReasonPrevHashMismatch or ReasonGap
	Detail string
}

// The reasons a chain breaks.
const (
	// ReasonHashMismatch: the row's fields do not give its stored hash (the
	// row was changed).
	ReasonHashMismatch = "hash_mismatch"
	// ReasonPrevHashMismatch: the row's prev_hash is not the previous row's
	// hash (a row was replaced together with its hash, or rows reordered).
	ReasonPrevHashMismatch = "prev_hash_mismatch"
	// ReasonGap: a seq is missing (a row was deleted).
	ReasonGap = "seq_gap"
)

// Report is the outcome of verifying one tenant's chain.
type Report struct {
	TenantID uuid.UUID
	Events   int64  // sealed rows read
	HeadSeq  int64  // the last row verified good (0 for none)
	HeadHash []byte // its hash (nil for none)
	Broken   *Break // nil when the chain holds
	// Unsealed is how many of the tenant's rows the sealer has not linked
	// into the chain yet, and OldestUnsealed how long the oldest of them has
	// waited since it occurred (0 for none).
	Unsealed       int64
	OldestUnsealed time.Duration
}

// OK reports whether the chain holds.
func (r Report) OK() bool { return r.Broken == nil }

// Stale reports whether a row has waited longer than maxAge to be sealed:
// the sealer is not running, or cannot keep up, or cannot seal some row.
func (r Report) Stale(maxAge time.Duration) bool {
	return r.Unsealed > 0 && r.OldestUnsealed > maxAge
}

// verifyBatch is how many rows Verify reads per query.
const verifyBatch = 1000

// Verify recomputes tenantID's chain of sealed rows from seq 1 and reports
// the first row where it does not hold, and how many rows wait to be sealed
// and for how long. It reads under row-level security as the runtime role.
// A chain that holds proves no sealed row was changed, removed or inserted
// in the middle; the removal of the newest rows (or a rewrite of the whole
// chain from some row on) shows only against a head (seq, hash) recorded
// earlier elsewhere, which is why the report carries it.
func Verify(ctx context.Context, d *db.DB, tenantID uuid.UUID) (Report, error) {
	r := Report{TenantID: tenantID}
	err := d.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		r.Unsealed, r.OldestUnsealed, err = unsealedStats(tx.WithContext(ctx), tenantID)
		return err
	})
	if err != nil {
		return r, fmt.Errorf("verify audit chain of %s: %w", tenantID, err)
	}
	r, err = verifyChain(r, func(after int64) (page []Event, err error) {
		err = d.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
			page, err = chainPage(tx.WithContext(ctx), tenantID, after, verifyBatch)
			return err
		})
		return page, err
	})
	if err != nil {
		return r, fmt.Errorf("verify audit chain of %s: %w", tenantID, err)
	}
	return r, nil
}

// verifyChain walks a chain from seq 1, readPage giving up to verifyBatch
// rows after seq after, and adds to r the rows it checked, the head, and
// the first break, where it stops.
func verifyChain(r Report, readPage func(after int64) ([]Event, error)) (Report, error) {
	prev := genesis
	var after int64
	for {
		page, err := readPage(after)
		if err != nil {
			return r, err
		}
		for _, e := range page {
			r.Events++
			if r.Broken = checkLink(e, after, prev); r.Broken != nil {
				return r, nil
			}
			r.HeadSeq, r.HeadHash = e.Seq, e.Hash
			prev, after = e.Hash, e.Seq
		}
		if len(page) < verifyBatch {
			return r, nil
		}
	}
}

// checkLink checks that e, read after seq after whose hash is prev, is the
// next link of its chain: the next seq, linked to prev, and hashing to its
// stored hash. It returns where and why the chain breaks, or nil.
func checkLink(e Event, after int64, prev []byte) *Break {
	want := after + 1
	switch {
	case e.Seq != want:
		return &Break{Seq: want, Reason: ReasonGap, Detail: fmt.Sprintf("seq %d follows seq %d", e.Seq, after)}
	case !bytes.Equal(e.PrevHash, prev):
		return &Break{Seq: e.Seq, Reason: ReasonPrevHashMismatch,
			Detail: fmt.Sprintf("prev_hash %s, previous hash %s", short(e.PrevHash), short(prev))}
	}
	if got := e.storedHash(); !bytes.Equal(got, e.Hash) {
		return &Break{Seq: e.Seq, Reason: ReasonHashMismatch,
			Detail: fmt.Sprintf("stored hash %s, fields hash to %s", short(e.Hash), short(got))}
	}
	return nil
}

// storedHash is computeHash over e as read from the database (seq and
// prev_hash included), its summary re-encoded canonically from what jsonb
// gives back. The sealer and Verify both hash this way. A summary that
// does not re-encode (no row written through Record can be one) is hashed
// as stored, so that such a row cannot stop its chain from being sealed.
func (e Event) storedHash() []byte {
	if canon, err := recanonical(e.Summary); err == nil {
		e.Summary = canon
	}
	return e.computeHash()
}

// recanonical re-encodes a stored summary canonically.
func recanonical(raw json.RawMessage) (json.RawMessage, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	return canonicalJSON(v)
}

// short is a hash's first 8 bytes in hex, for messages.
func short(h []byte) string {
	if len(h) > 8 {
		h = h[:8]
	}
	return hex.EncodeToString(h) + "…"
}

// TenantRef names a tenant in a VerifyAll result.
type TenantRef struct {
	ID   uuid.UUID
	Slug string
}

// VerifyAll verifies the chain of every tenant, listed through the
// platform scope of the tenants table, in id order. It stops at the first
// database error, not at a broken chain.
func VerifyAll(ctx context.Context, d *db.DB) ([]Report, error) {
	tenants, err := listTenants(ctx, d, "")
	if err != nil {
		return nil, err
	}
	out := make([]Report, 0, len(tenants))
	for _, t := range tenants {
		r, err := Verify(ctx, d, t.ID)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}
