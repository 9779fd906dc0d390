package audit

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sync"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/identity"
)

// Request entries are written in one of two phases, named in their
// summary's "phase".
const (
	// PhaseCommit: written by the request's first transaction that wrote
	// anything, atomically with it, before the response was known (status 0).
	PhaseCommit = "commit"
	// PhaseResponse: written after the response, in a transaction of its
	// own, with the final status.
	PhaseResponse = "response"
)

// WithRequestOrigin returns ctx carrying the origin of a request from
// clientIP (as the engine's trusted proxies resolve it) with userAgent,
// unless ctx carries one already: events recorded before the request's
// entry (first sign-ins, failed authentications) name it too.
func (a *Auditor) WithRequestOrigin(ctx context.Context, clientIP, userAgent string) context.Context {
	if _, ok := OriginFrom(ctx); ok {
		return ctx
	}
	return WithOrigin(ctx, Origin{IP: clientIP, UserAgent: clean(userAgent, MaxUserAgent)})
}

// Audits reports whether requests of method change state and are audited:
// POST, PUT, PATCH and DELETE. GET, HEAD and OPTIONS requests cost nothing.
func (a *Auditor) Audits(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// StartRequest starts the entry of an audited request of the tenant
// principal p: action "METHOD /route/:template", resource the request's
// path, summary the top-level field names of its JSON body (never
// values). The returned ctx carries the entry (BindRequest lets the
// handler's transactions write it, see BeforeCommit); finish, called once
// with the final status (500 for a panic) and whether the idempotency
// layer replayed the response, writes the "response" entry unless a
// transaction wrote it.
//
// The guarantee: the entry is written with the request's first tenant
// transaction that writes and commits (phase "commit", status 0), so a
// change commits with its entry (but see below); a request that commits no
// such transaction (refused, invalid, failed, replayed by idempotency) gets
// its entry after the response, with the final status (phase "response");
// a request that committed and then answered 400 or more gets both. Only the
// "response" entries are written outside the request's transactions; a
// transient failure is retried for up to a few seconds (with the same
// event id, so a retry after a commit the driver misreported finds the row
// and stops), and only a failure past that is logged as a lost entry. A
// commit whose outcome the driver misreports as failed may leave a
// duplicate "response" entry: at least once, never silently none. While a
// transaction of the request that turns out not to have written holds the
// entry (one statement long), a concurrent writing transaction of the same
// request does not wait for it, and commits without the entry: the
// "response" entry covers it then.
func (a *Auditor) StartRequest(ctx context.Context, p identity.Principal, action, resource string, body []byte) (
	_ context.Context, finish func(status int, replayed bool)) {
	summary := map[string]any{}
	if fields := fieldNames(body); fields != nil {
		summary["fields"] = fields
	}
	req := &pending{tenantID: p.TenantID, entry: Entry{
		Actor: p.Actor(), Action: action, Resource: resource, Summary: summary,
	}}
	req.cond = sync.NewCond(&req.mu)
	ctx = context.WithValue(ctx, pendingKey{}, req)
	return ctx, func(status int, replayed bool) { a.settle(ctx, req, status, replayed) }
}

// settle writes the request's "response" entry unless its "commit" entry
// covers it.
func (a *Auditor) settle(ctx context.Context, req *pending, status int, replayed bool) {
	written := req.close()
	if written && status < http.StatusBadRequest {
		return
	}
	e := req.entry
	e.Status = status
	e.Summary = maps.Clone(e.Summary)
	e.Summary["phase"] = PhaseResponse
	if replayed {
		e.Summary["replayed"] = true
	}
	if err := a.write(ctx, req.tenantID, e); err != nil {
		a.log.ErrorContext(ctx, "audit: recording a request failed; the request is not in the audit trail",
			"tenant_id", req.tenantID, "action", e.Action, "resource", e.Resource, "status", status, "err", err)
	}
}

// BindRequest returns ctx letting the handler's transactions carry the
// request's entry (see BeforeCommit). Bind it last before the handlers
// (after idempotency), so that the transactions of middleware (idempotency
// claims, their lease renewals) never carry it.
func (a *Auditor) BindRequest(ctx context.Context) context.Context {
	req, ok := ctx.Value(pendingKey{}).(*pending)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, boundKey{}, req)
}

// BeforeCommit is the db.BeforeCommit hook (install it with
// d.SetBeforeCommit(a.BeforeCommit)). In a transaction of a request bound
// by Bind, for the request's tenant, that wrote something, and whose entry
// no other transaction has written or is writing, it appends the entry
// (phase "commit", status 0); if the transaction then fails to commit (and
// db.WithTenant may run it again), the entry is up for grabs again.
// Everywhere else it returns at once. The check that the transaction wrote
// and the append are one statement.
func (a *Auditor) BeforeCommit(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID) (after func(committed bool), err error) {
	req, ok := ctx.Value(boundKey{}).(*pending)
	if !ok || req.tenantID != tenantID || !req.claim() {
		return nil, nil
	}
	e := req.entry
	e.Summary = maps.Clone(e.Summary)
	e.Summary["phase"] = PhaseCommit
	defer wrap(&err, e.Action)
	ev, err := newEvent(ctx, tenantID, e, a.now())
	if err != nil {
		req.release(false)
		return nil, err
	}
	// A transaction is assigned an id by its first write (or row lock):
	// reads alone do not carry the entry.
	wrote, err := insertEventIfWrote(tx.WithContext(ctx), ev)
	if err != nil || !wrote {
		req.release(false)
		return nil, err
	}
	return req.release, nil
}

type pendingKey struct{}

// boundKey marks the context of handlers, whose transactions may carry the
// entry.
type boundKey struct{}

// pending is a request's entry, waiting for a transaction to carry it.
type pending struct {
	tenantID uuid.UUID
	entry    Entry

	mu    sync.Mutex
	cond  *sync.Cond // signalled when a write in flight ends
	state pendingState
}

type pendingState int

const (
	idle     pendingState = iota // not written
	inFlight                     // being written by a transaction not yet ended
	written                      // committed
	closed                       // the request is over; no more writes
)

// claim takes the entry for one transaction.
func (p *pending) claim() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != idle {
		return false
	}
	p.state = inFlight
	return true
}

// release ends the claiming transaction's write.
func (p *pending) release(committed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if committed {
		p.state = written
	} else {
		p.state = idle
	}
	p.cond.Broadcast()
}

// close ends the request, waiting for a write in flight, and reports
// whether the entry was written.
func (p *pending) close() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.state == inFlight {
		p.cond.Wait()
	}
	wasWritten := p.state == written
	p.state = closed
	return wasWritten
}

// maxFields bounds the field names a request entry lists.
const maxFields = 50

var fieldName = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// fieldNames returns the sorted top-level field names of a JSON object
// body (names that are not plain identifiers show as "?"), or nil for any
// other body.
func fieldNames(body []byte) []string {
	if len(body) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil || obj == nil {
		return nil
	}
	names := make([]string, 0, len(obj))
	for k := range obj {
		if !fieldName.MatchString(k) {
			k = "?"
		}
		names = append(names, k)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) > maxFields {
		names = names[:maxFields]
	}
	return names
}
