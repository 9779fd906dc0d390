package gdpr

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/wait"
)

// Export statuses.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// MaxExportBytes bounds an export: the tenant's rows as JSON Lines, and so
// the archive (migration 0022 checks the stored archive against it too).
// A tenant with more data gets a failed export that says so.
const MaxExportBytes = 64 << 20

// ManifestFormat names the archive layout.
const ManifestFormat = "tenantd.export.v1"

// Redacted lists, per tenant table, the columns an export leaves out:
// credentials and secrets, which a data subject's copy must not carry and
// which would let anyone holding the archive act as the tenant.
// api_keys.secret_hash is a hash of a live key; webhook_endpoints' secrets
// sign deliveries; idempotency_keys.response_body can hold a response that
// showed a secret once (a new API key, a webhook secret);
// tenant_exports.archive holds earlier exports (each is its own download).
// A column added later is exported unless it is listed here.
var Redacted = map[string][]string{
	"api_keys":          {"secret_hash"},
	"idempotency_keys":  {"response_body"},
	"tenant_exports":    {"archive"},
	"webhook_endpoints": {"secret", "previous_secret"},
}

// Export is a tenant's export job.
type Export struct {
	ID            uuid.UUID
	TenantID      uuid.UUID
	Status        string
	FailureReason string
	RequestedBy   string
	Size          int64
	SHA256        string
	CreatedAt     time.Time
	UpdatedAt     time.Time
	FinishedAt    *time.Time
}

// Manifest is manifest.json of an archive.
type Manifest struct {
	Format    string    `json:"format"`
	ExportID  uuid.UUID `json:"export_id"`
	TenantID  uuid.UUID `json:"tenant_id"`
	CreatedAt time.Time `json:"created_at"`
	Files     []File    `json:"files"`
	// Redacted: the columns left out, per table (see Redacted).
	Redacted map[string][]string `json:"redacted"`
}

