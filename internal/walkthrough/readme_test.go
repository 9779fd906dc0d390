package walkthrough

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/config"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table from config.Vars")

// The README's configuration table sits between these two lines.
const (
	tableStart = "<!-- Generated from config.Vars (config/config.go): after changing them, run\ngo test ./internal/walkthrough -run TestREADMEConfiguration -update -->\n"
	tableEnd   = "<!-- end of the table generated from config.Vars -->"
)

// configTable renders config.Vars as the README's Markdown table.
func configTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Default | Meaning |\n| --- | --- | --- |\n")
	cell := strings.NewReplacer("|", `\|`, "\n", " ")
	for _, v := range config.Vars {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, cell.Replace(v.Default), cell.Replace(v.Meaning))
	}
	return b.String()
}

// TestREADMEConfiguration keeps the README's configuration table what
// config.Vars says, row for row; -update rewrites it.
func TestREADMEConfiguration(t *testing.T) {
	path := filepath.Join(root, "README.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, tableStart)
	end := strings.Index(readme, tableEnd)
	if start < 0 || end < start {
		t.Fatalf("README.md: the configuration table's markers are missing:\n%s…\n%s", tableStart, tableEnd)
	}
	start += len(tableStart)
	got, want := readme[start:end], configTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:start]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md: the configuration table is not config.Vars; run\n\tgo test ./internal/walkthrough -run TestREADMEConfiguration -update\n--- got\n%s--- want\n%s", got, want)
}

// TestREADMEFits keeps the README short enough to read: walk-throughs and
// references belong in docs/.
func TestREADMEFits(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n >= 300 {
		t.Errorf("README.md has %d lines, want fewer than 300: move walk-throughs to docs/walkthrough/ and references to docs/", n)
	}
}

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)
	notSlug = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// slug is GitHub's anchor for a heading.
func slug(h string) string {
	return strings.ReplaceAll(notSlug.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
}

// anchors returns the heading anchors of a Markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(stripFences(string(data)), -1) {
		out[slug(m[1])] = true
	}
	return out
}

// stripFences drops fenced code blocks, whose "#" lines are no headings
// and whose "](…)" are no links.
func stripFences(s string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestDocLinks proves that the relative links of the README and the
// walk-throughs, and every link into the README from docs/, lead to a file
// and heading that exist.
func TestDocLinks(t *testing.T) {
	sources := []string{filepath.Join(root, "README.md")}
	walks, err := filepath.Glob(filepath.Join(root, "docs", "walkthrough", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sources = append(sources, walks...)
	others, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sources = append(sources, others...)
	readme := filepath.Clean(filepath.Join(root, "README.md"))
	checked := 0
	for _, src := range sources {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		ours := filepath.Dir(src) != filepath.Join(root, "docs") // README and walk-throughs: every link
		for _, m := range mdLink.FindAllStringSubmatch(stripFences(string(data)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := filepath.Clean(src)
			if file != "" {
				dest = filepath.Clean(filepath.Join(filepath.Dir(src), file))
			}
			if !ours && dest != readme {
				continue
			}
			checked++
			name, _ := filepath.Rel(root, src)
			info, err := os.Stat(dest)
			if err != nil {
				t.Errorf("%s: link %s: %v", name, target, err)
				continue
			}
			if anchor != "" && !info.IsDir() && strings.HasSuffix(dest, ".md") && !anchors(t, dest)[anchor] {
				t.Errorf("%s: link %s: no heading #%s in %s", name, target, anchor, file)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no links checked")
	}
}
