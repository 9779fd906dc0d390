//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
)

// load is the bounded traffic the faults hit: each worker places orders
// for one tenant on the replicas in turn and pays two of three, retrying a
// payment that got no answer or a 5xx with the same Idempotency-Key, as a
// careful client does. It remembers every answer, for the checks.
type load struct {
	c *cluster

	mu        sync.Mutex
	answered  map[string]int64 // tenant id → metered answers (every /v1 answer but 429)
	allowance map[string]int64 // tenant id → counts a SIGKILL may have taken with it
	noAnswer  int64            // requests that got no answer (a replica down or stopped)
	statuses  map[int]int
	serverErr []string          // answers of 500 or more other than 503
	orders    map[string]string // order id (answered 201) → tenant id
	recent    []answer          // answers of the last seconds, for allowances
}

// answer is one metered answer.
type answer struct {
	at      time.Time
	replica string
	tenant  string
}

func newLoad(c *cluster) *load {
	return &load{c: c, answered: map[string]int64{}, allowance: map[string]int64{}, statuses: map[int]int{},
		orders: map[string]string{}}
}

// countProductCreation records the answers newTenant got: they are metered.
func (l *load) countSetup(tn tenant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answered[tn.ID] += int64(len(tn.Products))
}

// start runs workers until the returned stop is called; stop waits for
// them.
func (l *load) start(workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { l.work(ctx, w) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func (l *load) work(ctx context.Context, w int) {
	r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	tn := l.c.tenants[w%len(l.c.tenants)]
	for i := 0; ctx.Err() == nil; i++ {
		rep := l.c.replicas[(w+i)%len(l.c.replicas)]
		a := r.IntN(len(tn.Products))
		items := []map[string]any{{"product_id": tn.Products[a], "quantity": 1}}
		if r.IntN(2) == 0 {
			items = append(items, map[string]any{"product_id": tn.Products[(a+1)%len(tn.Products)], "quantity": 1})
		}
		status, o, ok := l.send(ctx, rep, tn, "POST", "/v1/orders", map[string]any{"customer_id": "chaos", "items": items}, nil)
		if ok && status == http.StatusCreated {
			id, _ := o["id"].(string)
			total, _ := o["total"].(float64)
			l.mu.Lock()
			l.orders[id] = tn.ID
			l.mu.Unlock()
			if r.IntN(3) > 0 {
				l.pay(ctx, w+i, tn, id, int64(total))
			}
		}
		pause := time.NewTimer(time.Duration(5+r.IntN(10)) * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-pause.C:
		}
		pause.Stop()
	}
}

// pay pays an order, retrying on the other replica with the same key.
func (l *load) pay(ctx context.Context, turn int, tn tenant, orderID string, amount int64) {
	key := uuid.NewString()
	body := map[string]any{"order_id": orderID, "amount": amount, "currency": "EUR", "payment_method": "card"}
	for attempt := range 4 {
		rep := l.c.replicas[(turn+attempt)%len(l.c.replicas)]
		status, _, ok := l.send(ctx, rep, tn, "POST", "/v1/payments", body, map[string]string{"Idempotency-Key": key})
		if ok && status < 500 {
			return // answered, 409 included: the order is no longer payable, or the key is in flight elsewhere
		}
		if ctx.Err() != nil {
			return
		}
		time.Sleep(time.Duration(200*(attempt+1)) * time.Millisecond)
	}
}

// send sends one request and records its answer.
func (l *load) send(ctx context.Context, rep *replica, tn tenant, method, path string, body any, header map[string]string) (int, map[string]any, bool) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	status, out, err := l.c.call(rctx, rep, method, path, tn.Key, body, header)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			l.noAnswer++
		}
		return 0, nil, false
	}
	l.statuses[status]++
	if status >= 500 && status != http.StatusServiceUnavailable {
		l.serverErr = append(l.serverErr, fmt.Sprintf("%s %s on %s: %d %v", method, path, rep.name, status, out["_body"]))
	}
	if status != http.StatusTooManyRequests {
		l.answered[tn.ID]++
		now := time.Now()
		l.recent = append(l.recent, answer{at: now, replica: rep.name, tenant: tn.ID})
		if len(l.recent) > 50_000 {
			l.recent = l.recent[len(l.recent)-25_000:]
		}
	}
	return status, out, true
}

// killed records that rep died at now: the counts of its last window of
// answers may be lost with it (they were held in memory until the next
// flush), and no more.
func (l *load) killed(rep *replica, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, a := range l.recent {
		if a.replica == rep.name && now.Sub(a.at) <= window {
			l.allowance[a.tenant]++
		}
	}
}

// snapshot returns a copy of what the checks need; the server errors are
// those since the last snapshot, so each fault answers for its own.
func (l *load) snapshot() (answered, allowance map[string]int64, noAnswer int64, orders map[string]string, serverErr []string, statuses map[int]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clone := func(m map[string]int64) map[string]int64 {
		out := make(map[string]int64, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	orders = make(map[string]string, len(l.orders))
	for k, v := range l.orders {
		orders[k] = v
	}
	statuses = make(map[int]int, len(l.statuses))
	for k, v := range l.statuses {
		statuses[k] = v
	}
	serverErr = l.serverErr
	l.serverErr = nil
	return clone(l.answered), clone(l.allowance), l.noAnswer, orders, serverErr, statuses
}