// File is one table's JSON Lines file in an archive.
type File struct {
	Name   string `json:"name"`
	Table  string `json:"table"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ExportOptions tune the Exporter; zero values take the defaults.
type ExportOptions struct {
	// PollInterval is how often the worker looks for jobs (it is also
	// woken by a request on this replica). Default 2 s.
	PollInterval time.Duration
	// Lease is how long a claimed job is the worker's before another may
	// take it; renewed every Lease/3 while it runs. Default 1 min.
	Lease time.Duration
	// MaxAttempts: a job whose worker died this often fails. Default 3.
	MaxAttempts int
	// Retention: finished exports older than this are deleted when the
	// tenant requests a new one. Default 7 days.
	Retention time.Duration
	Now       func() time.Time
}

func (o *ExportOptions) defaults() {
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Exporter queues exports and, in Run, builds them.
type Exporter struct {
	db    *db.DB
	log   *slog.Logger
	opts  ExportOptions
	owner string
	wake  chan struct{}
}

// NewExporter returns an Exporter on d.
func NewExporter(d *db.DB, log *slog.Logger, opts ExportOptions) *Exporter {
	opts.defaults()
	return &Exporter{db: d, log: log, opts: opts, owner: "gdpr:" + uuid.NewString(), wake: make(chan struct{}, 1)}
}

// ErrExportOpen: the tenant has an export pending or running.
var ErrExportOpen = fault.New(fault.Conflict, "an export of this tenant is already pending or running; wait for it")

// Request queues an export of the tenant, by requestedBy (the actor).
func (x *Exporter) Request(ctx context.Context, tenantID uuid.UUID, requestedBy string) (Export, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Export{}, fmt.Errorf("new export id: %w", err)
	}
	if requestedBy == "" {
		requestedBy = "unknown"
	}
	var out Export
	err = x.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		cutoff := x.opts.Now().Add(-x.opts.Retention)
		if err := tx.Exec(`DELETE FROM tenant_exports WHERE tenant_id = ? AND status IN ('succeeded', 'failed') AND created_at < ?`,
			tenantID, cutoff).Error; err != nil {
			return fmt.Errorf("delete old exports: %w", err)
		}
		if err := tx.Exec(`INSERT INTO tenant_exports (tenant_id, id, status, requested_by) VALUES (?, ?, 'pending', ?)`,
			tenantID, id, truncate(requestedBy, 200)).Error; err != nil {
			if db.IsUniqueViolation(err, "tenant_exports_one_open") {
				return ErrExportOpen
			}
			return fmt.Errorf("insert export: %w", err)
		}
		var err error
		out, err = getExport(tx, tenantID, id)
		return err
	})
	if err != nil {
		return Export{}, err
	}
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return out, nil
}

// Get returns one of the tenant's exports; ErrNotFound for another
// tenant's (row-level security hides it).
func (x *Exporter) Get(ctx context.Context, tenantID, id uuid.UUID) (e Export, err error) {
	err = x.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		e, err = getExport(tx, tenantID, id)
		return err
	})
	return e, err
}

// Archive returns a succeeded export with its archive; ErrNotReady while
// it has none.
func (x *Exporter) Archive(ctx context.Context, tenantID, id uuid.UUID) (e Export, archive []byte, err error) {
	err = x.db.LongRunning().WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		if e, err = getExport(tx, tenantID, id); err != nil {
			return err
		}
		if e.Status != StatusSucceeded {
			return ErrNotReady
		}
		return tx.Raw("SELECT archive FROM tenant_exports WHERE tenant_id = ? AND id = ?", tenantID, id).Row().Scan(&archive)
	})
	return e, archive, err
}

type exportRow struct {
	TenantID       uuid.UUID
	ID             uuid.UUID
	Status         string
	FailureReason  *string
	RequestedBy    string
	Attempts       int
	Size           *int64
	Sha256         *string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	FinishedAt     *time.Time
	LeaseOwner     *string
	LeaseExpiresAt *time.Time
}

func (r exportRow) toModel() Export {
	e := Export{ID: r.ID, TenantID: r.TenantID, Status: r.Status, RequestedBy: r.RequestedBy,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.FailureReason != nil {
		e.FailureReason = *r.FailureReason
	}
	if r.Size != nil {
		e.Size = *r.Size
	}
	if r.Sha256 != nil {
		e.SHA256 = *r.Sha256
	}
	if r.FinishedAt != nil {
		t := r.FinishedAt.UTC()
		e.FinishedAt = &t
	}
	return e
}

const exportColumns = `tenant_id, id, status, failure_reason, requested_by, attempts, size, sha256,
	created_at, updated_at, finished_at, lease_owner, lease_expires_at`

func getExport(tx *gorm.DB, tenantID, id uuid.UUID) (Export, error) {
	var rows []exportRow
	if err := tx.Raw("SELECT "+exportColumns+" FROM tenant_exports WHERE tenant_id = ? AND id = ?", tenantID, id).
		Scan(&rows).Error; err != nil {
		return Export{}, fmt.Errorf("read export: %w", err)
	}
	if len(rows) == 0 {
		return Export{}, ErrNotFound
	}
	return rows[0].toModel(), nil
}

// Run builds queued exports until ctx ends. Every replica runs it; each
// job is leased to one worker (lease_owner, lease_expires_at), renewed
// while it builds, so a job whose replica crashed is claimed again once
// its lease expires, up to MaxAttempts claims; then it fails. A job is
// never left pending or running without a worker that will take it.
func (x *Exporter) Run(ctx context.Context) {
	for {
		for ctx.Err() == nil {
			did, err := x.RunOnce(ctx)
			if err != nil && ctx.Err() == nil {
				x.log.WarnContext(ctx, "gdpr: export round failed", "err", err)
			}
			if !did || err != nil {
				break
			}
		}
		if !wait.SleepOrWake(ctx, x.opts.PollInterval, x.wake) {
			return
		}
	}
}

// RunOnce claims and builds at most one due export; it reports whether it
// found one.
func (x *Exporter) RunOnce(ctx context.Context) (bool, error) {
	var due []struct {
		TenantID uuid.UUID
		ExportID uuid.UUID
	}
	if err := x.db.Worker().Unscoped(ctx).Raw("SELECT tenant_id, export_id FROM tenant_exports_due(?, ?)",
		x.opts.Now().UTC(), 10).Scan(&due).Error; err != nil {
		return false, fmt.Errorf("find due exports: %w", err)
	}
	for _, d := range due {
		ok, err := x.claim(ctx, d.TenantID, d.ExportID)
		if err != nil {
			return false, err
		}
		if ok {
			return true, x.build(ctx, d.TenantID, d.ExportID)
		}
	}
	return false, nil
}

// claim leases the export to this worker if it is still due; a job
// claimed MaxAttempts times already fails instead.
func (x *Exporter) claim(ctx context.Context, tenantID, id uuid.UUID) (claimed bool, err error) {
	now := x.opts.Now().UTC()
	err = x.db.Worker().WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		claimed = false
		var rows []exportRow
		if err := tx.Raw("SELECT "+exportColumns+` FROM tenant_exports WHERE tenant_id = ? AND id = ?
			AND status IN ('pending', 'running') AND (lease_expires_at IS NULL OR lease_expires_at <= ?) FOR UPDATE SKIP LOCKED`,
			tenantID, id, now).Scan(&rows).Error; err != nil {
			return fmt.Errorf("claim export: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		if rows[0].Attempts >= x.opts.MaxAttempts {
			return x.fail(tx, tenantID, id, fmt.Sprintf("the export was interrupted %d times", rows[0].Attempts), now)
		}
		claimed = true
		return tx.Exec(`UPDATE tenant_exports SET status = 'running', attempts = attempts + 1, lease_owner = ?,
			lease_expires_at = ?, updated_at = now() WHERE tenant_id = ? AND id = ?`,
			x.owner, now.Add(x.opts.Lease), tenantID, id).Error
	})
	return claimed, err
}

// errLeaseLost: another worker took the job (this one stalled past its
// lease); this one stops without writing.
var errLeaseLost = errors.New("gdpr: export lease lost")

// build reads the tenant's data, stores the archive or the failure, and
// keeps the lease renewed meanwhile.
func (x *Exporter) build(ctx context.Context, tenantID, id uuid.UUID) error {
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() { x.renew(bctx, cancel, tenantID, id) })
	archive, buildErr := x.archive(bctx, tenantID, id)
	cancel(nil)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: the lease expires and another worker takes it
	}
	if errors.Is(context.Cause(bctx), errLeaseLost) {
		return nil
	}
	now := x.opts.Now().UTC()
	return x.db.Worker().WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		var mine int64
		if err := tx.Raw(`SELECT count(*) FROM tenant_exports WHERE tenant_id = ? AND id = ? AND lease_owner = ? AND status = 'running'`,
			tenantID, id, x.owner).Scan(&mine).Error; err != nil {
			return err
		}
		if mine == 0 {
			return nil
		}
		if buildErr != nil {
			reason := "the export could not be built"
			if fe, ok := fault.As(buildErr); ok {
				reason = fe.Message
			}
			x.log.WarnContext(ctx, "gdpr: export failed", "tenant_id", tenantID, "export_id", id, "err", buildErr)
			return x.fail(tx, tenantID, id, reason, now)
		}
		sum := sha256.Sum256(archive)
		return tx.Exec(`UPDATE tenant_exports SET status = 'succeeded', archive = ?, size = ?, sha256 = ?,
			lease_owner = NULL, lease_expires_at = NULL, finished_at = ?, updated_at = now() WHERE tenant_id = ? AND id = ?`,
			archive, len(archive), hex.EncodeToString(sum[:]), now, tenantID, id).Error
	})
}

func (x *Exporter) fail(tx *gorm.DB, tenantID, id uuid.UUID, reason string, now time.Time) error {
	return tx.Exec(`UPDATE tenant_exports SET status = 'failed', failure_reason = ?, lease_owner = NULL,
		lease_expires_at = NULL, finished_at = ?, updated_at = now() WHERE tenant_id = ? AND id = ?`,
		truncate(reason, 500), now, tenantID, id).Error
}

// renew extends the lease every Lease/3 until ctx, the build's context,
// ends; when the lease is no longer this worker's, it cancels the build
// with errLeaseLost, which ends the renewing too.
func (x *Exporter) renew(ctx context.Context, cancel context.CancelCauseFunc, tenantID, id uuid.UUID) {
	wait.Every(ctx, x.opts.Lease/3, func() {
		var n int64
		err := x.db.Worker().WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			res := tx.Exec(`UPDATE tenant_exports SET lease_expires_at = ? WHERE tenant_id = ? AND id = ? AND lease_owner = ?
				AND status = 'running'`, x.opts.Now().UTC().Add(x.opts.Lease), tenantID, id, x.owner)
			n = res.RowsAffected
			return res.Error
		})
		if err == nil && n == 0 {
			cancel(errLeaseLost)
		}
	})
}

// errTooLarge fails an export over MaxExportBytes.
var errTooLarge = fault.New(fault.PayloadTooLarge,
	fmt.Sprintf("the tenant's data exceeds the export limit of %d MiB", MaxExportBytes>>20))

// archive reads every tenant table and returns the .tar.gz.
//
// Consistency: the rows of every table are read by one SELECT (a UNION ALL
// over the tables), and one statement sees one snapshot, so the files agree
// with one another as a REPEATABLE READ transaction would make them
// (db.WithTenant sets the tenant in its first statement, after which the
// isolation level can no longer be raised). Row-level security admits the
// tenant's rows only; the SQL also says tenant_id = the tenant.
func (x *Exporter) archive(ctx context.Context, tenantID, id uuid.UUID) ([]byte, error) {
	created := x.opts.Now().UTC().Truncate(time.Microsecond)
	var tables []string
	files := map[string]*bytes.Buffer{}
	rowsOf := map[string]int64{}
	err := x.db.LongRunning().Worker().WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		var err error
		if tables, err = tenantTables(tx); err != nil {
			return err
		}
		clear(files)
		clear(rowsOf)
		parts := make([]string, len(tables))
		args := make([]any, 0, len(tables))
		for i, t := range tables {
			files[t] = &bytes.Buffer{}
			drop := "'{}'::text[]"
			if cols := Redacted[t]; len(cols) > 0 {
				drop = "ARRAY['" + strings.Join(cols, "','") + "']::text[]"
			}
			parts[i] = fmt.Sprintf("SELECT %d AS n, (to_jsonb(x) - %s)::text AS doc FROM %s x WHERE x.tenant_id = ?",
				i, drop, pgx.Identifier{t}.Sanitize())
			args = append(args, tenantID)
		}
		rows, err := tx.Raw(strings.Join(parts, "\nUNION ALL\n"), args...).Rows()
		if err != nil {
			return fmt.Errorf("read tenant tables: %w", err)
		}
		defer rows.Close()
		var total int64
		for rows.Next() {
			var n int
			var doc string
			if err := rows.Scan(&n, &doc); err != nil {
				return fmt.Errorf("read row: %w", err)
			}
			total += int64(len(doc)) + 1
			if total > MaxExportBytes {
				return errTooLarge
			}
			b := files[tables[n]]
			b.WriteString(doc)
			b.WriteByte('\n')
			rowsOf[tables[n]]++
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	m := Manifest{Format: ManifestFormat, ExportID: id, TenantID: tenantID, CreatedAt: created, Redacted: Redacted}
	for _, t := range tables {
		sum := sha256.Sum256(files[t].Bytes())
		m.Files = append(m.Files, File{Name: t + ".jsonl", Table: t, Rows: rowsOf[t], Bytes: int64(files[t].Len()),
			SHA256: hex.EncodeToString(sum[:])})
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	write := func(name string, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: created,
			Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	if err := write("manifest.json", append(manifest, '\n')); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	for _, f := range slices.Clone(m.Files) {
		if err := write(f.Name, files[f.Table].Bytes()); err != nil {
			return nil, fmt.Errorf("write archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("write archive: %w", err)
	}
	if out.Len() > MaxExportBytes {
		return nil, errTooLarge
	}
	return out.Bytes(), nil
}

// truncate cuts s to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
