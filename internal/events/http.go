package events

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// LogHandler serves a tenant's event log: GET /v1/events and the SSE stream.
type LogHandler struct {
	feed    *Feed
	cursors *Cursors
	creds   Credentials
	limit   *StreamLimit
	// Poll is how often the stream looks for new events.
	Poll time.Duration
	// Recheck is how often an open stream verifies its credential afresh
	// (revoked? suspended? still holding events:read?); default 2 s.
	Recheck time.Duration
	// Stop, when closed, ends every open stream (the server is shutting
	// down: streams would otherwise hold it until its timeout).
	Stop <-chan struct{}
}

// NewLogHandler returns the event log handlers: positions are shown to
// tenants only as cursors, open streams are re-checked with creds and
// counted against their tenant's cap by limit.
func NewLogHandler(feed *Feed, cursors *Cursors, creds Credentials, limit *StreamLimit) *LogHandler {
	return &LogHandler{feed: feed, cursors: cursors, creds: creds, limit: limit,
		Poll: 500 * time.Millisecond, Recheck: 2 * time.Second}
}

// Routes registers the event routes on the /v1 router.
func (h *LogHandler) Routes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/events", "events:read", httpx.Handle(h.list))
	r.Handle(http.MethodGet, "/events/stream", "events:read", httpx.Handle(h.stream))
}

// Response is an event as clients see it: its global position only as the
// tenant's opaque cursor (see Cursors).
type Response struct {
	ID        uuid.UUID       `json:"id"`
	StreamID  string          `json:"stream_id"`
	Version   int64           `json:"version"`
	Type      string          `json:"type"`
	Cursor    string          `json:"cursor"`
	Data      json.RawMessage `json:"data"`
	Metadata  Metadata        `json:"metadata"`
	CreatedAt time.Time       `json:"created_at"`
}

// ToResponse converts an event for the API, with the cursor that reads on
// after it.
func ToResponse(e Event, cursor string) Response {
	return Response{ID: e.ID, StreamID: e.StreamID, Version: e.Version, Type: e.Type, Cursor: cursor,
		Data: e.Data, Metadata: e.Metadata, CreatedAt: e.CreatedAt}
}

// page is GET /v1/events: the events after a cursor, and the cursor to
// ask from next.
type page struct {
	Data       []Response `json:"data"`
	NextCursor *string    `json:"next_cursor"`
}

// query is the parsed after/cursor, limit and type filters.
type query struct {
	after int64
	limit int
	types []string
}

// parseQuery reads the query; the cursor (after, else cursor, else the
// Last-Event-ID header) must be one this tenant was given, or it is 422
// naming where it came from.
func (h *LogHandler) parseQuery(c *gin.Context, tenantID uuid.UUID) (query, error) {
	var q query
	var f fault.Fields
	name, after := "after", c.Query("after")
	if after == "" {
		name, after = "cursor", c.Query("cursor")
	}
	if after == "" {
		name, after = "Last-Event-ID", c.GetHeader("Last-Event-ID")
	}
	if after != "" {
		pos, err := h.cursors.Open(tenantID, after)
		if err != nil {
			f.Add(name, "must be a cursor of this tenant's event log, as given (next_cursor, an event's cursor or an SSE id)")
		}
		q.after = pos
	}
	q.limit = httpx.Limit(c, &f)
	if s := c.Query("type"); s != "" {
		q.types = strings.Split(s, ",")
	}
	return q, f.Err()
}

func (h *LogHandler) list(c *gin.Context) error {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	q, err := h.parseQuery(c, tenantID)
	if err != nil {
		return err
	}
	es, err := h.feed.Read(c.Request.Context(), tenantID, q.after, q.limit, q.types)
	if err != nil {
		return err
	}
	p := page{Data: make([]Response, len(es))}
	for i, e := range es {
		p.Data[i] = ToResponse(e, h.cursors.Seal(tenantID, e.Position))
	}
	if len(es) == q.limit {
		p.NextCursor = &p.Data[len(es)-1].Cursor
	}
	c.JSON(http.StatusOK, p)
	return nil
}

