// Package walkthrough checks the documentation against the code: its test
// replays every docs/walkthrough/*.md, command by command, against a real
// `tenantd dev` built from this repository, and keeps the README's
// configuration table generated from config.Vars. The format the
// walk-throughs are written in is described in docs/walkthrough/README.md
// and implemented by Parse, Normalize and Match.
package walkthrough
