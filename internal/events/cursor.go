package events

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Cursors turns event positions into the opaque cursors tenants see (the
// after and cursor parameters, next_cursor, an event's cursor, the SSE id
// and Last-Event-ID), and back.
//
// Positions are global: the gap between two of tenant A's positions counts
// every other tenant's events appended in between. A cursor is the
// position encrypted and authenticated with AES-256-GCM, the tenant id as
// additional data, so it reveals nothing of the position, does not open
// for another tenant, and cannot be forged or altered. The nonce is
// synthetic (an HMAC of tenant and position, as in SIV): one position
// always gives the tenant the same cursor, and nonces never repeat for
// different plaintexts however many cursors are made.
//
// A cursor is base64url (no padding) of version (1 byte) ‖ nonce (12) ‖
// ciphertext (8) ‖ tag (16): 50 characters. Cursors stay valid as long as
// the secret does; every replica needs the same one.
type Cursors struct {
	aead     cipher.AEAD
	nonceKey []byte
}

// cursorVersion is the first byte of every cursor, so that the format or
// the key can change later without misreading old cursors.
const cursorVersion byte = 1

// cursorLen is the decoded length of a cursor.
const cursorLen = 1 + 12 + 8 + 16

// MinCursorSecret is the shortest secret NewCursors accepts, in bytes.
const MinCursorSecret = 32

// ErrBadCursor means a cursor was not made by this server for this tenant:
// altered, truncated, another tenant's, or made with another secret.
var ErrBadCursor = errors.New("events: not a cursor of this tenant's event log")

// NewCursors derives the cursor keys from secret (CURSOR_SECRET, at least
// MinCursorSecret bytes).
func NewCursors(secret []byte) (*Cursors, error) {
	if len(secret) < MinCursorSecret {
		return nil, fmt.Errorf("events: cursor secret: got %d bytes, want at least %d", len(secret), MinCursorSecret)
	}
	keys, err := hkdf.Key(sha256.New, secret, nil, "tenantd event cursors v1", 64)
	if err != nil {
		return nil, fmt.Errorf("events: derive cursor keys: %w", err)
	}
	block, err := aes.NewCipher(keys[:32])
	if err != nil {
		return nil, fmt.Errorf("events: cursor cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("events: cursor cipher: %w", err)
	}
	return &Cursors{aead: aead, nonceKey: keys[32:]}, nil
}

// Seal returns the tenant's cursor for position.
func (c *Cursors) Seal(tenantID uuid.UUID, position int64) string {
	var plain [8]byte
	binary.BigEndian.PutUint64(plain[:], uint64(position))
	ad := additionalData(tenantID)
	nonce := c.nonce(ad, plain[:])
	out := make([]byte, 1, cursorLen)
	out[0] = cursorVersion
	out = append(out, nonce...)
	out = c.aead.Seal(out, nonce, plain[:], ad)
	return base64.RawURLEncoding.EncodeToString(out)
}

// Open returns the position of a cursor that Seal made for the tenant, or
// ErrBadCursor.
func (c *Cursors) Open(tenantID uuid.UUID, cursor string) (int64, error) {
	if len(cursor) != base64.RawURLEncoding.EncodedLen(cursorLen) {
		return 0, ErrBadCursor
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(raw) != cursorLen || raw[0] != cursorVersion {
		return 0, ErrBadCursor
	}
	ad := additionalData(tenantID)
	plain, err := c.aead.Open(nil, raw[1:13], raw[13:], ad)
	if err != nil {
		return 0, ErrBadCursor
	}
	// Only the nonce Seal would have chosen: one cursor per position.
	if subtle.ConstantTimeCompare(raw[1:13], c.nonce(ad, plain)) != 1 {
		return 0, ErrBadCursor
	}
	pos := int64(binary.BigEndian.Uint64(plain))
	if pos < 0 {
		return 0, ErrBadCursor
	}
	return pos, nil
}

// nonce is the synthetic nonce of a plaintext: HMAC-SHA256 over the
// additional data and the plaintext, cut to 12 bytes.
func (c *Cursors) nonce(ad, plain []byte) []byte {
	m := hmac.New(sha256.New, c.nonceKey)
	m.Write(ad)
	m.Write(plain)
	return m.Sum(nil)[:12]
}

// additionalData binds a cursor to its version and tenant.
func additionalData(tenantID uuid.UUID) []byte {
	ad := make([]byte, 0, 1+16)
	ad = append(ad, cursorVersion)
	return append(ad, tenantID[:]...)
}
