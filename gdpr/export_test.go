package gdpr_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/gdpr"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// waitExport polls GET /v1/tenant/exports/{id} until it is finished.
func waitExport(t *testing.T, s *apptest.Server, key, id string) map[string]any {
	t.Helper()
	var got map[string]any
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant/exports/" + id, Key: key})
		if resp.Status != http.StatusOK {
			return false, "status " + string(resp.Body)
		}
		got = resp.Map(t)
		return got["status"] == gdpr.StatusSucceeded || got["status"] == gdpr.StatusFailed, "export " + string(resp.Body)
	})
	return got
}

// untar returns the archive's files by name.
func untar(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

// TestExport (issue 12, part 3): a tenant's export holds one JSON Lines
// file per catalog tenant table with the tenant's rows only, no secrets,
// and a manifest whose rows and SHA-256 match the files; another tenant
// cannot read or download it; nothing is downloadable before it is ready;
// a job whose worker died is built by another.
func TestExport(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	owner := s.Env.OpenOwnerDB(t)
	a := s.NewTenant("exp-a", "pro")
	b := s.NewTenant("exp-b", "pro")
	secrets := populate(t, s, a)
	populate(t, s, b)

	countsBefore := rowCounts(t, owner, a.ID)
	resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/tenant/exports", Key: a.Key})
	if resp.Status != http.StatusAccepted {
		t.Fatalf("request export: got %d %s, want 202", resp.Status, resp.Body)
	}
	created := resp.Map(t)
	id := created["id"].(string)
	if created["status"] != gdpr.StatusPending || resp.Header.Get("Location") != "/v1/tenant/exports/"+id {
		t.Fatalf("got %v (Location %q), want pending at its location", created, resp.Header.Get("Location"))
	}
	t.Run("one open export at a time", func(t *testing.T) {
		status := testenv.Query[string](t, owner, uuid.MustParse(a.ID), "SELECT status FROM tenant_exports WHERE id = ?", id)
		if status == gdpr.StatusSucceeded {
			t.Skip("the first export finished already")
		}
		if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/tenant/exports", Key: a.Key}); resp.Status != http.StatusConflict {
			t.Errorf("got %d %s, want 409", resp.Status, resp.Body)
		}
	})
	got := waitExport(t, s, a.Key, id)
	if got["status"] != gdpr.StatusSucceeded {
		t.Fatalf("export: got %v, want succeeded", got)
	}
	dl := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant/exports/" + id + "/download", Key: a.Key})
	if dl.Status != http.StatusOK {
		t.Fatalf("download: got %d %s", dl.Status, dl.Body)
	}
	t.Run("headers, size and sha256", func(t *testing.T) {
		if ct := dl.Header.Get("Content-Type"); ct != "application/gzip" {
			t.Errorf("Content-Type: got %q, want application/gzip", ct)
		}
		if cd := dl.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, id+".tar.gz") {
			t.Errorf("Content-Disposition: got %q, want an attachment named after the export", cd)
		}
		sum := sha256.Sum256(dl.Body)
		if got["sha256"] != hex.EncodeToString(sum[:]) || got["size"] != float64(len(dl.Body)) {
			t.Errorf("got size %v sha256 %v, want %d %x", got["size"], got["sha256"], len(dl.Body), sum)
		}
	})

	files := untar(t, dl.Body)
	var m gdpr.Manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	t.Run("manifest matches the files", func(t *testing.T) {
		if m.TenantID.String() != a.ID || m.ExportID.String() != id || m.Format != gdpr.ManifestFormat || m.CreatedAt.IsZero() {
			t.Errorf("manifest: got %+v, want tenant %s, export %s", m, a.ID, id)
		}
		if len(files) != len(m.Files)+1 {
			t.Errorf("got %d files in the archive, want the manifest's %d and manifest.json", len(files), len(m.Files))
		}
		for _, f := range m.Files {
			body, ok := files[f.Name]
			if !ok {
				t.Errorf("%s: listed, not in the archive", f.Name)
				continue
			}
			sum := sha256.Sum256(body)
			rows := int64(bytes.Count(body, []byte("\n")))
			if hex.EncodeToString(sum[:]) != f.SHA256 || rows != f.Rows || int64(len(body)) != f.Bytes {
				t.Errorf("%s: got %d rows, %d bytes, sha256 %x; manifest says %d, %d, %s", f.Name, rows, len(body), sum, f.Rows, f.Bytes, f.SHA256)
			}
		}
	})
	t.Run("every catalog tenant table is present", func(t *testing.T) {
		var tables []string
		for _, f := range m.Files {
			tables = append(tables, f.Table)
		}
		if want := catalogTables(t, owner); !slices.Equal(tables, want) {
			t.Errorf("got tables %v, want the catalog's %v", tables, want)
		}
		// Background work (deliveries, their attempts, audit rows, usage)
		// adds rows while the test runs: the snapshot lies between the
		// counts before the request and after the download.
		after := rowCounts(t, owner, a.ID)
		for _, f := range m.Files {
			if f.Rows < countsBefore[f.Table] || f.Rows > after[f.Table] {
				t.Errorf("%s: got %d rows, want the tenant's, between %d and %d", f.Table, f.Rows, countsBefore[f.Table], after[f.Table])
			}
		}
		for _, table := range []string{"api_keys", "products", "events", "order_views", "webhook_endpoints", "audit_events"} {
			if i := slices.IndexFunc(m.Files, func(f gdpr.File) bool { return f.Table == table }); i < 0 || m.Files[i].Rows == 0 {
				t.Errorf("%s: got no rows, want the tenant's", table)
			}
		}
	})
	t.Run("only the tenant's rows", func(t *testing.T) {
		for _, f := range m.Files {
			for line := range bytes.Lines(files[f.Name]) {
				var row map[string]any
				if err := json.Unmarshal(line, &row); err != nil {
					t.Fatalf("%s: %v", f.Name, err)
				}
				if row["tenant_id"] != a.ID {
					t.Fatalf("%s: a row of tenant %v, want only %s's", f.Name, row["tenant_id"], a.ID)
				}
			}
		}
		for name, body := range files {
			if bytes.Contains(body, []byte(b.ID)) || bytes.Contains(body, []byte(b.Slug)) {
				t.Errorf("%s mentions the other tenant", name)
			}
		}
	})
	t.Run("secrets absent", func(t *testing.T) {
		for table, cols := range gdpr.Redacted {
			for line := range bytes.Lines(files[table+".jsonl"]) {
				var row map[string]any
				if err := json.Unmarshal(line, &row); err != nil {
					t.Fatal(err)
				}
				for _, c := range cols {
					if _, ok := row[c]; ok {
						t.Errorf("%s: column %s is exported, want it left out", table, c)
					}
				}
			}
		}
		for name, body := range files {
			for _, secret := range secrets {
				if bytes.Contains(body, []byte(secret)) {
					t.Errorf("%s holds a secret shown once", name)
				}
			}
		}
	})
	t.Run("another tenant cannot read it", func(t *testing.T) {
		for _, path := range []string{"/v1/tenant/exports/" + id, "/v1/tenant/exports/" + id + "/download"} {
			if resp := s.Do(apptest.Request{Method: "GET", Path: path, Key: b.Key}); resp.Status != http.StatusNotFound || resp.Code() != "not_found" {
				t.Errorf("GET %s as B: got %d %s, want 404", path, resp.Status, resp.Body)
			}
		}
	})

	// A job that a worker claimed and then died with: its lease expired.
	c := s.NewTenant("exp-c", "pro")
	crashed := uuid.New()
	insert := func(id uuid.UUID, leaseUntil time.Time) {
		t.Helper()
		testenv.Exec(t, owner, uuid.MustParse(c.ID), `INSERT INTO tenant_exports (tenant_id, id, status, requested_by, attempts, lease_owner, lease_expires_at)
				VALUES (?, ?, 'running', 'test', 1, 'gdpr:crashed-replica', ?)`, c.ID, id, leaseUntil)
	}
	t.Run("not downloadable before it is ready", func(t *testing.T) {
		held := uuid.New()
		insert(held, time.Now().Add(time.Hour)) // a live worker's lease
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant/exports/" + held.String() + "/download", Key: c.Key})
		if resp.Status != http.StatusNotFound {
			t.Errorf("download: got %d %s, want 404", resp.Status, resp.Body)
		}
		resp = s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant/exports/" + held.String(), Key: c.Key})
		if m := resp.Map(t); m["status"] != gdpr.StatusRunning || m["size"] != nil || m["sha256"] != nil {
			t.Errorf("got %v, want running without size or sha256", m)
		}
		testenv.Exec(t, owner, uuid.MustParse(c.ID), "DELETE FROM tenant_exports WHERE id = ?", held)
	})
	t.Run("a crashed worker's job is built by another", func(t *testing.T) {
		insert(crashed, time.Now().Add(-time.Second))
		if got := waitExport(t, s, c.Key, crashed.String()); got["status"] != gdpr.StatusSucceeded {
			t.Fatalf("got %v, want succeeded", got)
		}
	})
}
