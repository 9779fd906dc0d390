package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// Client sends requests as an API client would, to a Server over HTTP or
// to a handler in the test's process (NewClient), and reads what comes
// back. It is safe to use from several goroutines.
type Client struct {
	t       testing.TB
	url     string       // the server's base URL, or
	handler http.Handler // the handler that serves the requests in process
	hc      *http.Client // what sends requests to url; nil: http.DefaultClient
}

// NewClient returns a client whose requests h serves in the test's
// process.
func NewClient(t testing.TB, h http.Handler) *Client { return &Client{t: t, handler: h} }

// NewURLClient returns a client of the server at base (such as a tenantd
// process the test started) that sends its requests with hc, for a
// timeout or a transport of its own; nil means http.DefaultClient.
func NewURLClient(t testing.TB, base string, hc *http.Client) *Client {
	return &Client{t: t, url: base, hc: hc}
}

// Request is one request to send.
type Request struct {
	Method string
	Path   string
	Key    string            // bearer credential, if any
	Body   any               // JSON-encoded unless string or []byte
	Header map[string]string // extra headers; "Host" sets the request's host
	// Context, when set, bounds the request instead of the default 30 s.
	Context context.Context
}

// Response is a received response with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends the request and returns the response. Transport errors fail the
// test.
func (c *Client) Do(req Request) Response {
	resp, err := c.Try(req)
	if err != nil {
		c.t.Errorf("%s %s: %v", req.Method, req.Path, err)
	}
	return resp
}

// Try sends the request and returns transport errors to the caller.
func (c *Client) Try(req Request) (Response, error) {
	ctx := req.Context
	if ctx == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
	}
	hr, err := c.NewRequest(ctx, req)
	if err != nil {
		return Response{}, err
	}
	return c.SendHTTP(hr)
}

// NewRequest builds the request Try sends for req, bounded by ctx (a
// request to an in-process handler is not): the body JSON-encoded unless
// a string or []byte, with a Content-Type when there is one, the bearer
// credential and the headers.
func (c *Client) NewRequest(ctx context.Context, req Request) (*http.Request, error) {
	var body io.Reader
	switch b := req.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(buf)
	}
	var hr *http.Request
	if c.handler != nil {
		hr = httptest.NewRequest(req.Method, req.Path, body)
	} else {
		var err error
		if hr, err = http.NewRequestWithContext(ctx, req.Method, c.url+req.Path, body); err != nil {
			return nil, err
		}
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.Key != "" {
		hr.Header.Set("Authorization", "Bearer "+req.Key)
		if len(req.Key) >= 16 && c.handler == nil {
			secrets.Store(req.Key, true)
		}
	}
	for k, v := range req.Header {
		if k == "Host" {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	return hr, nil
}

// SendHTTP sends a request made by NewRequest and reads the whole answer.
func (c *Client) SendHTTP(hr *http.Request) (Response, error) {
	if c.handler != nil {
		w := httptest.NewRecorder()
		c.handler.ServeHTTP(w, hr)
		return Response{Status: w.Code, Header: w.Header(), Body: w.Body.Bytes()}, nil
	}
	hc := c.hc
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, err
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// Expect sends the request and fails the test, with the body, unless the
// answer has status want; out, when not nil, receives the decoded JSON
// body.
func (c *Client) Expect(t testing.TB, req Request, want int, out any) Response {
	t.Helper()
	resp, err := c.Try(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.Path, err)
	}
	if resp.Status != want {
		t.Fatalf("%s %s: got %d %s, want %d", req.Method, req.Path, resp.Status, resp.Body, want)
	}
	if out != nil {
		resp.JSON(t, out)
	}
	return resp
}

// GetJSON sends GET path with key and decodes the answer into out (when
// not nil); any status but want fails the test.
func (c *Client) GetJSON(t testing.TB, path, key string, want int, out any) Response {
	t.Helper()
	return c.Expect(t, Request{Method: http.MethodGet, Path: path, Key: key}, want, out)
}

// PostJSON sends POST path with key and body (JSON-encoded unless string
// or []byte) and decodes the answer into out (when not nil); any status but
// want fails the test.
func (c *Client) PostJSON(t testing.TB, path, key string, body any, want int, out any) Response {
	t.Helper()
	return c.Expect(t, Request{Method: http.MethodPost, Path: path, Key: key, Body: body}, want, out)
}

// Send sends method path to a ModuleClient as tenant (no credential when
// uuid.Nil) with body (none when "") and header name/value pairs.
func (c *Client) Send(method, path string, tenant uuid.UUID, body string, headers ...string) Response {
	req := Request{Method: method, Path: path, Header: map[string]string{}}
	if tenant != uuid.Nil {
		req.Key = tenant.String()
	}
	if body != "" {
		req.Body = body
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = headers[i+1]
	}
	return c.Do(req)
}

// WantStatus fails the test, with the body, unless the response has
// status want.
func (r Response) WantStatus(t testing.TB, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("got status %d (%s), want %d", r.Status, r.Body, want)
	}
}

// Decode decodes the response's JSON body as a T, failing the test when it
// is not one.
func Decode[T any](t testing.TB, r Response) T {
	t.Helper()
	var v T
	r.JSON(t, &v)
	return v
}

// JSON decodes the body into v, failing the test when it is not JSON.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
}

// Map decodes the body as a JSON object.
func (r Response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// Code returns the problem+json code of an error response, or "".
func (r Response) Code() string {
	var p struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		return ""
	}
	return p.Code
}

// Problem is an application/problem+json body as a client reads it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	Errors []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// WantProblem fails the test unless the response is a problem+json with
// status and code (in the status line and the body) and, when fields are
// given, blames exactly those fields; a body that leaks SQL fails it too.
// It returns the problem.
func (r Response) WantProblem(t testing.TB, status int, code string, fields ...string) Problem {
	t.Helper()
	r.WantStatus(t, status)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}
	var p Problem
	r.JSON(t, &p)
	if p.Code != code || p.Status != status {
		t.Errorf("got code %q status %d, want %q %d", p.Code, p.Status, code, status)
	}
	if len(fields) > 0 {
		var got []string
		for _, e := range p.Errors {
			got = append(got, e.Field)
		}
		slices.Sort(got)
		fields = slices.Sorted(slices.Values(fields))
		if !slices.Equal(got, fields) {
			t.Errorf("got fields %v, want %v", got, fields)
		}
	}
	if bytes.Contains(r.Body, []byte("SQLSTATE")) {
		t.Errorf("got a body that leaks SQL: %s", r.Body)
	}
	return p
}

// ModuleClient serves one module's routes, mounted by mount on /v1 of a gin
// engine, behind a stand-in for tenantd's authentication: a request whose
// bearer credential is a tenant id runs as an API key of that tenant, one
// without a credential carries no principal. Every permission is known and
// granted; the app's own tests cover the real chain. It returns a client of
// the engine and the routes mount registered.
func ModuleClient(t testing.TB, mount func(*httpx.Router)) (*Client, *httpx.Table) {
	t.Helper()
	gin.SetMode(gin.TestMode)
	engine := gin.New()
	table := &httpx.Table{}
	authorize := func(string) gin.HandlerFunc {
		return func(c *gin.Context) {
			if raw, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer "); ok {
				p := identity.Principal{Kind: identity.KindAPIKey, TenantID: uuid.MustParse(raw), Subject: "test"}
				c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
			}
			c.Next()
		}
	}
	known := func(string) bool { return true }
	mount(httpx.NewRouter(engine.Group("/v1"), table, authorize, known))
	return NewClient(t, engine), table
}
