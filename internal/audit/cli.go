package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/tenantd/tenantd/internal/db"
)

// ErrChainBroken is returned by RunVerifyCLI when some chain does not hold,
// so the command exits non-zero.
var ErrChainBroken = errors.New("audit: a chain is broken")

const verifyUsage = "usage: tenantd audit verify [--tenant ID|SLUG]"

// RunVerifyCLI runs `tenantd audit verify [--tenant ID|SLUG]`: it verifies
// the audit chain of one tenant, or of every tenant, and prints one line
// per tenant to stdout, "ok" with the event count and the head (seq and
// hash, worth keeping elsewhere: a later run that finds a lower head or
// another hash at that seq shows rows removed from, or rewritten at, the
// end), or "BROKEN" with the first broken seq and why. It returns
// ErrChainBroken when any chain is broken. d connects as the runtime role.
func RunVerifyCLI(ctx context.Context, d *db.DB, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tenant := fs.String("tenant", "", "verify only this tenant, by id or slug")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, verifyUsage)
			return nil
		}
		return fmt.Errorf("%s: %w", verifyUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", verifyUsage, fs.Arg(0))
	}
	tenants, err := listTenants(ctx, d, *tenant)
	if err != nil {
		return err
	}
	broken := 0
	for _, t := range tenants {
		r, err := Verify(ctx, d, t.ID)
		if err != nil {
			return err
		}
		if r.OK() {
			fmt.Fprintf(stdout, "ok      %s %s events=%d head=%d:%s\n", t.ID, t.Slug, r.Events, r.HeadSeq, hex.EncodeToString(r.HeadHash))
			continue
		}
		broken++
		fmt.Fprintf(stdout, "BROKEN  %s %s seq=%d reason=%s (%s)\n", t.ID, t.Slug, r.Broken.Seq, r.Broken.Reason, r.Broken.Detail)
	}
	fmt.Fprintf(stdout, "%d tenants verified, %d broken\n", len(tenants), broken)
	if broken > 0 {
		return ErrChainBroken
	}
	return nil
}
