package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tenantd/tenantd/internal/apptest"
)

// The request fuzzer's knobs: FUZZ_API_SEED picks the requests (the same
// seed sends the same requests, in the same shapes, against fixtures made
// afresh), FUZZ_API_REQUESTS how many.
const (
	fuzzDefaultSeed     = 20261205
	fuzzDefaultRequests = 6000
	fuzzWorkers         = 6
)

// TestFuzzAPI sends thousands of mutated requests across every operation
// of the served OpenAPI document, six at a time, as two tenants' admin,
// clerk, viewer and billing keys, the operator, no credential and made-up
// ones; path ids are the actor's own objects, the other tenant's, random
// and malformed UUIDs; bodies and parameters get wrong types, huge
// numbers, NUL and control characters, odd Unicode, missing and extra
// fields and malformed JSON. No answer may be a server error (5xx), every
// error must be application/problem+json with its status and code (and a
// 429 or 503 its Retry-After), and no answer may carry an id, slug or key
// of a tenant other than the caller's unless the caller itself sent it.
// A failure prints the seed and each failing request: FUZZ_API_SEED=<seed>
// sends the same requests again.
func TestFuzzAPI(t *testing.T) {
	seed := envNumber(t, "FUZZ_API_SEED", fuzzDefaultSeed)
	total := int(envNumber(t, "FUZZ_API_REQUESTS", fuzzDefaultRequests))
	t.Logf("FUZZ_API_SEED=%d FUZZ_API_REQUESTS=%d", seed, total)
	start := time.Now()

	s := apptest.New(t, apptest.Options{MaxConns: 10})
	fz := newAPIFuzzer(t, s, seed)
	setUp := time.Since(start)

	var (
		next      atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		failures  []string
		statuses  = map[int]int{}
		perOp     = map[string]int{}
		codeCount = map[string]int{}
		mutated   int
	)
	fail := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, msg)
	}
	sendStart := time.Now()
	for range fuzzWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				req := fz.request(i)
				status, code, problems := fz.send(req)
				mu.Lock()
				statuses[status]++
				if code != "" {
					codeCount[code]++
				}
				perOp[req.op.method+" "+req.op.path]++
				if len(req.mutations) > 0 {
					mutated++
				}
				mu.Unlock()
				for _, p := range problems {
					fail(fmt.Sprintf("%s\n    %s", p, req))
				}
			}
		})
	}
	wg.Wait()
	sent := time.Since(sendStart)

	var codes []int
	for c := range statuses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var hist []string
	for _, c := range codes {
		hist = append(hist, fmt.Sprintf("%d×%d", c, statuses[c]))
	}
	t.Logf("%d requests over %d operations in %s (%.0f/s; set-up %s, total %s); statuses %s",
		total, len(fz.ops), sent.Round(time.Millisecond), float64(total)/sent.Seconds(),
		setUp.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), strings.Join(hist, " "))
	t.Logf("%d requests carried at least one mutation; problem codes: %v", mutated, codeCount)
	if total >= fuzzDefaultRequests && mutated < 5000 {
		t.Errorf("got %d mutated requests, want at least 5,000", mutated)
	}
	for _, op := range fz.ops {
		if perOp[op.method+" "+op.path] == 0 {
			t.Errorf("operation %s %s got no request", op.method, op.path)
		}
	}
	if len(failures) > 0 {
		sort.Strings(failures)
		shown := failures[:min(len(failures), 25)]
		t.Errorf("%d of %d requests failed (FUZZ_API_SEED=%d reproduces them); the first %d:\n%s",
			len(failures), total, seed, len(shown), strings.Join(shown, "\n"))
	}
}

func envNumber(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// fuzzOp is one operation of the OpenAPI document.
type fuzzOp struct {
	method, path string
	params       []*openapi3.Parameter
	body         *openapi3.Schema // nil without a JSON request body
}

// fuzzTenant is one of the two tenants the fuzzer acts as: its keys by
// role, ids of its objects by kind, and every string that identifies it.
type fuzzTenant struct {
	name  string
	id    string
	slug  string
	keys  map[string]string   // role → secret
	pools map[string][]string // path kind → ids of its objects
	roles []string            // its custom role names

	mu      sync.Mutex
	markers map[string]bool // ids, slug and secrets that are this tenant's
	sent    map[string]bool // the other tenant's markers this tenant sent itself
}

func (ft *fuzzTenant) addMarker(m string) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.markers[m] = true
}

func (ft *fuzzTenant) markerList() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	out := make([]string, 0, len(ft.markers))
	for m := range ft.markers {
		out = append(out, m)
	}
	return out
}

