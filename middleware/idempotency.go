package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/idempotency"
)

// ReplayedHeader is set to "true" on a response the Idempotency
// middleware replayed.
const ReplayedHeader = idempotency.ReplayedHeader

// IdempotencyKeys claims idempotency keys for requests
// (idempotency.Store is one).
type IdempotencyKeys interface {
	Claim(ctx context.Context, k idempotency.Key, requestHash []byte, log *slog.Logger) (*idempotency.Claim, error)
}

// storedHeaders are the response headers kept and replayed with the body;
// the others (request id, rate limits) belong to each response.
var storedHeaders = []string{"Content-Type", "Location", "ETag"}

var (
	errInvalidKey = fault.Invalid(fault.Field(idempotency.Header, "must be given once, as 1 to 255 visible ASCII characters"))
	errWithheld   = fault.New(fault.Conflict,
		"this request was already processed; its response carried a one-time secret, which is never stored, so it cannot be replayed")
	errNoTenant = errors.New("idempotency: no tenant principal in the request context; the middleware must run after authentication")
)

// Idempotency makes POST requests that carry an Idempotency-Key run their
// handler at most once per tenant, credential and key within
// idempotency.Retention: a repeat with the same method, path and body gets
// the stored response with Idempotent-Replayed: true, a repeat with a
// different one 422 idempotency_key_reused, and a repeat while the first
// runs 409 conflict with Retry-After. Responses with status 500 or more,
// and panics, release the key. Other methods, and POSTs without the
// header, pass through. It must run after authentication, on routes whose
// principal has a tenant.
func Idempotency(keys IdempotencyKeys, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		values, present := c.Request.Header[http.CanonicalHeaderKey(idempotency.Header)]
		if c.Request.Method != http.MethodPost || !present {
			c.Next()
			return
		}
		if len(values) != 1 || !idempotency.ValidKey(values[0]) {
			httpx.Error(c, errInvalidKey)
			return
		}
		p, ok := tenantPrincipal(c)
		if !ok {
			httpx.Error(c, errNoTenant)
			return
		}
		body, err := readBody(c)
		if err != nil {
			httpx.Error(c, err)
			return
		}
		k := idempotency.Key{TenantID: p.TenantID, Credential: p.Actor(), Key: values[0]}
		claim, err := keys.Claim(c.Request.Context(), k, idempotency.RequestHash(c.Request, body), log)
		switch {
		case err != nil:
			httpx.Error(c, err)
		case claim.Replay != nil:
			writeReplay(c, *claim.Replay, log)
		default:
			runClaimed(c, claim)
		}
	}
}

// runClaimed runs the rest of the chain for the request holding claim,
// capturing its response, and then stores it, or releases the key when the
// handler answered 5xx or panicked.
func runClaimed(c *gin.Context, claim *idempotency.Claim) {
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
		claim.Release()
	}()
	c.Next()
	completed = true
	status := w.Status()
	if status >= http.StatusInternalServerError {
		claim.Release()
		return
	}
	resp := idempotency.Response{Status: status, Headers: map[string]string{}, Body: w.body.Bytes()}
	for _, h := range storedHeaders {
		if v := w.Header().Get(h); v != "" {
			resp.Headers[h] = v
		}
	}
	if strings.Contains(w.Header().Get("Cache-Control"), "no-store") {
		// The answer carries a one-time secret (a new API key): it is never
		// written to the database. A retry learns that the request was done.
		resp = withheld(c)
	}
	claim.Finish(resp)
}

// withheld is what a retry gets instead of a response that must not be
// stored.
func withheld(c *gin.Context) idempotency.Response {
	p := httpx.ProblemFor(errWithheld)
	p.Instance = c.Request.URL.Path
	body, _ := json.Marshal(p) // a Problem always encodes
	return idempotency.Response{Status: p.Status, Headers: map[string]string{"Content-Type": "application/problem+json"}, Body: body}
}

// writeReplay answers with a stored response.
func writeReplay(c *gin.Context, resp idempotency.Response, log *slog.Logger) {
	h := c.Writer.Header()
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	h.Set(ReplayedHeader, "true")
	c.Status(resp.Status)
	c.Writer.WriteHeaderNow()
	if len(resp.Body) > 0 {
		if _, err := c.Writer.Write(resp.Body); err != nil {
			log.DebugContext(c.Request.Context(), "idempotency: writing replayed response failed", "err", err)
		}
	}
	c.Abort()
}

// readBody reads the whole request body (already capped by BodyLimit) and
// puts it back for the handler.
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
