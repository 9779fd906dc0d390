package billing

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
)

// ExportUsage is the help of "tenantd billing export", before its flags.
const ExportUsage = `Usage: tenantd billing export --period YYYY-MM [--format csv|jsonl|cloudevents|stripe-meter-events] [--out FILE] [--provisional]

Writes the billing export of a period: one line per tenant, meter and meter
currency, plus adjustment lines for late counts of earlier closed months.
csv and jsonl are priced invoice lines; cloudevents and stripe-meter-events
are the same lines as raw usage events with deterministic ids, for billing
providers that price usage themselves (stripe-meter-events needs every
tenant with usage to have a billing_customer_id, and names those without).
The first export of an ended period closes it; every export of a closed
period gives the same bytes. The SHA-256 of the bytes is printed at the end
(on stdout as "<sha256>  FILE" with --out, for sha256sum -c; else on stderr).
`

// progressEvery is how often progress is reported as a plain line when
// stderr is not a terminal.
const progressEvery = 5 * time.Second

// ExportArgs are the flags of "tenantd billing export".
type ExportArgs struct {
	Period      string // --period YYYY-MM (required)
	Format      string // --format csv|jsonl|cloudevents|stripe-meter-events
	Out         string // --out FILE; empty for stdout
	Provisional bool   // --provisional
}

// Flags registers the command's flags on fs, with their defaults, storing
// into a: the command line is parsed by the caller (main).
func (a *ExportArgs) Flags(fs *flag.FlagSet) {
	fs.StringVar(&a.Period, "period", "", "the billing `period` to export, YYYY-MM in UTC (required)")
	fs.StringVar(&a.Format, "format", "csv", "the file `format`: csv, jsonl, cloudevents or stripe-meter-events")
	fs.StringVar(&a.Out, "out", "", "write the export to `FILE` instead of stdout")
	fs.BoolVar(&a.Provisional, "provisional", false,
		"preview a period that is still open: lines marked provisional, nothing closed or recorded")
}

// Validate checks the flags before any connection is made.
func (a ExportArgs) Validate() error {
	if a.Period == "" {
		return errors.New("billing export: --period YYYY-MM is required")
	}
	if err := checkExport(a.Period, a.Format); err != nil {
		return cliError(err)
	}
	return nil
}

// RunExportCLI parses args (the flags after "billing export") and runs
// RunExport; -h prints the usage to stderr.
func RunExportCLI(ctx context.Context, d *db.DB, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tenantd billing export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var a ExportArgs
	a.Flags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ExportUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("billing export: unexpected argument %q (see --help)", fs.Arg(0))
	}
	return RunExport(ctx, d, a, stdout, stderr)
}

// RunExport runs "tenantd billing export" on the runtime pool d: the export
// goes to --out FILE (written to a temporary file and renamed into place,
// so a failed run leaves no partial file) or to stdout; progress and the
// summary to stderr.
func RunExport(ctx context.Context, d *db.DB, a ExportArgs, stdout, stderr io.Writer) error {
	if err := a.Validate(); err != nil {
		return err
	}
	f, err := ParseFormat(a.Format)
	if err != nil {
		return cliError(err)
	}
	dst, commit, abort, err := exportDestination(a.Out, stdout)
	if err != nil {
		return err
	}
	progress := newProgressReport(stderr, "billing export "+a.Period)
	if a.Provisional {
		p, err := (&Exporter{db: d}).Preview(ctx, a.Period, f, dst, progress.update)
		progress.finish(err == nil)
		if err != nil {
			abort()
			return cliError(err)
		}
		if err := commit(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "billing export %s (%s), provisional: %d lines, %d bytes, sha256 %s; nothing closed or recorded\n",
			p.Period, p.Format, p.Rows, p.Bytes, p.SHA256)
		printChecksum(stdout, a.Out, p.SHA256)
		return nil
	}
	x, err := (&Exporter{db: d}).Issue(ctx, a.Period, f, "cli", dst, progress.update)
	progress.finish(err == nil)
	if err != nil {
		abort()
		if errors.Is(err, ErrPeriodOpen) {
			return fmt.Errorf("billing export: period %s has not ended; an open period can only be previewed (--provisional)", a.Period)
		}
		return cliError(err)
	}
	if err := commit(); err != nil {
		return err
	}
	closed := "was closed already"
	if x.ClosedPeriod {
		closed = "closed now"
	}
	fmt.Fprintf(stderr, "billing export %s (%s): %d lines, %d bytes, sha256 %s, export %s; the period %s\n",
		x.Period, x.Format, x.Rows, x.Bytes, x.SHA256, x.ID, closed)
	printChecksum(stdout, a.Out, x.SHA256)
	return nil
}

