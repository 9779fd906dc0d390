package billing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// gaugeSample is the active_products value this replica last wrote for a
// tenant, and for which hour.
type gaugeSample struct {
	hour  int64
	value int64
}

// SampleActiveProducts records every tenant's number of products as the
// active_products gauge of the current hour (the hour keeps its highest
// sample). It reads the counts across tenants through the SECURITY DEFINER
// function billing_active_products and writes each tenant's sample in that
// tenant's own transaction, skipping samples this replica already wrote
// for the hour. Run calls it every minute; replicas may sample at once.
func (c *Counter) SampleActiveProducts(ctx context.Context) error {
	var rows []struct {
		TenantID uuid.UUID
		Products int64
	}
	if err := c.d.Worker().Unscoped(ctx).Raw("SELECT tenant_id, products FROM billing_active_products()").Scan(&rows).Error; err != nil {
		return fmt.Errorf("count active products: %w", err)
	}
	hour := c.now().UTC().Truncate(time.Hour)
	c.mu.Lock()
	for id, old := range c.sampled {
		if old.hour != hour.Unix()/3600 {
			delete(c.sampled, id)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, r := range rows {
		s := gaugeSample{hour: hour.Unix() / 3600, value: r.Products}
		c.mu.Lock()
		last, ok := c.sampled[r.TenantID]
		c.mu.Unlock()
		if ok && last.hour == s.hour && last.value >= s.value {
			continue
		}
		err := c.d.WithTenant(ctx, r.TenantID, func(tx *gorm.DB) error {
			return addCounts(tx, r.TenantID, []count{{meter: MeterActiveProducts, hour: hour, n: r.Products}})
		})
		if err != nil {
			if !db.IsForeignKeyViolation(err) { // deleted meanwhile
				errs = append(errs, fmt.Errorf("record active products of %s: %w", r.TenantID, err))
			}
			continue
		}
		c.mu.Lock()
		c.sampled[r.TenantID] = s
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}
