package audit

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// Permission is what GET /v1/audit-events requires.
const Permission = "audit:read"

// Handler serves GET /v1/audit-events.
type Handler struct {
	a       *Auditor
	cursors *events.Cursors
}

// NewHandler returns the audit trail's handler. Its page cursors are
// sealed by cursors, as the event log's are: a row's position is drawn from
// the sequence every tenant shares, so in the clear it would count other
// tenants' activity.
func NewHandler(a *Auditor, cursors *events.Cursors) *Handler {
	return &Handler{a: a, cursors: cursors}
}

// Routes registers GET /audit-events on the /v1 router.
func (h *Handler) Routes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/audit-events", Permission, httpx.Handle(h.list))
}

// EventResponse is an audit event as clients see it. Hashes are hex; the
// summary is in the canonical form the hash covers. An event not sealed
// into the chain yet (it committed moments ago) has sealed false and seq,
// prev_hash and hash null.
type EventResponse struct {
	ID         uuid.UUID       `json:"id"`
	Sealed     bool            `json:"sealed"`
	Seq        *int64          `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	Actor      string          `json:"actor"`
	Action     string          `json:"action"`
	Resource   string          `json:"resource"`
	Status     int             `json:"status"`
	Summary    json.RawMessage `json:"summary"`
	RequestID  string          `json:"request_id"`
	IP         *string         `json:"ip"`
	UserAgent  string          `json:"user_agent"`
	PrevHash   *string         `json:"prev_hash"`
	Hash       *string         `json:"hash"`
}

// ToResponse converts an event for the API.
func ToResponse(e Event) EventResponse {
	summary := e.Summary
	if canon, err := recanonical(e.Summary); err == nil {
		summary = canon
	}
	r := EventResponse{
		ID: e.ID, Sealed: e.Sealed(), OccurredAt: e.OccurredAt.UTC(), Actor: e.Actor, Action: e.Action,
		Resource: e.Resource, Status: e.Status, Summary: summary, RequestID: e.RequestID, UserAgent: e.UserAgent,
	}
	if e.Sealed() {
		seq, prev, hash := e.Seq, hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash)
		r.Seq, r.PrevHash, r.Hash = &seq, &prev, &hash
	}
	if e.IP != "" {
		ip := e.IP
		r.IP = &ip
	}
	return r
}

// list serves GET /v1/audit-events?actor=&action=&resource=&since=&until=
// &limit=&cursor=, newest first (by position: sealed or not, in the order
// the chain has or will have them). action and resource match exactly, or as
// a prefix when they end in "*"; since is inclusive, until exclusive (RFC
// 3339).
func (h *Handler) list(c *gin.Context) error {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	f, err := parseFilter(c, func(v string) (int64, error) { return h.cursors.Open(tenantID, v) })
	if err != nil {
		return err
	}
	evs, err := h.a.List(c.Request.Context(), tenantID, f)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, httpx.RenderList(evs, f.Limit, ToResponse, func(e Event) string {
		return h.cursors.Seal(tenantID, e.Position)
	}))
	return nil
}

// parseFilter reads and validates the list's query; every malformed
// parameter is named in one 422.
func parseFilter(c *gin.Context, openCursor func(string) (int64, error)) (Filter, error) {
	f := Filter{Limit: 50}
	var fields fault.Fields
	text := func(name string, max int) (string, bool) {
		v, present := c.GetQuery(name)
		if !present {
			return "", false
		}
		if v == "" || len(v) > 4*max || !utf8.ValidString(v) || utf8.RuneCountInString(v) > max {
			fields.Add(name, "must be 1 to "+strconv.Itoa(max)+" characters")
			return "", false
		}
		return v, true
	}
	if v, ok := text("actor", maxActor); ok {
		f.Actor = v
	}
	if v, ok := text("action", maxAction); ok {
		f.Action, f.ActionPrefix = strings.CutSuffix(v, "*")
	}
	if v, ok := text("resource", maxResource); ok {
		f.Resource, f.ResourcePrefix = strings.CutSuffix(v, "*")
	}
	instant := func(name string) time.Time {
		v, present := c.GetQuery(name)
		if !present {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			fields.Add(name, "must be an RFC 3339 timestamp, e.g. 2026-01-02T15:04:05Z")
			return time.Time{}
		}
		return t
	}
	f.Since, f.Until = instant("since"), instant("until")
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		fields.Add("until", "must be after since")
	}
	if v, present := c.GetQuery("limit"); present {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			fields.Add("limit", "must be an integer from 1 to 200")
		} else {
			f.Limit = n
		}
	}
	if v, present := c.GetQuery("cursor"); present {
		pos, err := openCursor(v)
		if err != nil || pos <= 0 {
			fields.Add("cursor", "is not a cursor returned by this API")
		}
		f.BeforePosition = pos
	}
	return f, fields.Err()
}
