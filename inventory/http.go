package inventory

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// Permissions the product routes require.
const (
	permRead   = "products:read"
	permWrite  = "products:write"
	permAdjust = "inventory:adjust"
)

// Handler serves the product routes.
type Handler struct {
	svc *Service
}

// NewHandler returns a Handler on svc.
func NewHandler(svc *Service) *Handler {
	return &Handler{svc: svc}
}

// Routes registers the product routes on r, which is mounted on /v1.
func (h *Handler) Routes(r *httpx.Router) {
	r.Collection("/products", permRead, permWrite, httpx.Collection{
		List: h.list, Create: h.create, Get: h.get, Update: h.update, Delete: h.delete,
	})
	r.Handle(http.MethodPost, "/products/:id/stock", permAdjust, httpx.Handle(h.adjustStock))
	r.Handle(http.MethodGet, "/products/:id/reservations", permRead, httpx.Handle(h.reservations))
}

// productJSON is a product as the API shows it.
type productJSON struct {
	ID        uuid.UUID `json:"id"`
	SKU       string    `json:"sku"`
	Name      string    `json:"name"`
	Price     int64     `json:"price"`
	Currency  string    `json:"currency"`
	Stock     int64     `json:"stock"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// products is how the API shows products.
var products = httpx.Resource[Product, productJSON]{
	Render:  toJSON,
	ID:      func(p productJSON) uuid.UUID { return p.ID },
	Version: func(p Product) int64 { return int64(p.Version) },
}

func toJSON(p Product) productJSON {
	return productJSON{
		ID:        p.ID,
		SKU:       p.SKU,
		Name:      p.Name,
		Price:     p.Price,
		Currency:  p.Currency,
		Stock:     p.Stock,
		Reserved:  p.Reserved,
		Available: p.Available(),
		Version:   p.Version,
		CreatedAt: p.CreatedAt,
		UpdatedAt: p.UpdatedAt,
	}
}

// createRequest is the body of POST /products. Pointers tell a missing
// field from a zero one.
type createRequest struct {
	SKU      *string `json:"sku"`
	Name     *string `json:"name"`
	Price    *int64  `json:"price"`
	Currency *string `json:"currency"`
	Stock    *int64  `json:"stock"`
}

// toModel returns the new product, or a validation error naming every
// missing field together with the problems of the fields that were given.
func (r createRequest) toModel() (NewProduct, error) {
	var n NewProduct
	var missing fault.Fields
	httpx.Required(&missing, "sku", r.SKU, &n.SKU)
	httpx.Required(&missing, "name", r.Name, &n.Name)
	httpx.Required(&missing, "price", r.Price, &n.Price)
	httpx.Required(&missing, "currency", r.Currency, &n.Currency)
	if r.Stock != nil {
		n.Stock = *r.Stock
	}
	if len(missing) == 0 {
		return n, nil // the service validates the values
	}
	httpx.AddInvalid(&missing, n.Validate())
	return n, missing.Err()
}

// updateRequest is the body of PATCH /products/:id.
type updateRequest struct {
	SKU      *string `json:"sku"`
	Name     *string `json:"name"`
	Price    *int64  `json:"price"`
	Currency *string `json:"currency"`
}

// toModel returns the change, checked and its name trimmed
// (ProductChange.Validate).
func (r updateRequest) toModel() (ProductChange, error) {
	ch := ProductChange{SKU: r.SKU, Name: r.Name, Price: r.Price, Currency: r.Currency}
	err := ch.Validate()
	return ch, err
}

// adjustRequest is the body of POST /products/:id/stock.
type adjustRequest struct {
	Delta  *int64  `json:"delta"`
	Reason *string `json:"reason"`
}

func (r adjustRequest) toModel() (StockAdjustment, error) {
	var a StockAdjustment
	var f fault.Fields
	httpx.Required(&f, "delta", r.Delta, &a.Delta)
	httpx.Required(&f, "reason", r.Reason, &a.Reason)
	return a, f.Err()
}

func (h *Handler) create(c *gin.Context) error {
	return httpx.Create(c, products, createRequest.toModel, h.svc.Create)
}

func (h *Handler) list(c *gin.Context) error {
	return products.List(c, func(ctx context.Context, tenantID, after uuid.UUID, limit int) ([]Product, error) {
		q := ListQuery{After: after, Limit: limit}
		if sku, given := c.GetQuery("sku"); given {
			if !ValidSKU(sku) {
				return nil, fault.Invalid(fault.Field("sku", "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"))
			}
			q.SKU = sku
		}
		return h.svc.List(ctx, tenantID, q)
	})
}

func (h *Handler) get(c *gin.Context) error {
	return products.Get(c, h.svc.Get)
}

// update applies a PATCH; an If-Match header guards it with the version
// it names (matchedVersion).
func (h *Handler) update(c *gin.Context) error {
	return httpx.Update(c, products, updateRequest.toModel,
		func(ctx context.Context, tenantID, id uuid.UUID, ch ProductChange) (Product, error) {
			if header, given := ifMatchHeader(c); given {
				v, err := h.matchedVersion(c, tenantID, id, header)
				if err != nil {
					return Product{}, err
				}
				ch.IfVersion = v
			}
			return h.svc.Update(ctx, tenantID, id, ch)
		})
}

func (h *Handler) delete(c *gin.Context) error {
	return httpx.DeleteByID(c, h.svc.Delete)
}

func (h *Handler) adjustStock(c *gin.Context) error {
	return httpx.Update(c, products, adjustRequest.toModel, h.svc.AdjustStock)
}

// ifMatchHeader returns the If-Match header, and whether the request sent one.
func ifMatchHeader(c *gin.Context) (string, bool) {
	values := c.Request.Header.Values("If-Match")
	if len(values) == 0 {
		return "", false
	}
	return strings.Join(values, ","), true
}

// matchedVersion turns an If-Match header into the version the update must
// find: nil for "*" (any current version), or the one version among the
// header's strong tags that is current. A header naming no current version
// fails with ErrVersionMismatch; weak tags never match (RFC 9110 strong
// comparison).
func (h *Handler) matchedVersion(c *gin.Context, tenantID, id uuid.UUID, header string) (*int, error) {
	if strings.TrimSpace(header) == "*" {
		return nil, nil
	}
	var versions []int
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if len(t) < 3 || t[0] != '"' || t[len(t)-1] != '"' {
			continue
		}
		if v, err := strconv.Atoi(t[1 : len(t)-1]); err == nil && v > 0 && httpx.VersionETag(int64(v)) == t {
			versions = append(versions, v)
		}
	}
	switch len(versions) {
	case 0:
		return nil, ErrVersionMismatch
	case 1:
		return &versions[0], nil
	}
	// Several tags: the one that is current, if any, becomes the guard, so
	// a change racing this request still fails the update.
	p, err := h.svc.Get(c.Request.Context(), tenantID, id)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(versions, p.Version) {
		return nil, ErrVersionMismatch
	}
	return &p.Version, nil
}