// stream sends the tenant's events as Server-Sent Events (id = the
// event's cursor, so a reconnecting client resumes with Last-Event-ID),
// with a comment every 15 s to keep proxies from closing an idle stream.
// With follow=false it ends once it has sent what is there.
//
// A stream counts against its tenant's cap of open streams (429 past it),
// and verifies its credential afresh every Recheck: once the key is
// revoked or expired, the member removed, the tenant suspended or the
// principal's roles no longer grant events:read, it sends a final
// stream_closed message saying why and ends.
func (h *LogHandler) stream(c *gin.Context) error {
	principal, err := httpx.TenantPrincipal(c)
	if err != nil {
		return err
	}
	ctx, tenantID := c.Request.Context(), principal.TenantID
	q, err := h.parseQuery(c, tenantID)
	if err != nil {
		return err
	}
	slot, err := h.limit.acquire(ctx, tenantID, principal.Plan)
	if err != nil {
		if fault.CodeOf(err) == fault.RateLimited {
			c.Header("Retry-After", strconv.Itoa(int(streamRetryAfter/time.Second)))
		}
		return err
	}
	defer slot.release(ctx)
	credential := bearer(c)
	follow := c.Query("follow") != "false"
	rc := http.NewResponseController(c.Writer)
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-store")
	c.Header("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	after := q.after
	poll := time.NewTicker(h.Poll)
	defer poll.Stop()
	lastWrite := time.Now()
	recheckAt := time.Now().Add(h.Recheck)
	for {
		// Before sending anything more: may the client still read?
		if !time.Now().Before(recheckAt) {
			if err := stillAllowed(ctx, h.creds, principal, credential); err != nil {
				if ctx.Err() == nil {
					h.closeStream(c, rc, err)
				}
				return nil
			}
			recheckAt = time.Now().Add(h.Recheck)
		}
		slot.renew(ctx)
		es, err := h.feed.Read(ctx, tenantID, after, 200, q.types)
		if err != nil {
			if ctx.Err() == nil {
				c.Error(err) //nolint:errcheck // recorded for the access log
			}
			return nil
		}
		// The server's write timeout would end the stream: extend it.
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil && !strings.Contains(err.Error(), "not supported") {
			return nil
		}
		for _, e := range es {
			cursor := h.cursors.Seal(tenantID, e.Position)
			data, err := json.Marshal(ToResponse(e, cursor))
			if err != nil {
				return nil
			}
			if _, err := fmt.Fprintf(c.Writer, "id: %s\nevent: %s\ndata: %s\n\n", cursor, e.Type, data); err != nil {
				return nil
			}
			after, lastWrite = e.Position, time.Now()
		}
		if len(es) == 0 && time.Since(lastWrite) > 15*time.Second {
			if _, err := fmt.Fprint(c.Writer, ": keep-alive\n\n"); err != nil {
				return nil
			}
			lastWrite = time.Now()
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		if len(es) == 200 {
			continue
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.Stop:
			h.closeStream(c, rc, errShuttingDown)
			return nil
		case <-poll.C:
		}
	}
}

// closedEvent is the data of the stream_closed message that ends a stream:
// the problem code and detail of why.
type closedEvent struct {
	Code   fault.Code `json:"code"`
	Detail string     `json:"detail"`
}

// closeStream sends the final stream_closed message (no id, so the
// client's Last-Event-ID stays its last event's cursor).
func (h *LogHandler) closeStream(c *gin.Context, rc *http.ResponseController, why error) {
	p := httpx.ProblemFor(why)
	if p.Status >= http.StatusInternalServerError {
		c.Error(why) //nolint:errcheck // recorded for the access log
	}
	data, err := json.Marshal(closedEvent{Code: p.Code, Detail: p.Detail})
	if err == nil {
		_, err = fmt.Fprintf(c.Writer, "event: stream_closed\ndata: %s\n\n", data)
	}
	if err == nil {
		err = rc.Flush()
	}
	if err != nil {
		slog.DebugContext(c.Request.Context(), "events: a stream ended without its stream_closed message", "err", err)
	}
}
