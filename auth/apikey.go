package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// An API key reads tk_<prefix>_<secret>. The prefix is random, unique across
// tenants and used to find the key; the whole key is hashed with SHA-256,
// which suits a 256-bit random secret (no password stretching is needed).
const keyScheme = "tk_"

var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// generateKey returns a new key and its prefix.
func generateKey() (key, prefix string) {
	p := make([]byte, 10)
	s := make([]byte, 32)
	// crypto/rand.Read never returns an error (Go 1.24+); it crashes instead.
	rand.Read(p)
	rand.Read(s)
	prefix = keyEncoding.EncodeToString(p)
	return keyScheme + prefix + "_" + keyEncoding.EncodeToString(s), prefix
}

// parseKey returns the prefix of a well-formed key.
func parseKey(key string) (prefix string, ok bool) {
	rest, found := strings.CutPrefix(key, keyScheme)
	if !found || len(rest) > 200 {
		return "", false
	}
	prefix, secret, found := strings.Cut(rest, "_")
	if !found || len(prefix) != 16 || len(secret) != 52 {
		return "", false
	}
	return prefix, true
}

func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}
