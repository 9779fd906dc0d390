package walkthrough

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Command is one "$ " command of a walk-through with the output it must
// print.
type Command struct {
	Line       int      // line of the "$ " in the file, from 1
	Text       string   // the command, continuation lines included
	Want       []string // the expected output, one pattern per line
	Eventually bool     // marked "# eventually": retried until it matches
}

// eventually marks a command whose answer comes from background work (the
// saga, the metering flush): the runner retries it until it matches.
const eventually = "# eventually"

// Parse reads the ```console blocks of a walk-through. In a block, a line
// starting with "$ " is a command (a line ending in a backslash continues it
// on the next line), and the lines up to the next "$ " or the end of the
// block are its expected output. A ```console block that does not start
// with a command, or a file without any, is an error: it would check
// nothing.
func Parse(r io.Reader) ([]Command, error) {
	var (
		cmds      []Command
		inBlock   bool
		blockAt   int
		continued bool
		n         int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		fence := strings.TrimSpace(line)
		switch {
		case !inBlock && strings.HasPrefix(fence, "```console"):
			inBlock, blockAt, continued = true, n, false
			continue
		case !inBlock:
			continue
		case fence == "```":
			if continued {
				return nil, fmt.Errorf("line %d: the block ends inside a command continued with a backslash", n)
			}
			inBlock = false
			continue
		}
		switch {
		case continued:
			c := &cmds[len(cmds)-1]
			c.Text += "\n" + line
			continued = strings.HasSuffix(line, `\`)
		case strings.HasPrefix(line, "$ "):
			cmds = append(cmds, Command{Line: n, Text: strings.TrimPrefix(line, "$ ")})
			continued = strings.HasSuffix(line, `\`)
		case len(cmds) == 0 || cmds[len(cmds)-1].Line < blockAt:
			return nil, fmt.Errorf("line %d: a console block must start with a command (\"$ …\"), got %q", n, line)
		default:
			c := &cmds[len(cmds)-1]
			c.Want = append(c.Want, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if inBlock {
		return nil, fmt.Errorf("line %d: the console block is not closed", blockAt)
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("no ```console block with a \"$ \" command: nothing to check")
	}
	for i := range cmds {
		cmds[i].Want = trimBlank(cmds[i].Want)
		cmds[i].Eventually = strings.HasSuffix(cmds[i].Text, eventually)
	}
	return cmds, nil
}

// trimBlank drops trailing blank lines.
func trimBlank(lines []string) []string {
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

var (
	// placeholder is <id>, <key>, <timestamp>, <n>…: one or more characters
	// other than white space and double quotes.
	placeholder = regexp.MustCompile(`<[a-z][a-z0-9_-]*>`)
	// headerLine is "Name: value" in a curl -i header block.
	headerLine = regexp.MustCompile(`^([A-Za-z0-9-]+): `)
)

// isGap reports whether an expected line stands for any number of lines.
func isGap(pattern string) bool {
	p := strings.TrimSpace(pattern)
	return p == "…" || p == "..."
}

// compile turns one expected line into an anchored regular expression:
// placeholders match one or more characters other than white space and
// double quotes, "…" (or "...") any run of characters, and the rest
// literally.
func compile(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	rest := pattern
	for rest != "" {
		loc := placeholder.FindStringIndex(rest)
		ell := strings.Index(rest, "…")
		dots := strings.Index(rest, "...")
		next, kind, size := len(rest), 0, 0
		if loc != nil && loc[0] < next {
			next, kind, size = loc[0], 1, loc[1]-loc[0]
		}
		if ell >= 0 && ell < next {
			next, kind, size = ell, 2, len("…")
		}
		if dots >= 0 && dots < next {
			next, kind, size = dots, 2, len("...")
		}
		b.WriteString(regexp.QuoteMeta(rest[:next]))
		switch kind {
		case 1:
			b.WriteString(`[^\s"]+`)
		case 2:
			b.WriteString(`.*`)
		}
		rest = rest[next+size:]
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// Normalize prepares a command's output for Match: carriage returns and
// trailing blank lines go, and when the expected output starts with an HTTP
// status line (curl -i), the response's header block keeps only the
// headers the expected output names (and any line that is no header),
// without the blank line that ends it. Headers a walk-through leaves out
// (Date, Content-Length, X-Request-Id…) are thus not compared, and the
// ones it shows are.
func Normalize(want []string, got string) []string {
	lines := trimBlank(strings.Split(strings.ReplaceAll(got, "\r", ""), "\n"))
	if len(want) == 0 || !strings.HasPrefix(want[0], "HTTP/") || len(lines) == 0 || !strings.HasPrefix(lines[0], "HTTP/") {
		return lines
	}
	named := map[string]bool{}
	for _, w := range want[1:] {
		m := headerLine.FindStringSubmatch(w)
		if m == nil {
			break
		}
		named[strings.ToLower(m[1])] = true
	}
	out := []string{lines[0]}
	i := 1
	for ; i < len(lines) && lines[i] != ""; i++ {
		if m := headerLine.FindStringSubmatch(lines[i]); m == nil || named[strings.ToLower(m[1])] {
			out = append(out, lines[i])
		}
	}
	if i < len(lines) { // the blank line between headers and body
		i++
	}
	return append(out, lines[i:]...)
}

// Match reports whether the output lines match the expected patterns, line
// by line; when they do not, the error names the first expected line that
// found no match.
func Match(want, got []string) error {
	want = dropBlankSeparator(want)
	pats := make([]*regexp.Regexp, len(want))
	for i, w := range want {
		if !isGap(w) {
			pats[i] = compile(w)
		}
	}
	// best is the furthest expected line any alignment reached, for the
	// error message.
	best := 0
	memo := map[[2]int]bool{}
	var match func(i, j int) bool
	match = func(i, j int) bool {
		if i > best {
			best = i
		}
		if i == len(want) {
			return j == len(got)
		}
		key := [2]int{i, j}
		if v, ok := memo[key]; ok {
			return v
		}
		var ok bool
		if pats[i] == nil {
			for k := j; k <= len(got) && !ok; k++ {
				ok = match(i+1, k)
			}
		} else {
			ok = j < len(got) && pats[i].MatchString(got[j]) && match(i+1, j+1)
		}
		memo[key] = ok
		return ok
	}
	if match(0, 0) {
		return nil
	}
	if best >= len(want) {
		return fmt.Errorf("the output has more lines than expected")
	}
	return fmt.Errorf("no output line matches expected line %d: %q", best+1, want[best])
}

// dropBlankSeparator removes the blank line a walk-through may leave
// between an HTTP header block and the body, as Normalize does for the
// output.
func dropBlankSeparator(want []string) []string {
	if len(want) == 0 || !strings.HasPrefix(want[0], "HTTP/") {
		return want
	}
	for i := 1; i < len(want); i++ {
		if want[i] == "" {
			return append(append([]string{}, want[:i]...), want[i+1:]...)
		}
		if !headerLine.MatchString(want[i]) {
			break
		}
	}
	return want
}
