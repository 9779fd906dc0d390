package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// client sends the service's requests over loopback HTTP/1.1 with one
// kept-alive connection per client goroutine.
type client struct {
	base string
	http *http.Client
	pop  *population
}

func newClient(base string, clients int, pop *population) *client {
	tr := &http.Transport{
		MaxIdleConns:        clients,
		MaxIdleConnsPerHost: clients,
		MaxConnsPerHost:     clients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &client{base: base, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}, pop: pop}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// placed is an order the load created, to read it back.
type placed struct {
	tenant int
	id     string
}

// placements collects the orders of the placing phase.
type placements struct {
	mu  sync.Mutex
	all []placed
}

func (p *placements) add(o placed) {
	p.mu.Lock()
	p.all = append(p.all, o)
	p.mu.Unlock()
}

// spread is the usual placement load: call seq goes to the tenants in
// turn, each tenant's orders numbered by how often its turn came.
func (c *client) spread(seq int64) (tenant int, round int64) {
	n := int64(len(c.pop.tenants))
	return int(seq % n), seq / n
}

// place sends the order numbered round of tenant ti: one or two items
// (alternately), quantity 1, as POST /v1/orders.
func (c *client) place(ctx context.Context, ti int, round int64, out *placements) error {
	t := c.pop.tenants[ti]
	a, b := t.pair(round)
	body := make([]byte, 0, 192)
	body = fmt.Appendf(body, `{"customer_id":"cust-%d","items":[{"product_id":"%s","quantity":1}`, round, a.ID)
	if round%2 == 1 {
		body = fmt.Appendf(body, `,{"product_id":"%s","quantity":1}`, b.ID)
	}
	body = append(body, "]}"...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/orders", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	req.Header.Set("Content-Type", "application/json")
	a2, err := c.send(req, http.StatusCreated, false)
	if err != nil {
		return err
	}
	id, ok := strings.CutPrefix(a2.location, "/v1/orders/")
	if !ok {
		return fmt.Errorf("POST /v1/orders: Location %q is not an order", a2.location)
	}
	if out != nil {
		out.add(placed{tenant: ti, id: id})
	}
	return nil
}

// get reads order seq of the placed ones, in turn, as GET /v1/orders/{id}.
func (c *client) get(ctx context.Context, seq int64, orders []placed) error {
	o := orders[seq%int64(len(orders))]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/orders/"+o.id, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.pop.tenants[o.tenant].key)
	_, err = c.send(req, http.StatusOK, false)
	return err
}

// answer is what send kept of a response.
type answer struct {
	status   int
	location string
	body     []byte // when asked to keep it
}

// send sends req and reads the whole answer (so the connection is reused).
// A status other than want (any 2xx when want is 0) is an error, which
// carries the start of the body; the answer's status is set whenever there
// was one.
func (c *client) send(req *http.Request, want int, keep bool) (answer, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, location: resp.Header.Get("Location")}
	if resp.StatusCode != want && (want != 0 || resp.StatusCode/100 != 2) {
		msg, rerr := io.ReadAll(io.LimitReader(resp.Body, 512))
		if rerr != nil {
			msg = []byte("(body unreadable: " + rerr.Error() + ")")
		}
		return a, fmt.Errorf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want, msg)
	}
	if keep {
		a.body, err = io.ReadAll(resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return a, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL.Path, err)
	}
	return a, nil
}
