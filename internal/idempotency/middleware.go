package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
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

// storedHeaders are the response headers kept and replayed with the body;
// the others (request id, rate limits) belong to each response.
var storedHeaders = []string{"Content-Type", "Location", "ETag"}

var (
	errInvalidKey = fault.Invalid(fault.Field(Header, "must be given once, as 1 to 255 visible ASCII characters"))
	errReused     = fault.New(fault.IdempotencyKeyReused,
		"this Idempotency-Key was already used with a different request; use a new key for a new request")
	errWithheld = fault.New(fault.Conflict,
		"this request was already processed; its response carried a one-time secret, which is never stored, so it cannot be replayed")
	errInFlight = fault.New(fault.Conflict,
		"a request with this Idempotency-Key is still in progress; retry after it completes")
	errNoTenant = errors.New("idempotency: no tenant principal in the request context; the middleware must run after authentication")
)

// Middleware makes POST requests that carry an Idempotency-Key run their
// handler at most once per tenant, credential and key within Retention:
// a repeat with the same method, path and body gets the stored response with
// Idempotent-Replayed: true, a repeat with a different one 422
// idempotency_key_reused, and a repeat while the first runs 409 conflict
// with Retry-After. Responses with status 500 or more, and panics, release
// the key. Other methods, and POSTs without the header, pass through.
// It must run after authentication, on routes whose principal has a tenant.
func Middleware(s *Store, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		values, present := c.Request.Header[http.CanonicalHeaderKey(Header)]
		if c.Request.Method != http.MethodPost || !present {
			c.Next()
			return
		}
		if len(values) != 1 || !validKey(values[0]) {
			httpx.Error(c, errInvalidKey)
			return
		}
		ctx := c.Request.Context()
		p, ok := identity.FromContext(ctx)
		if !ok || p.TenantID == uuid.Nil {
			httpx.Error(c, errNoTenant)
			return
		}
		body, err := readBody(c)
		if err != nil {
			httpx.Error(c, err)
			return
		}
		sc := scope{tenantID: p.TenantID, credential: p.Actor(), key: values[0]}

		d, err := s.acquire(ctx, sc, requestHash(c.Request, body))
		if err != nil {
			httpx.Error(c, err)
			return
		}
		switch d.outcome {
		case reused:
			httpx.Error(c, errReused)
		case inFlight:
			c.Header("Retry-After", "1")
			httpx.Error(c, errInFlight)
		case replay:
			writeReplay(c, d.response, log)
		case claimed:
			s.run(c, sc, d.claimID, log)
		default:
			httpx.Error(c, fmt.Errorf("idempotency: unknown outcome %d", d.outcome))
		}
	}
}

// run runs the rest of the chain for the request holding claimID, capturing
// its response, and then stores it, or releases the key when the handler
// answered 5xx or panicked. The lease is renewed until the response is
// stored, so no retry runs the handler again meanwhile; before a release
// renewing stops, so the key is free within the lease even if every try to
// release it fails.
func (s *Store) run(c *gin.Context, sc scope, claimID uuid.UUID, log *slog.Logger) {
	// Settling must happen even when the client has gone away: the handler
	// may have done its work regardless.
	settleCtx := context.WithoutCancel(c.Request.Context())
	stop := s.keepAlive(settleCtx, sc, claimID, log)
	w := &captureWriter{ResponseWriter: c.Writer}
	c.Writer = w
	completed := false
	defer func() {
		c.Writer = w.ResponseWriter
		if completed {
			return
		}
		// The handler panicked (or called runtime.Goexit): release the key
		// and let the panic go on to the recovery middleware.
		stop()
		s.settle(settleCtx, sc, claimID, nil, log)
	}()
	c.Next()
	completed = true
	status := w.Status()
	if status >= http.StatusInternalServerError {
		stop()
		s.settle(settleCtx, sc, claimID, nil, log)
		return
	}
	resp := response{status: status, headers: map[string]string{}, body: w.body.Bytes()}
	for _, h := range storedHeaders {
		if v := w.Header().Get(h); v != "" {
			resp.headers[h] = v
		}
	}
	if strings.Contains(w.Header().Get("Cache-Control"), "no-store") {
		// The answer carries a one-time secret (a new API key): it is never
		// written to the database. A retry learns that the request was done.
		resp = withheld(c)
	}
	s.settle(settleCtx, sc, claimID, &resp, log)
	stop()
}

// withheld is what a retry gets instead of a response that must not be
// stored.
func withheld(c *gin.Context) response {
	p := httpx.ProblemFor(errWithheld)
	p.Instance = c.Request.URL.Path
	body, _ := json.Marshal(p) // a Problem always encodes
	return response{status: p.Status, headers: map[string]string{"Content-Type": "application/problem+json"}, body: body}
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
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// writeReplay answers with a stored response.
func writeReplay(c *gin.Context, resp response, log *slog.Logger) {
	h := c.Writer.Header()
	for k, v := range resp.headers {
		h.Set(k, v)
	}
	h.Set(ReplayedHeader, "true")
	c.Status(resp.status)
	c.Writer.WriteHeaderNow()
	if len(resp.body) > 0 {
		if _, err := c.Writer.Write(resp.body); err != nil {
			log.DebugContext(c.Request.Context(), "idempotency: writing replayed response failed", "err", err)
		}
	}
	c.Abort()
}

// validKey reports whether k is 1 to 255 visible ASCII characters.
func validKey(k string) bool {
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

// readBody reads the whole request body (already capped by the body limit
// middleware) and puts it back for the handler.
func readBody(c *gin.Context) ([]byte, error) {
	if c.Request.Body == nil || c.Request.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fault.New(fault.PayloadTooLarge, "the request body exceeds "+strconv.FormatInt(tooBig.Limit, 10)+" bytes")
		}
		return nil, fault.Invalid(fault.Field("body", "could not read the request body"))
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// requestHash is the SHA-256 of the method, path, query and body, each
// length-prefixed so that no two requests share an encoding. The path is the
// request's own, not the route template: POST /v1/orders/A/cancel and
// /v1/orders/B/cancel are different requests.
func requestHash(r *http.Request, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(r.Method), []byte(r.URL.EscapedPath()), []byte(r.URL.RawQuery), body} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// captureWriter passes the response through and keeps a copy of its body.
type captureWriter struct {
	gin.ResponseWriter
	body bytes.Buffer
}

// Write implements io.Writer.
func (w *captureWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.body.Write(b[:n])
	return n, err
}

// WriteString implements io.StringWriter.
func (w *captureWriter) WriteString(s string) (int, error) {
	n, err := w.ResponseWriter.WriteString(s)
	w.body.WriteString(s[:n])
	return n, err
}
