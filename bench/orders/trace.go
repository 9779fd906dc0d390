package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// tracePlacement places one two-item order with every statement logged and
// returns what PostgreSQL logged meanwhile: the placement's transaction, and
// what the event dispatcher did when notified.
func tracePlacement(ctx context.Context, d *database, c *client) (string, error) {
	logPath := filepath.Join(d.env.Dir(), "postgres.log")
	if err := logStatements(ctx, d.env.AdminURL, "all"); err != nil {
		return "", err
	}
	info, err := os.Stat(logPath)
	if err != nil {
		return "", err
	}
	// Round 1 of tenant 0: a two-item order.
	placeErr := c.place(ctx, 0, 1, nil)
	time.Sleep(time.Second) // the dispatcher's reaction
	if err := logStatements(ctx, d.env.AdminURL, "none"); err != nil {
		return "", err
	}
	if placeErr != nil {
		return "", placeErr
	}
	f, err := os.Open(logPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(info.Size(), io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}

// logStatements sets log_statement for the whole cluster and reloads the
// configuration.
func logStatements(ctx context.Context, adminURL, value string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET log_statement = '%s'", value)); err != nil {
		return fmt.Errorf("log_statement: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // backends apply it at their next command
	return nil
}

// logEntry is the start of a PostgreSQL log line: its backend and message.
var logEntry = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[(\d+)\] (\w+):  (.*)$`)

// loggedStatement is the statement text of a LOG message, if it is one.
var loggedStatement = regexp.MustCompile(`^(?:statement|execute [^:]+): (.*)$`)

// placementStatements finds the placement's transaction in the log: the
// round trips one backend made from BEGIN to COMMIT, among them the
// tenant's binding (see bindsTenant) and the insert into events. A
// simple-protocol message that begins the transaction together with more
// statements ("BEGIN; SELECT app_bind_tenant(...)") is one round trip, its
// signature the joined signatures of its statements.
func placementStatements(log string) ([]string, error) {
	type statement struct{ pid, text string }
	var all []statement
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	continuing := false
	for sc.Scan() {
		line := sc.Text()
		m := logEntry.FindStringSubmatch(line)
		if m == nil {
			if continuing && len(all) > 0 {
				all[len(all)-1].text += "\n" + line
			}
			continue
		}
		continuing = false
		if m[2] != "LOG" {
			continue
		}
		if s := loggedStatement.FindStringSubmatch(m[3]); s != nil {
			all = append(all, statement{pid: m[1], text: s[1]})
			continuing = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	open := map[string][]string{}
	for _, s := range all {
		sig := signature(s.text)
		switch {
		case sig == "begin":
			open[s.pid] = []string{}
		case strings.HasPrefix(sig, "begin;"):
			open[s.pid] = []string{compoundSignature(s.text)}
		case sig == "commit":
			tx, ok := open[s.pid]
			delete(open, s.pid)
			if ok && slices.ContainsFunc(tx, bindsTenant) &&
				slices.Contains(tx, "insert into events") {
				return tx, nil
			}
		default:
			if tx, ok := open[s.pid]; ok {
				open[s.pid] = append(tx, sig)
			}
		}
	}
	return nil, fmt.Errorf("the placement's transaction is not in the log:\n%s", log)
}

// bindsTenant reports whether a round trip's signature binds the tenant:
// db.WithTenant's app_bind_tenant (migration 0024), or the set_config that
// bound it before (logs traced earlier).
func bindsTenant(sig string) bool {
	return strings.Contains(sig, "select app_bind_tenant") || strings.Contains(sig, "select set_config")
}

// compoundSignature is the signature of a message of several statements:
// theirs, joined by "; ". It splits at every semicolon, which is right for
// the messages it is used on (BEGIN and the binding of a UUID).
func compoundSignature(text string) string {
	var sigs []string
	for part := range strings.SplitSeq(text, ";") {
		if strings.TrimSpace(part) != "" {
			sigs = append(sigs, signature(part))
		}
	}
	return strings.Join(sigs, "; ")
}

// scriptStatements reads the round trips of a pgbench script's transaction
// (BEGIN to COMMIT, without a BEGIN or COMMIT sent alone; statements before
// BEGIN are the script's own helpers), along one path through its
// conditionals: the \if branches when ifs is true, the \elif and \else
// ones when it is false. The statements of a pipeline are one round trip,
// whose signature joins theirs with "; ".
func scriptStatements(script []byte, ifs bool) []string {
	var (
		out      []string
		cur      strings.Builder
		active   = []bool{true} // whether each open conditional's current branch runs
		pipeline []string       // the signatures of an open pipeline
		piped    bool
		inTx     bool
	)
	running := func() bool { return active[len(active)-1] }
	roundTrip := func(sigs []string) {
		switch {
		case len(sigs) == 0:
		case sigs[0] == "begin":
			inTx = true
			if len(sigs) > 1 {
				out = append(out, strings.Join(sigs, "; "))
			}
		case len(sigs) == 1 && sigs[0] == "commit":
			inTx = false
		case inTx:
			out = append(out, strings.Join(sigs, "; "))
		}
	}
	for line := range strings.Lines(string(script)) {
		t := strings.TrimSpace(line)
		if cur.Len() == 0 && strings.HasPrefix(t, `\`) {
			cmd, _, _ := strings.Cut(t, " ")
			switch outer := active[:len(active)-1]; cmd {
			case `\if`:
				active = append(active, running() && ifs)
			case `\elif`, `\else`:
				if len(outer) > 0 {
					active[len(active)-1] = outer[len(outer)-1] && !ifs
				}
			case `\endif`:
				if len(outer) > 0 {
					active = active[:len(active)-1]
				}
			case `\startpipeline`:
				if running() {
					pipeline, piped = nil, true
				}
			case `\endpipeline`:
				if running() && piped {
					roundTrip(pipeline)
					pipeline, piped = nil, false
				}
			}
			continue
		}
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "--")) {
			continue
		}
		cur.WriteString(line)
		stmt, gset := t, false
		if i := strings.Index(t, `\gset`); i >= 0 {
			stmt, gset = t[:i], true
		}
		if !gset && !strings.HasSuffix(stmt, ";") {
			continue
		}
		if sig := signature(cur.String()); running() {
			if piped {
				pipeline = append(pipeline, sig)
			} else {
				roundTrip([]string{sig})
			}
		}
		cur.Reset()
	}
	return out
}

// signature is what must match between a statement of the service and one
// of the script: its beginning, lower case, without double quotes and with
// single spaces, up to its first parenthesis or 24 characters. Parameters,
// aliases and the script's extra columns come later.
func signature(stmt string) string {
	s := strings.ToLower(strings.Join(strings.Fields(strings.ReplaceAll(stmt, `"`, "")), " "))
	s = strings.TrimSuffix(strings.TrimSpace(strings.Split(s, `\gset`)[0]), ";")
	if i := strings.IndexByte(s, '('); i >= 0 {
		s = s[:i]
	}
	if r := []rune(s); len(r) > 24 {
		s = string(r[:24])
	}
	return strings.TrimSpace(s)
}

// checkScript compares the statements of a traced placement with those of
// place_order.sql, along both paths through its conditionals.
func checkScript(log string) error {
	service, err := placementStatements(log)
	if err != nil {
		return err
	}
	for _, ifs := range []bool{true, false} {
		script := scriptStatements(placeOrderSQL, ifs)
		if !slices.Equal(service, script) {
			branches := "\\if"
			if !ifs {
				branches = "\\else"
			}
			return fmt.Errorf("place_order.sql is out of step with the service (see -trace):\n  service: %s\n  script (%s branches): %s",
				strings.Join(service, " | "), branches, strings.Join(script, " | "))
		}
	}
	return nil
}
