package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/wait"
)

const (
	// Header is the request header that carries the client's key.
	Header = "Idempotency-Key"
	// ReplayedHeader is set to "true" on a replayed response.
	ReplayedHeader = "Idempotent-Replayed"
	// maxKeyLength is the longest key accepted, in bytes.
	maxKeyLength = 255
	// settleTimeout bounds storing or releasing a claim after the handler,
	// retries included; settling runs even when the client has gone away.
	settleTimeout = 10 * time.Second
	// settleAttempts bounds the tries to store a response or release a key;
	// settlePause is the pause after the first failed try, doubled after
	// each further one, plus up to as much again at random (about 1.5 s to
	// 3 s in all). attemptTimeout bounds one try, so that a connection that
	// hangs does not use up the budget.
	settleAttempts = 5
	settlePause    = 100 * time.Millisecond
	attemptTimeout = 2 * time.Second
)

var (
	// ErrKeyReused refuses a request whose key was already used with a
	// different request (422 idempotency_key_reused).
	ErrKeyReused = fault.New(fault.IdempotencyKeyReused,
		"this Idempotency-Key was already used with a different request; use a new key for a new request")
	// ErrInFlight refuses a request whose key another request holds while
	// it runs (409 conflict, Retry-After 1).
	ErrInFlight = fault.Later(fault.Conflict,
		"a request with this Idempotency-Key is still in progress; retry after it completes", time.Second)
)

// Key names one idempotency key: the tenant, the credential that sent it
// and the client's key.
type Key struct {
	TenantID   uuid.UUID
	Credential string
	Key        string
}

// Response is a handler's answer as stored and replayed: its status, the
// headers kept with it, and its body.
type Response struct {
	Status  int
	Headers map[string]string
	Body    []byte
}

// Claim is the outcome of Store.Claim for a request that may go on: either
// a stored response to replay, or this request's hold on the key while its
// handler runs, to be ended by Finish or Release.
type Claim struct {
	// Replay, when set, is the stored response of an earlier identical
	// request: answer with it and run nothing.
	Replay *Response

	s    *Store
	sc   scope
	id   uuid.UUID
	ctx  context.Context
	log  *slog.Logger
	stop func()
}

// Claim claims k for a request whose method, path, query and body hash to
// requestHash (RequestHash), so that its handler runs at most once per key
// within Retention. It returns ErrKeyReused for a different request under
// the same key and ErrInFlight while another request holds it; a Claim
// with Replay for a repeat of a request answered already; otherwise a
// Claim holding the key, whose lease is renewed until Finish or Release.
// Settling must happen even when the client has gone away, so the claim
// keeps ctx's values but not its cancellation.
func (s *Store) Claim(ctx context.Context, k Key, requestHash []byte, log *slog.Logger) (*Claim, error) {
	sc := scope{tenantID: k.TenantID, credential: k.Credential, key: k.Key}
	d, err := s.acquire(ctx, sc, requestHash)
	if err != nil {
		return nil, err
	}
	switch d.outcome {
	case reused:
		return nil, ErrKeyReused
	case inFlight:
		return nil, ErrInFlight
	case replay:
		r := Response{Status: d.response.status, Headers: d.response.headers, Body: d.response.body}
		return &Claim{Replay: &r}, nil
	case claimed:
		settleCtx := context.WithoutCancel(ctx)
		return &Claim{s: s, sc: sc, id: d.claimID, ctx: settleCtx, log: log,
			stop: s.keepAlive(settleCtx, sc, d.claimID, log)}, nil
	}
	return nil, fmt.Errorf("idempotency: unknown outcome %d", d.outcome)
}

// Finish stores resp as the key's response and stops renewing the lease.
// The lease is renewed until the response is stored, so no retry runs the
// handler again meanwhile.
func (c *Claim) Finish(resp Response) {
	c.s.settle(c.ctx, c.sc, c.id, &response{status: resp.Status, headers: resp.Headers, body: resp.Body}, c.log)
	c.stop()
}

// Release frees the key for a retry (the handler answered 5xx or
// panicked). Renewing stops first, so the key is free within the lease
// even if every try to release it fails.
func (c *Claim) Release() {
	c.stop()
	c.s.settle(c.ctx, c.sc, c.id, nil, c.log)
}

// settle stores resp for claimID, or releases the claim when resp is nil,
// trying up to settleAttempts times with backoff: a release that fails
// would leave a retry waiting for the lease to lapse, a store that fails
// would let a retry run the handler again once it has. The client has its
// answer already, so a final failure is only logged.
func (s *Store) settle(ctx context.Context, sc scope, claimID uuid.UUID, resp *response, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	verb := "release key"
	try := func(ctx context.Context) (bool, error) { return s.release(ctx, sc, claimID) }
	if resp != nil {
		verb = "store response"
		try = func(ctx context.Context) (bool, error) { return s.finish(ctx, sc, claimID, *resp) }
	}
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		held, err := try(actx)
		acancel()
		switch {
		case err == nil && !held:
			log.WarnContext(ctx, "idempotency: "+verb+": the claim was taken over after its lease lapsed", "tenant_id", sc.tenantID)
			return
		case err == nil:
			if attempt > 1 {
				log.InfoContext(ctx, "idempotency: "+verb+" succeeded after retrying", "attempts", attempt, "tenant_id", sc.tenantID)
			}
			return
		case attempt == settleAttempts || ctx.Err() != nil:
			log.ErrorContext(ctx, "idempotency: "+verb+" failed; giving up: the key is free for a retry once its lease lapses",
				"err", err, "attempts", attempt, "lease", s.lease, "tenant_id", sc.tenantID)
			return
		}
		log.WarnContext(ctx, "idempotency: "+verb+" failed; retrying", "err", err, "attempt", attempt, "tenant_id", sc.tenantID)
		pause := settlePause << (attempt - 1)
		pause += rand.N(pause)
		wait.Sleep(ctx, pause)
	}
}

// RequestHash is the SHA-256 of the method, path, query and body, each
// length-prefixed so that no two requests share an encoding. The path is the
// request's own, not the route template: POST /v1/orders/A/cancel and
// /v1/orders/B/cancel are different requests.
func RequestHash(r *http.Request, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(r.Method), []byte(r.URL.EscapedPath()), []byte(r.URL.RawQuery), body} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// ValidKey reports whether k is a well-formed key: 1 to 255 visible ASCII
// characters.
func ValidKey(k string) bool {
	if len(k) == 0 || len(k) > maxKeyLength {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
