package webhooks

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/page"
)

// endpointRow is a webhook_endpoints row.
type endpointRow struct {
	TenantID          uuid.UUID
	ID                uuid.UUID
	URL               string
	Description       string
	EventTypes        db.TextArray
	Status            string
	DisabledReason    sql.NullString
	Secret            []byte
	PreviousSecret    []byte
	PreviousExpiresAt sql.NullTime
	FailingSince      sql.NullTime
	Version           int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

func (r endpointRow) toModel() Endpoint {
	return Endpoint{ID: r.ID, TenantID: r.TenantID, URL: r.URL, Description: r.Description,
		EventTypes: []string(r.EventTypes), Status: r.Status, DisabledReason: nullString(r.DisabledReason),
		PreviousExpiresAt: r.PreviousExpiresAt.Time.UTC(), FailingSince: r.FailingSince.Time.UTC(), Version: r.Version,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

const endpointColumns = `tenant_id, id, url, description, event_types, status, disabled_reason, secret,
	previous_secret, previous_expires_at, failing_since, version, created_at, updated_at`

func insertEndpoint(tx *gorm.DB, r endpointRow) error {
	return tx.Exec(`INSERT INTO webhook_endpoints (tenant_id, id, url, description, event_types, status, secret, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 'enabled', ?, ?, ?)`,
		r.TenantID, r.ID, r.URL, r.Description, r.EventTypes, r.Secret, r.CreatedAt, r.UpdatedAt).Error
}

// enabledEndpoint reads one endpoint that may be sent to: ErrDisabled when
// it is disabled.
func enabledEndpoint(tx *gorm.DB, tenantID, id uuid.UUID) (endpointRow, error) {
	r, err := getEndpoint(tx, tenantID, id, false)
	if err == nil && r.Status != StatusEnabled {
		return endpointRow{}, ErrDisabled
	}
	return r, err
}

// getEndpoint reads one endpoint; lock takes FOR UPDATE.
func getEndpoint(tx *gorm.DB, tenantID, id uuid.UUID, lock bool) (endpointRow, error) {
	q := `SELECT ` + endpointColumns + ` FROM webhook_endpoints WHERE tenant_id = ? AND id = ?`
	if lock {
		q += ` FOR NO KEY UPDATE`
	}
	var rows []endpointRow
	if err := tx.Raw(q, tenantID, id).Scan(&rows).Error; err != nil {
		return endpointRow{}, err
	}
	if len(rows) == 0 {
		return endpointRow{}, ErrNotFound
	}
	return rows[0], nil
}

// listEndpoints reads the page of the tenant's endpoints after the id
// after: up to limit+1 of them (see page.ByID).
func listEndpoints(tx *gorm.DB, tenantID, after uuid.UUID, limit int) ([]Endpoint, error) {
	q := tx.Table("webhook_endpoints").Select(endpointColumns).Where("tenant_id = ?", tenantID)
	return page.Find(q, after, limit, func(r endpointRow) (Endpoint, error) { return r.toModel(), nil })
}

// enabledEndpoints lists the tenant's enabled endpoints, for the event
// subscriber to match types against.
func enabledEndpoints(tx *gorm.DB, tenantID uuid.UUID) ([]endpointRow, error) {
	var rows []endpointRow
	err := tx.Raw(`SELECT `+endpointColumns+` FROM webhook_endpoints
		WHERE tenant_id = ? AND status = 'enabled' ORDER BY id`, tenantID).Scan(&rows).Error
	return rows, err
}

func updateEndpoint(tx *gorm.DB, r endpointRow) error {
	return tx.Exec(`UPDATE webhook_endpoints SET url = ?, description = ?, event_types = ?, status = ?,
		disabled_reason = ?, secret = ?, previous_secret = ?, previous_expires_at = ?, failing_since = ?,
		version = version + 1, updated_at = ?
		WHERE tenant_id = ? AND id = ?`,
		r.URL, r.Description, r.EventTypes, r.Status, r.DisabledReason, r.Secret, r.PreviousSecret,
		r.PreviousExpiresAt, r.FailingSince, r.UpdatedAt, r.TenantID, r.ID).Error
}

func deleteEndpoint(tx *gorm.DB, tenantID, id uuid.UUID) error {
	res := tx.Exec(`DELETE FROM webhook_endpoints WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// deliveryRow is a webhook_deliveries row.
type deliveryRow struct {
	TenantID       uuid.UUID
	ID             uuid.UUID
	EndpointID     uuid.UUID
	EventID        uuid.UUID
	EventType      string
	Origin         string
	Payload        string
	Status         string
	Attempts       int
	NextAttemptAt  sql.NullTime
	LeaseOwner     sql.NullString
	LeaseExpiresAt sql.NullTime
	LastAttemptAt  sql.NullTime
	LastStatusCode sql.NullInt64
	LastLatencyMs  sql.NullInt64
	LastError      sql.NullString
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

func (r deliveryRow) toModel() Delivery {
	return Delivery{ID: r.ID, TenantID: r.TenantID, EndpointID: r.EndpointID, EventID: r.EventID, EventType: r.EventType,
		Origin: r.Origin, Payload: []byte(r.Payload), Status: r.Status, Attempts: r.Attempts,
		NextAttemptAt: r.NextAttemptAt.Time.UTC(), LastAttemptAt: r.LastAttemptAt.Time.UTC(),
		LastStatusCode: int(r.LastStatusCode.Int64), LastLatency: time.Duration(r.LastLatencyMs.Int64) * time.Millisecond,
		LastError: r.LastError.String, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

const deliveryColumns = `tenant_id, id, endpoint_id, event_id, event_type, origin, payload, status, attempts,
	next_attempt_at, lease_owner, lease_expires_at, last_attempt_at, last_status_code, last_latency_ms, last_error,
	created_at, updated_at`

// insertDeliveries enqueues rows; an event already enqueued for an
// endpoint is skipped. It returns how many were inserted.
func insertDeliveries(tx *gorm.DB, rows []deliveryRow) (int64, error) {
	var n int64
	for _, r := range rows {
		res := tx.Exec(`INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, origin, payload,
			status, next_attempt_at, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)
			ON CONFLICT (tenant_id, endpoint_id, event_id) WHERE origin = 'event' DO NOTHING`,
			r.TenantID, r.ID, r.EndpointID, r.EventID, r.EventType, r.Origin, r.Payload, r.NextAttemptAt, r.CreatedAt, r.CreatedAt)
		if res.Error != nil {
			return n, res.Error
		}
		n += res.RowsAffected
	}
	return n, nil
}

// listDeliveries lists an endpoint's deliveries, newest first (ids are
// UUIDv7): after, when set, is the last id of the previous page.
func listDeliveries(tx *gorm.DB, tenantID, endpointID, after uuid.UUID, limit int) ([]deliveryRow, error) {
	var rows []deliveryRow
	q := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE tenant_id = ? AND endpoint_id = ?`
	args := []any{tenantID, endpointID}
	if after != uuid.Nil {
		q += ` AND id < ?`
		args = append(args, after)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	err := tx.Raw(q, args...).Scan(&rows).Error
	return rows, err
}

// attemptRow is a webhook_attempts row.
type attemptRow struct {
	TenantID    uuid.UUID
	DeliveryID  uuid.UUID
	Attempt     int
	AttemptedAt time.Time
	StatusCode  sql.NullInt64
	LatencyMs   int64
	Error       sql.NullString
	NextRetryAt sql.NullTime
}

func (r attemptRow) toModel() Attempt {
	return Attempt{Number: r.Attempt, At: r.AttemptedAt.UTC(), StatusCode: int(r.StatusCode.Int64),
		Latency: time.Duration(r.LatencyMs) * time.Millisecond, Error: r.Error.String, NextRetryAt: r.NextRetryAt.Time.UTC()}
}

func attemptsOf(tx *gorm.DB, tenantID uuid.UUID, deliveryIDs []uuid.UUID) (map[uuid.UUID][]Attempt, error) {
	out := map[uuid.UUID][]Attempt{}
	if len(deliveryIDs) == 0 {
		return out, nil
	}
	var rows []attemptRow
	err := tx.Raw(`SELECT tenant_id, delivery_id, attempt, attempted_at, status_code, latency_ms, error, next_retry_at
		FROM webhook_attempts WHERE tenant_id = ? AND delivery_id IN ? ORDER BY delivery_id, attempt`,
		tenantID, deliveryIDs).Scan(&rows).Error
	for _, r := range rows {
		out[r.DeliveryID] = append(out[r.DeliveryID], r.toModel())
	}
	return out, err
}

// dueDeliveries finds due deliveries across tenants through the worker
// role's SECURITY DEFINER function (migration 0020).
func dueDeliveries(ctx context.Context, d *db.DB, now time.Time, perEndpoint, limit int) (pairs []tenantDelivery, err error) {
	err = d.Worker().Unscoped(ctx).Raw(`SELECT tenant_id, delivery_id FROM webhook_deliveries_due(?, ?, ?)`,
		now, perEndpoint, limit).Scan(&pairs).Error
	if err != nil {
		return nil, fmt.Errorf("due webhook deliveries: %w", err)
	}
	return pairs, nil
}

type tenantDelivery struct {
	TenantID   uuid.UUID
	DeliveryID uuid.UUID
}

// claimDelivery leases a due delivery to owner until expires, skipping it
// when another worker holds its row or claimed it first. ok is false when
// there was nothing to claim.
func claimDelivery(tx *gorm.DB, tenantID, id uuid.UUID, owner string, now, expires time.Time) (r deliveryRow, ok bool, err error) {
	var rows []deliveryRow
	err = tx.Raw(`WITH c AS (
			SELECT tenant_id, id FROM webhook_deliveries
			WHERE tenant_id = ? AND id = ? AND status = 'pending' AND next_attempt_at <= ?
			  AND (lease_expires_at IS NULL OR lease_expires_at <= ?)
			FOR UPDATE SKIP LOCKED
		)
		UPDATE webhook_deliveries d SET lease_owner = ?, lease_expires_at = ?, updated_at = ?
		FROM c WHERE d.tenant_id = c.tenant_id AND d.id = c.id
		RETURNING `+prefixed("d.", deliveryColumns),
		tenantID, id, now, now, owner, expires, now).Scan(&rows).Error
	if err != nil || len(rows) == 0 {
		return deliveryRow{}, false, err
	}
	return rows[0], true, nil
}

// releaseDelivery ends owner's lease without an attempt (the endpoint's
// circuit breaker was open, or the endpoint is gone), due again at next.
func releaseDelivery(tx *gorm.DB, tenantID, id uuid.UUID, owner string, next, now time.Time) error {
	return tx.Exec(`UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND lease_owner = ? AND status = 'pending'`, next, now, tenantID, id, owner).Error
}

// recordAttempt writes an attempt's outcome if owner still holds the
// lease: the delivery's new state and a row of the log. held is false
// when the lease was lost (expired and claimed again): nothing is written.
func recordAttempt(tx *gorm.DB, r deliveryRow, owner string, a attemptRow) (held bool, err error) {
	res := tx.Exec(`UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,
		lease_owner = NULL, lease_expires_at = NULL, last_attempt_at = ?, last_status_code = ?, last_latency_ms = ?,
		last_error = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND lease_owner = ?`,
		r.Status, r.Attempts, r.NextAttemptAt, a.AttemptedAt, a.StatusCode, a.LatencyMs, a.Error, a.AttemptedAt,
		r.TenantID, r.ID, owner)
	if res.Error != nil || res.RowsAffected == 0 {
		return false, res.Error
	}
	err = tx.Exec(`INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, attempted_at, status_code, latency_ms, error, next_retry_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		a.TenantID, a.DeliveryID, a.Attempt, a.AttemptedAt, a.StatusCode, a.LatencyMs, a.Error, a.NextRetryAt).Error
	return err == nil, err
}

// retryDelivery makes a delivery due now again, whatever its state.
func retryDelivery(tx *gorm.DB, tenantID, endpointID, id uuid.UUID, now time.Time) (deliveryRow, error) {
	var rows []deliveryRow
	err := tx.Raw(`UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?
		WHERE tenant_id = ? AND endpoint_id = ? AND id = ?
		RETURNING `+deliveryColumns, now, now, tenantID, endpointID, id).Scan(&rows).Error
	if err != nil {
		return deliveryRow{}, err
	}
	if len(rows) == 0 {
		return deliveryRow{}, ErrDeliveryNotFound
	}
	return rows[0], nil
}

// eventRow is an events row that recover resends.
type eventRow struct {
	ID        uuid.UUID
	Type      string
	Data      string
	CreatedAt time.Time
}

// eventsSince reads up to limit of the tenant's events appended at or
// after since, in position order.
func eventsSince(tx *gorm.DB, tenantID uuid.UUID, since time.Time, limit int) ([]eventRow, error) {
	var rows []eventRow
	err := tx.Raw(`SELECT id, type, data::text AS data, created_at FROM events
		WHERE tenant_id = ? AND created_at >= ? ORDER BY position LIMIT ?`, tenantID, since, limit).Scan(&rows).Error
	return rows, err
}

func prefixed(p, columns string) string {
	out := []byte{}
	start := true
	for i := 0; i < len(columns); i++ {
		ch := columns[i]
		if start && ch != ' ' && ch != '\t' && ch != '\n' {
			out = append(out, p...)
			start = false
		}
		if ch == ',' {
			start = true
		}
		out = append(out, ch)
	}
	return string(out)
}

// endpointSucceeded clears the endpoint's failure record.
func endpointSucceeded(tx *gorm.DB, tenantID, id uuid.UUID) error {
	return tx.Exec(`UPDATE webhook_endpoints SET failing_since = NULL
		WHERE tenant_id = ? AND id = ? AND failing_since IS NOT NULL`, tenantID, id).Error
}

// endpointFailed notes a failure at now and returns since when the
// endpoint has been failing.
func endpointFailed(tx *gorm.DB, tenantID, id uuid.UUID, now time.Time) (time.Time, error) {
	var since []time.Time
	err := tx.Raw(`UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, ?)
		WHERE tenant_id = ? AND id = ? RETURNING failing_since`, now, tenantID, id).Scan(&since).Error
	if err != nil || len(since) == 0 {
		return now, err
	}
	return since[0], nil
}

// disableEndpoint disables an enabled endpoint for reason; changed is
// false when it was disabled already.
func disableEndpoint(tx *gorm.DB, tenantID, id uuid.UUID, reason string, now time.Time) (url string, changed bool, err error) {
	var urls []string
	err = tx.Raw(`UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = ?, version = version + 1, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND status = 'enabled' RETURNING url`, reason, now, tenantID, id).Scan(&urls).Error
	if err != nil || len(urls) == 0 {
		return "", false, err
	}
	return urls[0], true, nil
}

func nullString(s sql.NullString) string {
	if !s.Valid {
		return ""
	}
	return s.String
}

// trimDeliveries removes up to limit of the endpoint's finished deliveries
// created before before, oldest first, with their attempts.
func trimDeliveries(tx *gorm.DB, tenantID, endpointID uuid.UUID, before time.Time, limit int) error {
	return tx.Exec(`DELETE FROM webhook_deliveries WHERE tenant_id = ? AND id IN (
			SELECT id FROM webhook_deliveries
			WHERE tenant_id = ? AND endpoint_id = ? AND status <> 'pending' AND created_at < ?
			ORDER BY id LIMIT ?)`, tenantID, tenantID, endpointID, before, limit).Error
}