type apiFuzzer struct {
	t       *testing.T
	url     string
	seed    uint64
	client  *http.Client
	ops     []*fuzzOp
	tenants [2]*fuzzTenant
	admin   map[string][]string // operator path kind → ids (a spare tenant, exports)
	period  string              // last month, closed
}

// newAPIFuzzer reads the served document and builds the fixtures: tenants
// A and B (enterprise, so that the plan's rate limit rarely answers) with
// keys of every built-in role, spare keys to revoke, a custom role,
// members, products, orders and a payment; a spare tenant C for the
// operator's changes; a billing export.
func newAPIFuzzer(t *testing.T, s *apptest.Server, seed uint64) *apiFuzzer {
	t.Helper()
	fz := &apiFuzzer{t: t, url: s.URL, seed: seed, client: loopbackHTTP(t, randomLoopback(t)),
		admin: map[string][]string{}}
	fz.client.Timeout = 30 * time.Second
	fz.period = time.Now().UTC().AddDate(0, -1, 0).Format("2006-01")

	resp := s.Do(apptest.Request{Method: "GET", Path: "/openapi.json"})
	if resp.Status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d", resp.Status)
	}
	doc, err := openapi3.NewLoader().LoadFromData(resp.Body)
	if err != nil {
		t.Fatalf("load the served document: %v", err)
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			fo := &fuzzOp{method: method, path: path}
			for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
				if p != nil && p.Value != nil {
					fo.params = append(fo.params, p.Value)
				}
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil && mt.Schema != nil {
					fo.body = mt.Schema.Value
				}
			}
			fz.ops = append(fz.ops, fo)
		}
	}
	sort.Slice(fz.ops, func(i, j int) bool {
		return fz.ops[i].path+" "+fz.ops[i].method < fz.ops[j].path+" "+fz.ops[j].method
	})
	if len(fz.ops) < 40 {
		t.Fatalf("the served document has %d operations, want them all", len(fz.ops))
	}

	suffix := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)
	for i, name := range []string{"A", "B"} {
		tn := s.CreateTenant("fz-"+strings.ToLower(name)+"-"+suffix, "enterprise")
		ft := &fuzzTenant{name: name, id: tn.ID, slug: tn.Slug, keys: map[string]string{"admin": tn.Key},
			pools: map[string][]string{}, markers: map[string]bool{}, sent: map[string]bool{}}
		for _, role := range []string{"clerk", "viewer", "billing"} {
			ft.keys[role] = s.CreateKey(tn.Key, role)
		}
		created := func(path string, body any) string {
			t.Helper()
			r := s.Do(apptest.Request{Method: "POST", Path: path, Key: tn.Key, Body: body})
			if r.Status != http.StatusCreated {
				t.Fatalf("fixture POST %s: got %d %s", path, r.Status, r.Body)
			}
			id, _ := r.Map(t)["id"].(string)
			return id
		}
		for range 4 { // spare keys: the ones DELETE /v1/api-keys/{id} may revoke
			ft.pools["api-keys"] = append(ft.pools["api-keys"], created("/v1/api-keys", map[string]any{"name": "spare", "roles": []string{"viewer"}}))
		}
		role := "fz-role-" + strings.ToLower(name)
		created("/v1/roles", map[string]any{"name": role, "permissions": []string{"products:read", "orders:read"}})
		ft.roles = []string{role}
		for j := range 2 {
			ft.pools["members"] = append(ft.pools["members"], created("/v1/members",
				map[string]any{"email": fmt.Sprintf("member%d-%s@example.com", j, strings.ToLower(name)), "roles": []string{"viewer"}}))
		}
		for j := range 3 {
			ft.pools["products"] = append(ft.pools["products"], created("/v1/products",
				map[string]any{"sku": fmt.Sprintf("FZ-%s-%d", name, j), "name": "Fuzz " + name, "price": 1000 + j, "currency": "EUR", "stock": 100000}))
		}
		for j := range 2 {
			ft.pools["orders"] = append(ft.pools["orders"], created("/v1/orders",
				map[string]any{"customer_id": "c-" + name, "items": []map[string]any{{"product_id": ft.pools["products"][j], "quantity": 1}}}))
		}
		ft.pools["payments"] = append(ft.pools["payments"], created("/v1/payments",
			map[string]any{"order_id": ft.pools["orders"][0], "amount": 1000, "currency": "EUR", "payment_method": "card"}))
		// Every id of the tenant's keys, the actors' included.
		list := s.Do(apptest.Request{Method: "GET", Path: "/v1/api-keys?limit=200", Key: tn.Key})
		var keys struct{ Data []struct{ ID, Prefix string } }
		list.JSON(t, &keys)
		for _, k := range keys.Data {
			ft.addMarker(k.ID)
			ft.addMarker(k.Prefix)
		}
		for _, m := range append([]string{ft.id, ft.slug}, slices.Concat(ft.pools["api-keys"], ft.pools["members"],
			ft.pools["products"], ft.pools["orders"], ft.pools["payments"])...) {
			ft.addMarker(m)
		}
		for _, k := range ft.keys {
			ft.addMarker(k)
		}
		fz.tenants[i] = ft
	}
	spare := s.CreateTenant("fz-c-"+suffix, "free")
	fz.admin["tenants"] = []string{spare.ID}
	r := s.Do(apptest.Request{Method: "POST", Path: "/admin/v1/billing/exports", Key: apptest.OperatorKey,
		Body: map[string]string{"period": fz.period, "format": "csv"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("fixture billing export: got %d %s", r.Status, r.Body)
	}
	fz.admin["exports"] = []string{r.Map(t)["id"].(string)}
	return fz
}

// fuzzRequest is one request to send, with what it was made from.
type fuzzRequest struct {
	i         int
	op        *fuzzOp
	url       string
	header    http.Header
	body      []byte
	actor     *fuzzTenant // whose key authenticates it; nil for the operator, none or a made-up one
	cred      string
	mutations []string
}

func (r fuzzRequest) String() string {
	body := string(r.body)
	if len(body) > 300 {
		body = body[:300] + fmt.Sprintf("… (%d bytes)", len(r.body))
	}
	return fmt.Sprintf("request %d: %s %s as %s, mutations %v, body %q", r.i, r.op.method, r.url, r.cred, r.mutations, body)
}

// request builds request i from the seed alone (and the fixtures), so the
// same seed sends the same requests whatever the workers' interleaving.
func (fz *apiFuzzer) request(i int) fuzzRequest {
	rng := rand.New(rand.NewPCG(fz.seed, uint64(i)))
	op := fz.ops[i%len(fz.ops)]
	req := fuzzRequest{i: i, op: op, header: http.Header{}}
	g := &fuzzGen{rng: rng, fz: fz}
	// Most requests carry at least one mutation; the rest fit the
	// document, so that requests also get past validation.
	force := rng.IntN(100) < 87
	g.clean = !force
	hasPathParam := strings.Contains(op.path, "{")
	forcePath := force && hasPathParam && op.body == nil && rng.IntN(100) < 60

	// The credential.
	switch scope := opScope(op.path); {
	case scope == "tenant" && (g.clean || rng.IntN(100) < 88), scope == "operator" && !g.clean && rng.IntN(100) < 12:
		ft := fz.tenants[rng.IntN(2)]
		role := []string{"admin", "admin", "admin", "clerk", "viewer", "billing"}[rng.IntN(6)]
		req.actor, req.cred = ft, ft.name+" "+role
		req.header.Set("Authorization", "Bearer "+ft.keys[role])
		if scope == "operator" {
			req.mutations = append(req.mutations, "tenant key on an operator route")
		}
	case scope == "operator" || (!g.clean && rng.IntN(100) < 4):
		req.cred = "operator"
		req.header.Set("Authorization", "Bearer "+apptest.OperatorKey)
		if scope == "tenant" {
			req.mutations = append(req.mutations, "operator key on a tenant route")
		}
	case g.clean || rng.IntN(2) == 0:
		req.cred = "none"
		if scope != "public" {
			req.mutations = append(req.mutations, "no credential")
		}
	default:
		req.cred = "made-up"
		req.header.Set("Authorization", "Bearer "+g.badCredential())
		req.mutations = append(req.mutations, "made-up credential")
	}
	g.actor = req.actor

	// Path and query.
	path := op.path
	query := url.Values{}
	for _, p := range op.params {
		switch p.In {
		case "path":
			v := g.pathValue(op, p, forcePath, &req.mutations)
			path = strings.ReplaceAll(path, "{"+p.Name+"}", url.PathEscape(v))
		case "query":
			if p.Required || rng.IntN(100) < 45 {
				query.Set(p.Name, g.paramValue(p, &req.mutations))
			}
		case "header":
			if !g.clean && rng.IntN(100) < 10 {
				req.header.Set(p.Name, g.headerValue(p))
				req.mutations = append(req.mutations, "header "+p.Name)
			}
		}
	}
	if (!g.clean && rng.IntN(100) < 6) || (force && op.body == nil && len(req.mutations) == 0) {
		name := []string{"zz_extra", "limit", "a\x00b", "\x1b[2J", "ü", "cursor", "after", "status"}[rng.IntN(8)]
		query.Add(name, g.mutatedString())
		req.mutations = append(req.mutations, "extra query parameter")
	}
	req.url = fz.url + path
	if len(query) > 0 {
		req.url += "?" + query.Encode()
	}

	// The body.
	if op.body != nil || (op.method != http.MethodGet && rng.IntN(100) < 3) {
		var doc any
		if op.body != nil {
			doc = g.value(op.body, "", 0)
		}
		req.body = g.mutateBody(doc, force && len(req.mutations) == 0, &req.mutations)
		req.header.Set("Content-Type", "application/json")
		if !g.clean && rng.IntN(100) < 3 {
			req.header.Set("Content-Type", "text/plain; charset=utf-16")
			req.mutations = append(req.mutations, "wrong content type")
		}
	}
	if op.method == http.MethodPost && !g.clean && rng.IntN(100) < 10 {
		req.header.Set("Idempotency-Key", fmt.Sprintf("fz-%d", rng.IntN(40)))
		req.mutations = append(req.mutations, "reused Idempotency-Key")
	}
	return req
}

// opScope says which credential an operation is for.
func opScope(path string) string {
	switch {
	case strings.HasPrefix(path, "/v1/"):
		return "tenant"
	case strings.HasPrefix(path, "/admin/"):
		return "operator"
	}
	return "public"
}

// send sends req and returns the status, the problem's code and what was
// wrong with the answer.
func (fz *apiFuzzer) send(req fuzzRequest) (status int, code string, problems []string) {
	sentText := req.url + "\n" + string(req.body)
	for k, vs := range req.header {
		sentText += "\n" + k + ": " + strings.Join(vs, ",")
	}
	// What the caller sends, it may get back (a problem's instance is the
	// path; its own audit trail records its requests).
	if req.actor != nil {
		other := fz.other(req.actor)
		for _, m := range other.markerList() {
			if strings.Contains(sentText, m) {
				req.actor.mu.Lock()
				req.actor.sent[m] = true
				req.actor.mu.Unlock()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.op.method, req.url, body)
	if err != nil {
		return 0, "", []string{fmt.Sprintf("build: %v", err)}
	}
	hr.Header = req.header
	resp, err := fz.client.Do(hr)
	if err != nil {
		return 0, "", []string{fmt.Sprintf("transport: %v", err)}
	}
	defer resp.Body.Close()
	ctype := resp.Header.Get("Content-Type")
	var data []byte
	if !strings.HasPrefix(ctype, "text/event-stream") { // a stream stays open: its headers are the answer
		if data, err = io.ReadAll(io.LimitReader(resp.Body, 4<<20)); err != nil {
			return resp.StatusCode, "", []string{fmt.Sprintf("read the answer: %v", err)}
		}
	}
	status = resp.StatusCode
	if status >= 500 {
		problems = append(problems, fmt.Sprintf("got %d %s", status, truncate(data, 300)))
	}
	if status >= 400 {
		var p struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		switch {
		case ctype != "application/problem+json":
			problems = append(problems, fmt.Sprintf("got %d with Content-Type %q, want application/problem+json: %s", status, ctype, truncate(data, 200)))
		case json.Unmarshal(data, &p) != nil || p.Status != status || p.Code == "":
			problems = append(problems, fmt.Sprintf("got %d with problem %s, want its status and a code", status, truncate(data, 200)))
		}
		code = p.Code
		if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && resp.Header.Get("Retry-After") == "" {
			problems = append(problems, fmt.Sprintf("got %d without Retry-After", status))
		}
	}
	// No other tenant's id, slug or key, unless the caller sent it.
	var suspects []*fuzzTenant
	if req.actor != nil {
		suspects = []*fuzzTenant{fz.other(req.actor)}
	} else if req.cred != "operator" {
		suspects = fz.tenants[:]
	}
	text := string(data) + "\n" + fmt.Sprint(resp.Header)
	for _, other := range suspects {
		for _, m := range other.markerList() {
			if !strings.Contains(text, m) || strings.Contains(sentText, m) {
				continue
			}
			if req.actor != nil {
				req.actor.mu.Lock()
				known := req.actor.sent[m]
				req.actor.mu.Unlock()
				if known {
					continue
				}
			}
			problems = append(problems, fmt.Sprintf("got %d carrying tenant %s's %q, which the caller never sent: %s", status, other.name, m, truncate(data, 300)))
		}
	}
	// What a tenant creates is its own from now on.
	if req.actor != nil && status == http.StatusCreated {
		var created map[string]any
		if json.Unmarshal(data, &created) == nil {
			for _, k := range []string{"id", "secret", "prefix"} {
				if v, ok := created[k].(string); ok && len(v) >= 8 && !fz.isMarkerOf(fz.other(req.actor), v) {
					req.actor.addMarker(v)
				}
			}
		}
	}
	return status, code, problems
}

func (fz *apiFuzzer) other(ft *fuzzTenant) *fuzzTenant {
	if fz.tenants[0] == ft {
		return fz.tenants[1]
	}
	return fz.tenants[0]
}

func (fz *apiFuzzer) isMarkerOf(ft *fuzzTenant, v string) bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.markers[v]
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

// fuzzGen makes the values of one request.
type fuzzGen struct {
	rng   *rand.Rand
	fz    *apiFuzzer
	actor *fuzzTenant
	clean bool // a request that fits the document: no mutation at all
}

func (g *fuzzGen) pick(options ...string) string { return options[g.rng.IntN(len(options))] }

// badUUIDs are path ids that are no UUID.
var badUUIDs = []string{"not-a-uuid", "0", "", " ", "\x00", "..", "%00", "00000000-0000-0000-0000-00000000000g",
	"{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}", "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", "😀", strings.Repeat("a", 1000),
	"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\x1b", "1e400", "-1", "null"}

// pathValue is a value of a path parameter: an id of the actor's own
// objects, of the other tenant's, a random UUID or no UUID at all.
// With force it is always one of the last three.
func (g *fuzzGen) pathValue(op *fuzzOp, p *openapi3.Parameter, force bool, mutations *[]string) string {
	path := op.path
	kind := pathKind(path)
	if p.Name == "name" { // a role
		n := g.rng.IntN(100)
		switch {
		case force:
			n = 60 + g.rng.IntN(40)
		case g.clean:
			n = 0
		}
		switch {
		case n < 45 && g.actor != nil:
			return g.actor.roles[0]
		case n < 60:
			return g.fz.tenants[g.rng.IntN(2)].roles[0]
		case n < 70 && g.actor != nil:
			*mutations = append(*mutations, "other tenant's role")
			return g.fz.other(g.actor).roles[0]
		case n < 75:
			return g.pick("admin", "clerk", "viewer", "billing", "nope")
		default:
			*mutations = append(*mutations, "odd role name")
			return g.mutatedString()
		}
	}
	n := g.rng.IntN(100)
	switch {
	case force:
		n = []int{5, 20, 90}[g.rng.IntN(3)] // malformed, random, the other tenant's
	case g.clean:
		n = 50 // the actor's own
	}
	switch {
	case n < 15:
		*mutations = append(*mutations, "malformed path id")
		return badUUIDs[g.rng.IntN(len(badUUIDs))]
	case n < 25:
		*mutations = append(*mutations, "random path id")
		return randomUUID(g.rng)
	}
	if strings.HasPrefix(path, "/admin/") {
		// A and B are read, never changed: a suspension would end the
		// run's coverage. Changes go to the spare tenant C.
		if kind == "tenants" && op.method == http.MethodGet && n < 55 {
			return g.fz.tenants[g.rng.IntN(2)].id
		}
		if ids := g.fz.admin[kind]; len(ids) > 0 {
			return ids[g.rng.IntN(len(ids))]
		}
		return randomUUID(g.rng)
	}
	owner := g.actor
	switch {
	case force && g.actor != nil:
		owner = g.fz.other(g.actor)
	case owner == nil || n >= 70:
		owner = g.fz.tenants[g.rng.IntN(2)]
	}
	if owner != g.actor {
		*mutations = append(*mutations, "other tenant's id")
	}
	if ids := owner.pools[kind]; len(ids) > 0 {
		return ids[g.rng.IntN(len(ids))]
	}
	return randomUUID(g.rng)
}

// pathKind is the kind of object a path's {id} names: its collection.
func pathKind(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if strings.HasPrefix(p, "{") && i > 0 {
			return parts[i-1]
		}
	}
	return ""
}

func randomUUID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// paramValue is a query parameter's value: a fitting one, or a mutated one.
func (g *fuzzGen) paramValue(p *openapi3.Parameter, mutations *[]string) string {
	if !g.clean && g.rng.IntN(100) < 30 {
		*mutations = append(*mutations, "mutated query "+p.Name)
		switch g.rng.IntN(4) {
		case 0:
			return g.pick("0", "-1", "201", "99999999999999999999", "1e3", "1.5", "0x10", "NaN", "true")
		case 1:
			return g.pick("AAAA", "%%%", "not-a-cursor", "AZChssPUfl-Kmwwd-j9KWw==", randomUUID(g.rng))
		default:
			return g.mutatedString()
		}
	}
	var s *openapi3.Schema
	if p.Schema != nil {
		s = p.Schema.Value
	}
	switch p.Name {
	case "confirm":
		return g.fz.tenants[g.rng.IntN(2)].slug + g.pick("", "x")
	case "tenant_id", "order_id":
		if g.actor != nil && p.Name == "order_id" {
			return g.actor.pools["orders"][0]
		}
		return g.fz.tenants[g.rng.IntN(2)].id
	case "period":
		return g.pick(g.fz.period, time.Now().UTC().Format("2006-01"), "2025-13", "2099-12")
	}
	if s == nil {
		return g.mutatedString()
	}
	v := g.value(s, p.Name, 0)
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// headerValue is a value of a documented header: fitting, or odd but
// sendable (HTTP forbids control characters in header values).
func (g *fuzzGen) headerValue(p *openapi3.Parameter) string {
	switch p.Name {
	case "X-Tenant":
		ft := g.fz.tenants[g.rng.IntN(2)]
		return g.pick(ft.slug, ft.id, "nobody", strings.ToUpper(ft.slug), "ü")
	case "If-Match", "If-None-Match":
		return g.pick(`"1"`, `"999"`, `W/"1"`, "*", "garbage", `""`)
	case "Idempotency-Key":
		return g.pick("fz-1", strings.Repeat("k", 300), "ключ", "")
	}
	return g.pick("1", "0", "-1", "999999999999999999999", "x", "😀")
}

// badCredential is a credential no one holds: well-formed keys, broken
// ones, JWT-shaped text.
func (g *fuzzGen) badCredential() string {
	const b32 = "abcdefghijklmnopqrstuvwxyz234567"
	key := func(n int) string {
		var sb strings.Builder
		for range n {
			sb.WriteByte(b32[g.rng.IntN(len(b32))])
		}
		return sb.String()
	}
	switch g.rng.IntN(5) {
	case 0:
		return "tk_" + key(16) + "_" + key(52)
	case 1:
		return "tk_" + key(16)
	case 2:
		return "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2V2aWwuZXhhbXBsZSJ9."
	case 3:
		return strings.Repeat("x", 5000)
	default:
		return "tk_" + key(16) + "_" + key(51) + "ü"
	}
}

// mutatedStrings are strings that break the text rule, the JSON text or
// expectations about length and script.
var mutatedStrings = []string{
	"\x00", "a\x00b", "\x1b[31mred", "\u0085", "\u007f", "\t", "line\nbreak", "\u2028", "\u202egnp.exe",
	"😀", "e\u0301", "\uFFFF", "\uFFFD", "ﷺ", "𝕏", "", " ", "' OR 1=1 --", "\"; DROP TABLE products; --",
	"../../etc/passwd", "<script>alert(1)</script>", "%00", "%s%n", "${jndi:ldap://x}", "null", "true", "0",
	"-1", "1e400", "９", "ǅ", "İ", "ß",
}

func (g *fuzzGen) mutatedString() string {
	if g.rng.IntN(10) == 0 {
		return strings.Repeat(g.pick("a", "é", "😀"), 100+g.rng.IntN(5000))
	}
	return mutatedStrings[g.rng.IntN(len(mutatedStrings))]
}

// value makes a fitting value for schema s of the field called name.
func (g *fuzzGen) value(s *openapi3.Schema, name string, depth int) any {
	if s == nil || depth > 6 {
		return nil
	}
	if len(s.Enum) > 0 {
		return s.Enum[g.rng.IntN(len(s.Enum))]
	}
	if s.Const != nil {
		return s.Const
	}
	for _, alts := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf, s.AllOf} {
		if len(alts) > 0 {
			if alt := alts[g.rng.IntN(len(alts))]; alt != nil {
				return g.value(alt.Value, name, depth+1)
			}
		}
	}
	typ := ""
	if s.Type != nil {
		for _, t := range s.Type.Slice() {
			if t != "null" {
				typ = t
				break
			}
		}
	}
	switch {
	case typ == "object" || (typ == "" && len(s.Properties) > 0):
		obj := map[string]any{}
		names := make([]string, 0, len(s.Properties))
		for n := range s.Properties {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if slices.Contains(s.Required, n) || g.rng.IntN(100) < 50 {
				obj[n] = g.value(s.Properties[n].Value, n, depth+1)
			}
		}
		return obj
	case typ == "array":
		n := max(int(s.MinItems), 1+g.rng.IntN(2))
		out := make([]any, 0, n)
		for range n {
			var item *openapi3.Schema
			if s.Items != nil {
				item = s.Items.Value
			}
			out = append(out, g.value(item, singular(name), depth+1))
		}
		return out
	case typ == "integer" || typ == "number":
		return g.number(s, name)
	case typ == "boolean":
		return g.rng.IntN(2) == 0
	case typ == "string":
		return g.text(s, name)
	}
	return nil
}

func singular(name string) string { return strings.TrimSuffix(name, "s") }

func (g *fuzzGen) number(s *openapi3.Schema, name string) int64 {
	switch name {
	case "amount":
		return int64(g.pick2(1000, 1001, 1+g.rng.IntN(5000)))
	case "price":
		return int64(100 + g.rng.IntN(10000))
	case "quantity":
		return int64(1 + g.rng.IntN(3))
	case "delta":
		return int64(g.rng.IntN(11) - 5)
	}
	lo, hi := int64(0), int64(100)
	if s.Min != nil {
		lo = int64(*s.Min)
	}
	if s.Max != nil && int64(*s.Max) < lo+1000 {
		hi = int64(*s.Max)
	} else {
		hi = lo + 100
	}
	return lo + g.rng.Int64N(hi-lo+1)
}

func (g *fuzzGen) pick2(options ...int) int { return options[g.rng.IntN(len(options))] }

// text makes a string for a field, by its name, format and pattern.
func (g *fuzzGen) text(s *openapi3.Schema, name string) string {
	n := g.rng.IntN(1_000_000)
	switch name {
	case "role", "jit_default_role":
		return g.role()
	case "currency":
		return g.pick("EUR", "EUR", "EUR", "USD")
	case "payment_method":
		return g.pick("card", "card", "card_declined", "card_error")
	case "customer_id":
		return fmt.Sprintf("c-%d", n)
	case "period":
		return g.pick(g.fz.period, time.Now().UTC().Format("2006-01"), "2099-12")
	case "format":
		return g.pick("csv", "jsonl", "cloudevents", "stripe-meter-events", "xml")
	}
	switch s.Format {
	case "uuid":
		return g.uuidFor(name)
	case "date-time":
		return time.Now().UTC().Add(time.Duration(g.rng.IntN(48)-6) * time.Hour).Format(time.RFC3339)
	case "email":
		return fmt.Sprintf("fz%d@example.com", n)
	case "uri", "uri-reference":
		return fmt.Sprintf("https://fuzz%d.example/", n%50)
	}
	switch s.Pattern {
	case `^[a-z][a-z0-9_-]{1,39}$`, `^[a-z][a-z0-9_-]{0,39}$`:
		return fmt.Sprintf("fz-%d", n)
	case `^[a-z0-9-]{3,40}$`:
		return fmt.Sprintf("fz-new-%d", n)
	case `^[A-Z]{3}$`:
		return "EUR"
	case `^[A-Za-z0-9._-]{1,64}$`:
		return fmt.Sprintf("FZ-%d", n)
	case `^https?://`:
		return fmt.Sprintf("https://fuzz%d.example", n%50)
	case `^[0-9]{4}-(0[1-9]|1[0-2])$`:
		return g.fz.period
	case `^[A-Za-z0-9_:/.-]{1,100}$`:
		return fmt.Sprintf("fz:%d", n)
	}
	if s.Example != nil {
		if e, ok := s.Example.(string); ok {
			return e
		}
	}
	out := fmt.Sprintf("fuzz %d", n)
	if s.MaxLength != nil && uint64(len(out)) > *s.MaxLength {
		out = out[:*s.MaxLength]
	}
	return out
}

func (g *fuzzGen) role() string {
	if g.actor != nil && g.rng.IntN(4) == 0 {
		return g.actor.roles[0]
	}
	return g.pick("admin", "clerk", "viewer", "billing")
}

// uuidFor is a UUID for a field: the actor's object of that kind, the
// other tenant's, or a random one.
func (g *fuzzGen) uuidFor(name string) string {
	kind := map[string]string{"product_id": "products", "order_id": "orders", "payment_id": "payments"}[name]
	owner := g.actor
	if owner == nil || g.rng.IntN(100) < 20 {
		owner = g.fz.tenants[g.rng.IntN(2)]
	}
	if ids := owner.pools[kind]; len(ids) > 0 && g.rng.IntN(100) < 85 {
		return ids[g.rng.IntN(len(ids))]
	}
	return randomUUID(g.rng)
}

// bodyMutations change a fitting JSON document into something else.
var bodyMutations = []string{"none", "none", "none", "drop a field", "extra field", "wrong type", "huge number",
	"odd string", "null field", "malformed JSON", "truncated JSON", "trailing data", "raw control character",
	"empty body", "not an object", "deep nesting", "duplicate key", "oversized body"}

// mutateBody encodes doc, changed by up to two mutations; with force, by
// at least one.
func (g *fuzzGen) mutateBody(doc any, force bool, mutations *[]string) []byte {
	count := g.pick2(0, 1, 1, 1, 2, 2)
	switch {
	case force:
		count = max(count, 1)
	case g.clean:
		count = 0
	}
	var raw []byte
	for j := range count {
		m := bodyMutations[g.rng.IntN(len(bodyMutations))]
		if force && j == 0 && m == "none" {
			m = bodyMutations[3+g.rng.IntN(len(bodyMutations)-3)]
		}
		if m == "oversized body" && g.rng.IntN(4) != 0 {
			m = "odd string" // keep the rare 1 MiB bodies rare
		}
		if m != "none" {
			*mutations = append(*mutations, m)
		}
		obj, isObj := doc.(map[string]any)
		field := ""
		if isObj && len(obj) > 0 {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			field = keys[g.rng.IntN(len(keys))]
		}
		switch m {
		case "drop a field":
			if field != "" {
				delete(obj, field)
			}
		case "extra field":
			if isObj {
				obj[g.pick("zz_extra", "tenant_id", "id", "\u0000", "ü", "")] = g.pick("x", "1")
			}
		case "wrong type":
			if field != "" {
				obj[field] = wrongType(obj[field], g)
			}
		case "huge number":
			if field != "" {
				obj[field] = json.Number(g.pick("1e308", "-1e308", "9223372036854775807", "9223372036854775808",
					"-9223372036854775809", "1e400", "18446744073709551616", "0", "-1", "9007199254740993", "1.5", "-0"))
			}
		case "odd string":
			if field != "" {
				obj[field] = g.mutatedString()
			} else if isObj {
				obj["name"] = g.mutatedString()
			}
		case "null field":
			if field != "" {
				obj[field] = nil
			}
		case "malformed JSON":
			raw = []byte(g.pick("{", "}", "{\"a\":}", "{'a':1}", "{\"a\" 1}", "[", "nul", "\xff\xfe{}", "{\"a\":1,}", "{\"a\":01}"))
		case "truncated JSON":
			b, _ := json.Marshal(doc)
			if len(b) > 1 {
				raw = b[:g.rng.IntN(len(b)-1)+1]
			}
		case "trailing data":
			b, _ := json.Marshal(doc)
			raw = append(b, []byte(g.pick(" x", "{}", "\x00", " {\"a\":1}"))...)
		case "raw control character":
			b, _ := json.Marshal(doc)
			if i := bytes.IndexByte(b, '"'); i >= 0 {
				raw = append(append(append([]byte{}, b[:i+1]...), byte(g.rng.IntN(32))), b[i+1:]...)
			}
		case "empty body":
			raw = []byte(g.pick("", " ", "\n"))
		case "not an object":
			raw = []byte(g.pick("null", "[]", "[{}]", "\"text\"", "42", "true"))
		case "deep nesting":
			depth := 1000 + g.rng.IntN(20000)
			raw = []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
		case "duplicate key":
			b, _ := json.Marshal(doc)
			if field != "" && len(b) > 1 {
				raw = append(b[:len(b)-1], []byte(fmt.Sprintf(",%q:%q}", field, "\u0000"))...)
			}
		case "oversized body":
			raw = []byte(`{"name":"` + strings.Repeat("a", 1<<20+10) + `"}`)
		}
		if raw != nil {
			return raw
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return []byte("{}")
	}
	return b
}

// wrongType is a value of another JSON type than v.
func wrongType(v any, g *fuzzGen) any {
	switch v.(type) {
	case string:
		return g.pick2(0, 1, -1, 123456789)
	case int64, float64, int, json.Number:
		return g.pick("12", "", "1e3", "x")
	case bool:
		return "true"
	case []any:
		return map[string]any{"0": "x"}
	case map[string]any:
		return []any{"x"}
	case nil:
		return []any{}
	}
	return "x"
}
