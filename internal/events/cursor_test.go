package events_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/events"
)

func newCursors(t *testing.T, secret string) *events.Cursors {
	t.Helper()
	c, err := events.NewCursors([]byte(secret))
	if err != nil {
		t.Fatalf("NewCursors: %v", err)
	}
	return c
}

const testSecret = "0123456789abcdef0123456789abcdef"

// TestCursorRoundTrip: a cursor opens to its position for its tenant, and
// one position always gives a tenant the same cursor.
func TestCursorRoundTrip(t *testing.T) {
	c := newCursors(t, testSecret)
	tenant := uuid.New()
	for _, pos := range []int64{0, 1, 2, 255, 256, 1 << 32, 1<<40 + 7, math.MaxInt64} {
		cur := c.Seal(tenant, pos)
		if len(cur) != 50 || strings.ContainsAny(cur, "+/=") {
			t.Errorf("Seal(%d) = %q: want 50 characters of base64url without padding", pos, cur)
		}
		got, err := c.Open(tenant, cur)
		if err != nil || got != pos {
			t.Errorf("Open(Seal(%d)): got %d, %v", pos, got, err)
		}
		if again := c.Seal(tenant, pos); again != cur {
			t.Errorf("Seal(%d) twice: got %q and %q, want one cursor", pos, cur, again)
		}
		if other := newCursors(t, testSecret); other.Seal(tenant, pos) != cur {
			t.Errorf("another replica with the same secret made another cursor for %d", pos)
		}
	}
}

// TestCursorRefusals: another tenant's cursor, another secret's, a cursor
// with any character changed, cut or extended, and the old integer
// positions are all ErrBadCursor.
func TestCursorRefusals(t *testing.T) {
	c := newCursors(t, testSecret)
	a, b := uuid.New(), uuid.New()
	cur := c.Seal(a, 12345)

	if _, err := c.Open(b, cur); !errors.Is(err, events.ErrBadCursor) {
		t.Errorf("A's cursor opened for B: err %v", err)
	}
	if _, err := newCursors(t, strings.Repeat("x", 32)).Open(a, cur); !errors.Is(err, events.ErrBadCursor) {
		t.Errorf("a cursor opened under another secret: err %v", err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(cur) {
		for _, r := range []byte{alphabet[(strings.IndexByte(alphabet, cur[i])+1)%64], alphabet[(strings.IndexByte(alphabet, cur[i])+32)%64]} {
			tampered := cur[:i] + string(r) + cur[i+1:]
			if pos, err := c.Open(a, tampered); !errors.Is(err, events.ErrBadCursor) {
				t.Errorf("character %d changed to %q: opened to %d, %v", i, r, pos, err)
			}
		}
	}
	for name, bad := range map[string]string{
		"empty": "", "cut": cur[:len(cur)-1], "extended": cur + "A", "padded": cur + "==",
		"old integer position": "12345", "negative": "-1", "standard base64": strings.NewReplacer("-", "+", "_", "/").Replace(cur) + "+",
	} {
		if pos, err := c.Open(a, bad); !errors.Is(err, events.ErrBadCursor) {
			t.Errorf("%s (%q): opened to %d, %v", name, bad, pos, err)
		}
	}
}

// TestCursorRevealsNothing: without the key a cursor says nothing of its
// position. The position's bytes appear nowhere in it, and the cursors of
// consecutive positions (tenant A's events with none of B's between) and
// of positions far apart (B's events between) differ alike, in about half
// their bits: the gap is not visible.
func TestCursorRevealsNothing(t *testing.T) {
	c := newCursors(t, testSecret)
	tenant := uuid.New()
	decode := func(pos int64) []byte {
		raw, err := base64.RawURLEncoding.DecodeString(c.Seal(tenant, pos))
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for _, pos := range []int64{1, 1000, 123456789, 1 << 40} {
		raw := decode(pos)
		var be, le [8]byte
		binary.BigEndian.PutUint64(be[:], uint64(pos))
		binary.LittleEndian.PutUint64(le[:], uint64(pos))
		// The low bytes carry the information; a run of zero bytes is
		// no leak, so look for the significant ones.
		if bytes.Contains(raw, be[4:]) || bytes.Contains(raw, le[:4]) {
			t.Errorf("the cursor of %d contains its bytes: %x", pos, raw)
		}
	}
	// Bits (beyond the version byte) that differ between two cursors.
	differ := func(p, q int64) float64 {
		x, y := decode(p), decode(q)
		n := 0
		for i := 1; i < len(x); i++ {
			n += bits.OnesCount8(x[i] ^ y[i])
		}
		return float64(n) / float64(8*(len(x)-1))
	}
	const rounds = 2000
	var near, far float64
	for i := range int64(rounds) {
		base := 1000 + 7919*i
		near += differ(base, base+1)      // A's next event, nothing of B's between
		far += differ(base, base+1+50000) // 50,000 of B's events between
	}
	near, far = near/rounds, far/rounds
	for name, got := range map[string]float64{"consecutive": near, "far apart": far} {
		if got < 0.48 || got > 0.52 {
			t.Errorf("cursors of %s positions differ in %.3f of their bits, want about half", name, got)
		}
	}
}

// TestCursorSecretLength: a short secret is refused.
func TestCursorSecretLength(t *testing.T) {
	if _, err := events.NewCursors([]byte(strings.Repeat("k", events.MinCursorSecret-1))); err == nil {
		t.Fatalf("a %d-byte secret was accepted", events.MinCursorSecret-1)
	}
}
