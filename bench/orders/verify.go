package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/devenv"
)

// tally is what placements have written so far, counted as the superuser,
// past row-level security.
type tally struct {
	orders, events, reservations, audits int64
}

// inspector reads the bench database as the superuser, to check that each
// side really did what it was timed for.
type inspector struct {
	conn *pgx.Conn
}

func newInspector(ctx context.Context, adminURL, dbName string) (*inspector, error) {
	conn, err := pgx.Connect(ctx, devenv.DatabaseURL(adminURL, dbName))
	if err != nil {
		return nil, fmt.Errorf("inspect: connect: %w", err)
	}
	return &inspector{conn: conn}, nil
}

func (in *inspector) close(ctx context.Context) error { return in.conn.Close(ctx) }

func (in *inspector) tally(ctx context.Context) (t tally, err error) {
	err = in.conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM order_views), (SELECT count(*) FROM events),
		(SELECT count(*) FROM reservations), (SELECT count(*) FROM audit_events)`).Scan(&t.orders, &t.events, &t.reservations, &t.audits)
	if err != nil {
		return tally{}, fmt.Errorf("inspect: count: %w", err)
	}
	return t, nil
}

// checkWrites compares what a side wrote between two tallies with the
// placements it reported: one order view, two events and one audit entry
// per placement, one or two reservations.
func checkWrites(side string, before, after tally, placements int64) error {
	orders, events, res := after.orders-before.orders, after.events-before.events, after.reservations-before.reservations
	audits := after.audits - before.audits
	if orders != placements || events != 2*placements || audits != placements || res < placements || res > 2*placements {
		return fmt.Errorf("%s reported %d placements but wrote %d order views, %d events, %d audit entries, %d reservations",
			side, placements, orders, events, audits, res)
	}
	return nil
}

// shape is the set of JSON keys of what one placement wrote.
type shape struct {
	placed, reserved, metadata, item, audit []string
}

// shapeOf reads the JSON keys of the first placement whose events have a
// position above after.
func (in *inspector) shapeOf(ctx context.Context, after int64) (s shape, err error) {
	keys := func(q string, dst *[]string) {
		if err != nil {
			return
		}
		var ks []string
		if err = in.conn.QueryRow(ctx, q, after).Scan(&ks); err == nil {
			slices.Sort(ks)
			*dst = ks
		}
	}
	const first = `(SELECT stream_id FROM events WHERE position > $1 ORDER BY position LIMIT 1)`
	keys(`SELECT array_agg(k) FROM events e, jsonb_object_keys(e.data) k
		WHERE e.stream_id = `+first+` AND e.type = 'order.placed'`, &s.placed)
	keys(`SELECT array_agg(k) FROM events e, jsonb_object_keys(e.data) k
		WHERE e.stream_id = `+first+` AND e.type = 'stock.reserved'`, &s.reserved)
	keys(`SELECT array_agg(k) FROM events e, jsonb_object_keys(e.metadata) k
		WHERE e.stream_id = `+first+` AND e.type = 'order.placed'`, &s.metadata)
	keys(`SELECT array_agg(k) FROM order_views o, jsonb_object_keys(o.items -> 0) k
		WHERE 'order-' || o.id = `+first, &s.item)
	keys(`SELECT array_agg(k) FROM audit_events a, jsonb_object_keys(a.summary) k
		WHERE a.request_id = (SELECT metadata ->> 'request_id' FROM events WHERE position > $1 ORDER BY position LIMIT 1)`, &s.audit)
	if err != nil {
		return shape{}, fmt.Errorf("inspect: shape: %w", err)
	}
	return s, nil
}

func (in *inspector) lastPosition(ctx context.Context) (p int64, err error) {
	err = in.conn.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM events").Scan(&p)
	return p, err
}

// undispatched is how many positions of the event log the slowest
// subscriber of the event dispatcher has yet to pass.
func (in *inspector) undispatched(ctx context.Context) (n int64, err error) {
	err = in.conn.QueryRow(ctx, `SELECT greatest(coalesce((SELECT max(position) FROM events), 0)
		- coalesce((SELECT min(position) FROM event_checkpoints), 0), 0)`).Scan(&n)
	return n, err
}

// unsealed is how many audit rows await the audit sealer.
func (in *inspector) unsealed(ctx context.Context) (n int64, err error) {
	err = in.conn.QueryRow(ctx, "SELECT count(*) FROM audit_events WHERE hash IS NULL").Scan(&n)
	return n, err
}

// skipEvents moves the subscribers that had dispatched everything up to
// from past to: the events pgbench appended are not the service's work,
// and the next tenantd must not spend its rounds on them.
func (in *inspector) skipEvents(ctx context.Context, from, to int64) error {
	_, err := in.conn.Exec(ctx, `UPDATE event_checkpoints SET position = $2, updated_at = now()
		WHERE position >= $1 AND position < $2`, from, to)
	return err
}

// sameShape reports a difference between the JSON the service wrote and
// the JSON place_order.sql wrote, which means the script fell out of step.
func sameShape(service, script shape) error {
	for _, f := range []struct {
		what     string
		svc, scr []string
	}{
		{"order.placed data", service.placed, script.placed},
		{"stock.reserved data", service.reserved, script.reserved},
		{"event metadata", service.metadata, script.metadata},
		{"order_views item", service.item, script.item},
		{"audit summary", service.audit, script.audit},
	} {
		if len(f.svc) == 0 {
			return fmt.Errorf("found no %s of the service's first placement", f.what)
		}
		if !slices.Equal(f.svc, f.scr) {
			return fmt.Errorf("place_order.sql writes %s with keys %v, the service %v", f.what, f.scr, f.svc)
		}
	}
	return nil
}
