package events

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// DeadLetters is what the operator's dead-letter routes need of the
// dispatcher.
type DeadLetters interface {
	DeadLetterPage(ctx context.Context, f DeadLetterFilter) ([]DeadLetterSummary, error)
	DeadLetter(ctx context.Context, id uuid.UUID) (DeadLetter, error)
	ReplayDeadLetter(ctx context.Context, id uuid.UUID) (uuid.UUID, error)
	DiscardDeadLetter(ctx context.Context, id uuid.UUID) (DeadLetter, error)
}

// AdminHandler serves the operator's dead-letter routes under /admin/v1.
type AdminHandler struct {
	dl DeadLetters
}

// NewAdminHandler returns the operator's dead-letter handler.
func NewAdminHandler(dl DeadLetters) *AdminHandler { return &AdminHandler{dl: dl} }

// AdminRoutes registers the dead-letter routes on the /admin/v1 router.
func (h *AdminHandler) AdminRoutes(r *httpx.Router, permission string) {
	r.Collection("/dead-letters", permission, permission, httpx.Collection{List: h.list, Get: h.get, Delete: h.discard})
	r.Handle(http.MethodPost, "/dead-letters/:id/replay", permission, httpx.Handle(h.replay))
}

func (h *AdminHandler) list(c *gin.Context) error {
	page, err := httpx.ParsePage(c)
	if err != nil {
		return err
	}
	f := DeadLetterFilter{Subscriber: c.Query("subscriber"), After: page.After, Limit: page.Limit + 1}
	if s := c.Query("tenant_id"); s != "" {
		if f.TenantID, err = uuid.Parse(s); err != nil {
			return fault.Invalid(fault.Field("tenant_id", "must be a UUID"))
		}
	}
	if len(f.Subscriber) > 100 {
		return fault.Invalid(fault.Field("subscriber", "must be at most 100 characters"))
	}
	rows, err := h.dl.DeadLetterPage(c.Request.Context(), f)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, httpx.NewList(rows, page.Limit, func(d DeadLetterSummary) uuid.UUID { return d.ID }))
	return nil
}

// deadLetters is how the operator's routes show a dead letter: as it is,
// whichever tenant's.
var deadLetters = httpx.Resource[DeadLetter, DeadLetter]{
	Render: func(d DeadLetter) DeadLetter { return d },
	ID:     func(d DeadLetter) uuid.UUID { return d.ID },
	Tenant: httpx.NoTenant,
}

func (h *AdminHandler) get(c *gin.Context) error {
	return deadLetters.Get(c, func(ctx context.Context, _, id uuid.UUID) (DeadLetter, error) {
		return h.dl.DeadLetter(ctx, id)
	})
}

func (h *AdminHandler) replay(c *gin.Context) error {
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		return err
	}
	tenantID, err := h.dl.ReplayDeadLetter(c.Request.Context(), id)
	if errors.Is(err, ErrHandlerFailed) {
		// The operator's to see: the dead letter stays, its attempts and
		// error updated.
		return fault.New(fault.Conflict, "the subscriber failed on the event again (the dead letter stays): "+err.Error())
	}
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, gin.H{"id": id, "tenant_id": tenantID, "status": "replayed"})
	return nil
}

func (h *AdminHandler) discard(c *gin.Context) error {
	return deadLetters.Delete(c, func(ctx context.Context, _, id uuid.UUID) error {
		_, err := h.dl.DiscardDeadLetter(ctx, id)
		return err
	})
}
