package audit

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// PlatformEvents is what the operator's audit route needs of the platform
// audit log.
type PlatformEvents interface {
	List(ctx context.Context, before int64, limit int) ([]Event, error)
}

// PlatformHandler serves GET /admin/v1/audit-events, the platform audit log.
type PlatformHandler struct {
	log PlatformEvents
}

// NewPlatformHandler returns the operator's audit handler.
func NewPlatformHandler(log PlatformEvents) *PlatformHandler { return &PlatformHandler{log: log} }

// AdminRoutes registers the platform audit route on the /admin/v1 router.
func (h *PlatformHandler) AdminRoutes(r *httpx.Router, permission string) {
	r.Handle(http.MethodGet, "/audit-events", permission, httpx.Handle(h.list))
}

// PlatformList is a page of the platform audit log; NextCursor is the seq
// to pass as cursor for the next, older page.
type PlatformList struct {
	Data       []EventResponse `json:"data"`
	NextCursor *string         `json:"next_cursor"`
}

// list serves GET /admin/v1/audit-events?limit=&cursor=, newest first.
func (h *PlatformHandler) list(c *gin.Context) error {
	var f fault.Fields
	limit, before := httpx.Limit(c, &f), int64(0)
	if s := c.Query("cursor"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			f.Add("cursor", "is not a cursor returned by this API")
		}
		before = n
	}
	if err := f.Err(); err != nil {
		return err
	}
	events, err := h.log.List(c.Request.Context(), before, limit+1)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, PlatformList(httpx.RenderList(events, limit, ToResponse, func(e Event) string {
		return strconv.FormatInt(e.Seq, 10)
	})))
	return nil
}
