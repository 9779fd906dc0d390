package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"
)

// hotProducts is how many of a tenant's products the write mix touches, as
// in internal/app's TestHotTenantWrites.
const hotProducts = 4

// writeMix is the mutating load of internal/app/hotwrite_test.go: tenant
// edits, product edits, stock adjustments, two-item orders each followed by
// a payment or a cancel, API keys created and revoked, roles created and
// deleted, chosen at random with equal weight. Every request is timed on
// its own. A 5xx or an unanswered request is a failure; other answers than
// the one wanted (a 409, say) are counted by status and are not writes.
type writeMix struct {
	c *client
	// tenantOf says which tenant client w writes to.
	tenantOf func(w int) int
	// seed makes each round's choices differ from the last round's.
	seed uint64
}

func (m writeMix) phase(name string, clients int, d time.Duration, limit int64) phase {
	rngs := make([]*rand.Rand, clients)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(m.seed, uint64(w)))
	}
	return phase{name: name, clients: clients, duration: d, limit: limit, selfTimed: true,
		do: func(ctx context.Context, w *worker, seq int64) error {
			m.op(ctx, w, rngs[w.id])
			return nil
		}}
}

// op runs one operation of the mix, of one or two requests.
func (m writeMix) op(ctx context.Context, w *worker, r *rand.Rand) {
	t := m.c.pop.tenants[m.tenantOf(w.id)]
	product := func() string { return t.products[r.IntN(hotProducts)].ID.String() }
	do := func(method, path string, body any) []byte {
		return m.do(ctx, w, t.key, method, path, body)
	}
	switch r.IntN(6) {
	case 0: // tenant edit
		do(http.MethodPatch, "/v1/tenant", map[string]any{"name": fmt.Sprintf("Hot %d", r.IntN(1000))})
	case 1: // product edit
		do(http.MethodPatch, "/v1/products/"+product(), map[string]any{"name": fmt.Sprintf("Hot %d", r.IntN(1000))})
	case 2: // stock adjustment
		do(http.MethodPost, "/v1/products/"+product()+"/stock", map[string]any{"delta": 1 + r.IntN(5), "reason": "restock"})
	case 3: // two-item order, then a payment or a cancel
		a := r.IntN(hotProducts)
		b := (a + 1 + r.IntN(hotProducts-1)) % hotProducts
		body := do(http.MethodPost, "/v1/orders", map[string]any{"customer_id": "c", "items": []map[string]any{
			{"product_id": t.products[a].ID, "quantity": 1}, {"product_id": t.products[b].ID, "quantity": 2}}})
		var o struct {
			ID       string `json:"id"`
			Total    int64  `json:"total"`
			Currency string `json:"currency"`
		}
		if body == nil || json.Unmarshal(body, &o) != nil || o.ID == "" {
			return
		}
		if r.IntN(2) == 0 {
			do(http.MethodPost, "/v1/payments", map[string]any{"order_id": o.ID, "amount": o.Total, "currency": o.Currency,
				"payment_method": "card"})
		} else {
			do(http.MethodPost, "/v1/orders/"+o.ID+"/cancel", nil)
		}
	case 4: // API key created and revoked
		body := do(http.MethodPost, "/v1/api-keys", map[string]any{"name": "hot", "roles": []string{"viewer"}})
		var k struct {
			ID string `json:"id"`
		}
		if body == nil || json.Unmarshal(body, &k) != nil || k.ID == "" {
			return
		}
		do(http.MethodDelete, "/v1/api-keys/"+k.ID, nil)
	case 5: // role created and deleted
		name := fmt.Sprintf("hot-%d-%d", r.IntN(1_000_000), r.IntN(1_000_000))
		if do(http.MethodPost, "/v1/roles", map[string]any{"name": name, "permissions": []string{"products:read"}}) == nil {
			return
		}
		do(http.MethodDelete, "/v1/roles/"+name, nil)
	}
}

// do sends one request of the mix and records it. It returns the body of
// a 2xx answer (non-nil, possibly empty), else nil. Only a 5xx or no answer
// at all counts as failed.
func (m writeMix) do(ctx context.Context, w *worker, key, method, path string, body any) []byte {
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			w.record(0, 0, err)
			return nil
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.c.base+path, rd)
	if err != nil {
		w.record(0, 0, err)
		return nil
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	a, err := m.c.send(req, 0, true)
	d := time.Since(t0)
	switch {
	case err == nil:
		w.record(d, a.status, nil)
		if a.body == nil {
			a.body = []byte{}
		}
		return a.body
	case a.status >= 500 || a.status == 0:
		if ctx.Err() != nil {
			return nil // the run ended during the request
		}
		w.record(d, a.status, err)
	default:
		w.statuses[a.status]++ // answered, but not the write asked for
	}
	return nil
}