// printChecksum prints "<sha256>  FILE" on stdout when the export went to a
// file, the format sha256sum -c reads.
func printChecksum(stdout io.Writer, out, sum string) {
	if out != "" {
		fmt.Fprintf(stdout, "%s  %s\n", sum, out)
	}
}

// cliError words a validation error in terms of flags.
func cliError(err error) error {
	fe, ok := fault.As(err)
	if !ok || fe.Code != fault.Validation || len(fe.Fields) == 0 {
		return fmt.Errorf("billing export: %w", err)
	}
	parts := make([]string, len(fe.Fields))
	for i, f := range fe.Fields {
		parts[i] = f.Field + " " + f.Message
		if f.Field == "period" || f.Field == "format" {
			parts[i] = "--" + parts[i] // a flag
		}
	}
	return errors.New("billing export: " + strings.Join(parts, "; "))
}

// exportDestination returns where the export goes: stdout, or a temporary
// file next to out that commit syncs and renames to out and abort removes.
func exportDestination(out string, stdout io.Writer) (w io.Writer, commit func() error, abort func(), err error) {
	if out == "" {
		return stdout, func() error { return nil }, func() {}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("billing export: %w", err)
	}
	abort = func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}
	commit = func() error {
		if err := tmp.Sync(); err != nil {
			abort()
			return fmt.Errorf("billing export: write %s: %w", out, err)
		}
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("billing export: write %s: %w", out, err)
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("billing export: %w", err)
		}
		return nil
	}
	return tmp, commit, abort, nil
}

// progressReport shows an export's progress on stderr: a progress bar on a
// terminal, otherwise a plain line every progressEvery and one at the end.
type progressReport struct {
	w        io.Writer
	what     string
	terminal bool
	every    time.Duration
	bar      *progressbar.ProgressBar
	flowing  bool // the first tenant's lines have been written
	last     Progress
	lastLine time.Time
}

func newProgressReport(w io.Writer, what string) *progressReport {
	p := &progressReport{w: w, what: what, every: progressEvery}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.terminal = true
	}
	return p
}

func (p *progressReport) update(pr Progress) {
	p.last = pr
	if p.terminal {
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(max(pr.TotalTenants, 1),
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.what+" (reading)"),
				progressbar.OptionSetItsString("tenants"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
			)
		}
		if !p.flowing && pr.Tenants > 0 {
			// Lines flow: time the rate from here, not from the query.
			p.flowing = true
			p.bar.Reset()
			p.bar.Describe(p.what)
		}
		if pr.TotalTenants > 0 && pr.Tenants > pr.TotalTenants {
			p.bar.ChangeMax64(pr.Tenants)
		}
		if err := p.bar.Set64(pr.Tenants); err != nil {
			p.bar = nil // a broken terminal: stop drawing, keep exporting
			p.terminal = false
		}
		return
	}
	now := time.Now()
	if p.lastLine.IsZero() {
		p.lastLine = now
		return
	}
	if now.Sub(p.lastLine) >= p.every {
		p.lastLine = now
		p.line()
	}
}

func (p *progressReport) line() {
	fmt.Fprintf(p.w, "%s: %d/%d tenants, %d lines\n", p.what, p.last.Tenants, p.last.TotalTenants, p.last.Rows)
}

// finish ends the bar (or prints the last line) once the export is done.
func (p *progressReport) finish(ok bool) {
	switch {
	case p.bar != nil && ok:
		if err := p.bar.Finish(); err != nil {
			fmt.Fprintln(p.w)
		}
	case p.bar != nil:
		if err := p.bar.Exit(); err != nil {
			fmt.Fprintln(p.w)
		}
	case ok && !p.lastLine.IsZero():
		p.line()
	}
}
