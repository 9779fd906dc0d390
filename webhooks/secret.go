package webhooks

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// SecretPrefix starts every signing secret, as Standard Webhooks writes
// them: whsec_ and the base64 of the key.
const SecretPrefix = "whsec_"

// secretBytes is the size of a signing key (the specification allows 24 to
// 64 bytes).
const secretBytes = 32

// newSecret returns a fresh signing key and its whsec_ form.
func newSecret() ([]byte, string, error) {
	key := make([]byte, secretBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, "", fmt.Errorf("signing secret: %w", err)
	}
	return key, SecretPrefix + base64.StdEncoding.EncodeToString(key), nil
}

// Sign returns the webhook-signature header for a message: one
// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" per key,
// space-separated.
func Sign(msgID string, at time.Time, body []byte, keys ...[]byte) string {
	parts := make([]string, 0, len(keys))
	ts := strconv.FormatInt(at.Unix(), 10)
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(msgID))
		m.Write([]byte{'.'})
		m.Write([]byte(ts))
		m.Write([]byte{'.'})
		m.Write(body)
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
	}
	return strings.Join(parts, " ")
}

// Box seals signing keys at rest, so that a read of the database alone
// (a dump, a replica, a backup) does not reveal them: AES-256-GCM under a
// key derived from WEBHOOK_SECRET_KEY, bound to the tenant and endpoint
// (a sealed key copied to another row does not open). The signing key
// itself must be kept (HMAC needs it, a hash would not do), so without
// WEBHOOK_SECRET_KEY a Box stores keys as they are, marked so, and the
// operator is warned at start.
type Box struct {
	aead cipher.AEAD // nil: keys are stored plain
}

// Formats of a sealed key: its first byte.
const (
	sealedPlain byte = 0
	sealedGCM   byte = 1
)

// NewBox returns a Box keyed by secret; an empty secret stores keys plain.
func NewBox(secret string) (*Box, error) {
	if secret == "" {
		return &Box{}, nil
	}
	k := sha256.Sum256([]byte("tenantd webhooks secret box\x00" + secret))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("webhook secret box: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("webhook secret box: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Encrypts reports whether keys are sealed (WEBHOOK_SECRET_KEY is set).
func (b *Box) Encrypts() bool { return b.aead != nil }

func boxContext(tenantID, endpointID uuid.UUID) []byte {
	return append(tenantID[:], endpointID[:]...)
}

// Seal returns the stored form of key for an endpoint.
func (b *Box) Seal(tenantID, endpointID uuid.UUID, key []byte) ([]byte, error) {
	if b.aead == nil {
		return append([]byte{sealedPlain}, key...), nil
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal signing secret: %w", err)
	}
	out := append([]byte{sealedGCM}, nonce...)
	return b.aead.Seal(out, nonce, key, boxContext(tenantID, endpointID)), nil
}

// errSealed: a stored key that cannot be opened (another WEBHOOK_SECRET_KEY,
// or a sealed key where none is configured).
var errSealed = errors.New("the signing secret cannot be opened: WEBHOOK_SECRET_KEY differs from the one that sealed it")

// Open returns the key stored as sealed.
func (b *Box) Open(tenantID, endpointID uuid.UUID, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, errSealed
	}
	switch sealed[0] {
	case sealedPlain:
		return sealed[1:], nil
	case sealedGCM:
		if b.aead == nil || len(sealed) < 1+b.aead.NonceSize() {
			return nil, errSealed
		}
		nonce, ct := sealed[1:1+b.aead.NonceSize()], sealed[1+b.aead.NonceSize():]
		key, err := b.aead.Open(nil, nonce, ct, boxContext(tenantID, endpointID))
		if err != nil {
			return nil, errSealed
		}
		return key, nil
	}
	return nil, errSealed
}
