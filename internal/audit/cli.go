package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tenantd/tenantd/internal/db"
)

// ErrChainBroken is returned by RunVerifyCLI when some chain does not hold,
// so the command exits non-zero.
var ErrChainBroken = errors.New("audit: a chain is broken")

// ErrUnsealed is returned by RunVerifyCLI when some row has waited longer
// than --max-unsealed-age to be sealed, so the command exits non-zero.
var ErrUnsealed = errors.New("audit: rows are left unsealed")

// DefaultMaxUnsealedAge is how long `tenantd audit verify` lets a row wait
// to be sealed before it reports it; the sealer seals within about a second.
const DefaultMaxUnsealedAge = 10 * time.Second

const verifyUsage = "usage: tenantd audit verify [--tenant ID|SLUG | --platform] [--max-unsealed-age 10s]"

// VerifyArgs are the flags of `tenantd audit verify`.
type VerifyArgs struct {
	Tenant         string        // --tenant: one tenant, by id or slug; empty for all
	Platform       bool          // --platform: the platform audit log instead of the tenants'
	MaxUnsealedAge time.Duration // --max-unsealed-age
}

// Flags registers the command's flags on fs, with their defaults, storing
// into a: the command line is parsed by the caller (main).
func (a *VerifyArgs) Flags(fs *flag.FlagSet) {
	fs.StringVar(&a.Tenant, "tenant", "", "verify only this tenant, by id or slug")
	fs.BoolVar(&a.Platform, "platform", false, "verify the platform audit log (operator actions) instead")
	fs.DurationVar(&a.MaxUnsealedAge, "max-unsealed-age", DefaultMaxUnsealedAge, "report rows unsealed for longer than this")
}

// Validate checks the flags before any connection is made.
func (a VerifyArgs) Validate() error {
	if a.MaxUnsealedAge <= 0 {
		return errors.New("--max-unsealed-age must be positive")
	}
	if a.Platform && a.Tenant != "" {
		return errors.New("--platform and --tenant exclude each other")
	}
	return nil
}

// RunVerifyCLI parses args (the flags after `audit verify`) and runs
// RunVerify; -h prints the usage to stdout.
func RunVerifyCLI(ctx context.Context, d *db.DB, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var a VerifyArgs
	a.Flags(fs)
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
	return RunVerify(ctx, d, a, stdout)
}

// RunVerify runs `tenantd audit verify [--tenant ID|SLUG]
// [--max-unsealed-age D]`: it verifies the sealed audit chain of one
// tenant, or of every tenant, and prints one line per tenant to stdout: "ok"
// with the event count and the head (seq and hash, worth keeping elsewhere:
// a later run that finds a lower head or another hash at that seq shows rows
// removed from, or rewritten at, the end), plus how many rows wait to be
// sealed if any; "UNSEALED" when a row has waited longer than the maximum
// age (the sealer is not running or cannot keep up); or "BROKEN" with the
// first broken seq and why. It returns ErrChainBroken when any chain is
// broken and ErrUnsealed when rows wait too long. d connects as the runtime
// role.
func RunVerify(ctx context.Context, d *db.DB, a VerifyArgs, stdout io.Writer) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("%s: %w", verifyUsage, err)
	}
	if a.Platform {
		return verifyPlatform(ctx, d, stdout)
	}
	tenants, err := listTenants(ctx, d, a.Tenant)
	if err != nil {
		return err
	}
	broken, stale := 0, 0
	for _, t := range tenants {
		r, err := Verify(ctx, d, t.ID)
		if err != nil {
			return err
		}
		if !r.OK() {
			broken++
			fmt.Fprintf(stdout, "BROKEN  %s %s seq=%d reason=%s (%s)\n", t.ID, t.Slug, r.Broken.Seq, r.Broken.Reason, r.Broken.Detail)
			continue
		}
		state, waiting := "ok      ", "" // the same columns as BROKEN
		if r.Unsealed > 0 {
			waiting = fmt.Sprintf(" unsealed=%d oldest=%s", r.Unsealed, r.OldestUnsealed.Round(time.Millisecond))
		}
		if r.Stale(a.MaxUnsealedAge) {
			stale++
			state = "UNSEALED "
			waiting += fmt.Sprintf(" (older than %s: is the sealer running?)", a.MaxUnsealedAge)
		}
		fmt.Fprintf(stdout, "%s%s %s events=%d head=%d:%s%s\n", state, t.ID, t.Slug, r.Events, r.HeadSeq,
			hex.EncodeToString(r.HeadHash), waiting)
	}
	if stale > 0 {
		fmt.Fprintf(stdout, "%d tenants verified, %d broken, %d with rows unsealed for over %s\n", len(tenants), broken, stale, a.MaxUnsealedAge)
	} else {
		fmt.Fprintf(stdout, "%d tenants verified, %d broken\n", len(tenants), broken)
	}
	var errs []error
	if broken > 0 {
		errs = append(errs, ErrChainBroken)
	}
	if stale > 0 {
		errs = append(errs, ErrUnsealed)
	}
	return errors.Join(errs...)
}

// verifyPlatform verifies the platform audit log's chain and prints one
// line: "ok" with the event count and head, or "BROKEN" with the first
// broken seq and why (then ErrChainBroken).
func verifyPlatform(ctx context.Context, d *db.DB, stdout io.Writer) error {
	r, err := NewPlatformLog(d, nil).Verify(ctx)
	if err != nil {
		return err
	}
	if !r.OK() {
		fmt.Fprintf(stdout, "BROKEN  platform seq=%d reason=%s (%s)\n", r.Broken.Seq, r.Broken.Reason, r.Broken.Detail)
		return ErrChainBroken
	}
	fmt.Fprintf(stdout, "ok      platform events=%d head=%d:%s\n", r.Events, r.HeadSeq, hex.EncodeToString(r.HeadHash))
	return nil
}
