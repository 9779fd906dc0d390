package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"strings"
	"time"
)

// Claims describes a token for Provider.Sign. Zero fields take the
// defaults documented on each, so Claims{Subject: "u1", Audience: []string{"tenantd"}}
// is a valid ID token.
type Claims struct {
	Subject       string
	Email         string
	EmailVerified *bool // omitted when nil
	Audience      []string
	Issuer        string // default the provider's issuer

	// ExpiresIn sets exp to now plus ExpiresIn: default 5 minutes; negative
	// makes a token that has already expired.
	ExpiresIn time.Duration
	NotBefore time.Time // nbf; omitted when zero
	IssuedAt  time.Time // iat; now when zero

	// Alg is "RS256" (default), "ES256", "none" (no signature), or
	// "HS256-public-key": the algorithm-confusion attack, an HS256 HMAC keyed
	// with the PEM of the current RSA public key as published in the JWKS.
	Alg string
	// Type is the JOSE "typ" header, e.g. "JWT" (default) or "at+jwt".
	Type string
	// KeyID overrides the "kid" header, e.g. with one the JWKS does not have.
	KeyID string

	// Extra holds any other claims ("roles", "scope", "client_id", …). It is
	// applied last, so it may also override the claims above.
	Extra map[string]any
}

// Values of Claims.Alg.
const (
	AlgRS256          = "RS256"
	AlgES256          = "ES256"
	AlgNone           = "none"
	AlgHS256PublicKey = "HS256-public-key"
)

// signingKey is one of the provider's private keys, published in the JWKS.
type signingKey struct {
	id  string
	alg string // AlgRS256 or AlgES256
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

// Sign signs c with the provider's current key for c.Alg and returns the
// compact JWS, header {alg, kid, typ}.
func (p *Provider) Sign(c Claims) (string, error) {
	alg := c.Alg
	if alg == "" {
		alg = AlgRS256
	}
	typ := c.Type
	if typ == "" {
		typ = "JWT"
	}
	var key signingKey
	switch alg {
	case AlgRS256, AlgES256:
		key = p.currentKey(alg)
	case AlgNone, AlgHS256PublicKey:
		// The attacks reuse the kid of the RSA key they claim to use.
		key = p.currentKey(AlgRS256)
	default:
		return "", fmt.Errorf("unknown alg %q, want RS256, ES256, none or HS256-public-key", alg)
	}
	payload, err := json.Marshal(p.claimSet(c, time.Now()))
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	header := struct {
		Alg string `json:"alg"`
		Kid string `json:"kid,omitempty"`
		Typ string `json:"typ"`
	}{Alg: alg, Kid: key.id, Typ: typ}
	if alg == AlgHS256PublicKey {
		header.Alg = "HS256"
	}
	if c.KeyID != "" {
		header.Kid = c.KeyID
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encode header: %w", err)
	}
	input := b64(hb) + "." + b64(payload)

	var sig []byte
	switch alg {
	case AlgNone:
	case AlgHS256PublicKey:
		secret, err := publicKeyPEM(&key.rsa.PublicKey)
		if err != nil {
			return "", err
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	default:
		if sig, err = key.sign([]byte(input)); err != nil {
			return "", err
		}
	}
	return input + "." + b64(sig), nil
}

// claimSet is the payload of a token for c issued at now.
func (p *Provider) claimSet(c Claims, now time.Time) map[string]any {
	iss := c.Issuer
	if iss == "" {
		iss = p.issuer
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = now
	}
	expiresIn := c.ExpiresIn
	if expiresIn == 0 {
		expiresIn = 5 * time.Minute
	}
	m := map[string]any{
		"iss": iss,
		"iat": iat.Unix(),
		"exp": now.Add(expiresIn).Unix(),
	}
	if c.Subject != "" {
		m["sub"] = c.Subject
	}
	if c.Email != "" {
		m["email"] = c.Email
	}
	if c.EmailVerified != nil {
		m["email_verified"] = *c.EmailVerified
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		m["aud"] = c.Audience[0]
	default:
		m["aud"] = c.Audience
	}
	if !c.NotBefore.IsZero() {
		m["nbf"] = c.NotBefore.Unix()
	}
	maps.Copy(m, c.Extra)
	return m
}

// Tamper changes the token's "sub" claim (appending "-tampered", or setting
// "tampered" when there is none) and keeps its header and signature, so the
// result must fail verification.
func Tamper(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("token has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("decode payload: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return "", fmt.Errorf("parse payload: %w", err)
	}
	if sub, ok := claims["sub"].(string); ok && sub != "" {
		claims["sub"] = sub + "-tampered"
	} else {
		claims["sub"] = "tampered"
	}
	raw, err = json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode payload: %w", err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, "."), nil
}

// RotateKeys adds a new RS256 key and a new ES256 key, with new kids, which
// sign from now on; the JWKS serves both the new keys and the old ones,
// unless dropOld, which makes tokens signed before fail verification.
func (p *Provider) RotateKeys(dropOld bool) error {
	keys, err := newSigningKeys()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if dropOld {
		p.keys = nil
	}
	p.keys = append(p.keys, keys...)
	return nil
}

// currentKey is the newest key for alg; there is always one.
func (p *Provider) currentKey(alg string) signingKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.keys) - 1; i >= 0; i-- {
		if p.keys[i].alg == alg {
			return p.keys[i]
		}
	}
	panic("devidp: the provider has no " + alg + " key")
}

func newSigningKeys() ([]signingKey, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate EC key: %w", err)
	}
	return []signingKey{
		{id: "rs256-" + randomHex(), alg: AlgRS256, rsa: rk},
		{id: "es256-" + randomHex(), alg: AlgES256, ec: ek},
	}, nil
}

func (k signingKey) sign(input []byte) ([]byte, error) {
	digest := sha256.Sum256(input)
	switch k.alg {
	case AlgRS256:
		sig, err := rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, digest[:])
		if err != nil {
			return nil, fmt.Errorf("sign RS256: %w", err)
		}
		return sig, nil
	case AlgES256:
		// JWS wants r||s, each 32 bytes (RFC 7518 §3.4), not ASN.1.
		r, s, err := ecdsa.Sign(rand.Reader, k.ec, digest[:])
		if err != nil {
			return nil, fmt.Errorf("sign ES256: %w", err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	}
	return nil, fmt.Errorf("sign: unknown key alg %q", k.alg)
}

// jwk is a public JSON Web Key (RFC 7517) for RSA or EC P-256.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

func (k signingKey) public() (jwk, error) {
	key := jwk{Use: "sig", Alg: k.alg, Kid: k.id}
	switch k.alg {
	case AlgRS256:
		key.Kty = "RSA"
		key.N = b64(k.rsa.N.Bytes())
		key.E = b64(big.NewInt(int64(k.rsa.E)).Bytes())
	case AlgES256:
		point, err := k.ec.PublicKey.Bytes() // 0x04 || x || y
		if err != nil {
			return jwk{}, fmt.Errorf("encode EC key %s: %w", k.id, err)
		}
		key.Kty = "EC"
		key.Crv = "P-256"
		key.X = b64(point[1:33])
		key.Y = b64(point[33:65])
	default:
		return jwk{}, fmt.Errorf("unknown key alg %q", k.alg)
	}
	return key, nil
}

// publicKeyPEM is the PKIX PEM of pub, the HMAC secret an algorithm-confusion
// attacker uses.
func publicKeyPEM(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode RSA public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomHex() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
